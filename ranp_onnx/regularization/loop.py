"""The training loop of ``ranp-onnx regularize``: one user of the regularizer.

:class:`Trainer` runs SGD on a module over a :class:`~.stream.TrainingStream`; after each
backward pass its *constraint* (the :class:`~.regularizer.Regularizer` while regularizing,
:class:`KeptZeros` while fine-tuning column-pruned weights) adjusts the gradients, and
after each step it updates. It records the loss, reports progress, writes a checkpoint
every ``checkpoint_every`` iterations and, on Ctrl-C, finishes the iteration, writes a
checkpoint and raises :class:`Interrupted` (a second Ctrl-C stops at once).

This module imports torch.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import RanpError
from ..scoring.data import Batch
from .record import History
from .regularizer import Regularizer
from .stream import Position, TrainingStream

#: Exit status of an interrupted run (128 + SIGINT, as shells report it).
INTERRUPTED_EXIT = 130
#: Iterations the progress line's loss is averaged over.
LOSS_WINDOW = 20


class Interrupted(RanpError):
    """Ctrl-C: the run stopped after writing a checkpoint it can continue from.

    Attributes:
        checkpoint: The checkpoint written.
        phase: "regularize" or "finetune".
        iteration: Iterations of the phase done.
    """

    exit_code = INTERRUPTED_EXIT

    def __init__(self, checkpoint: Path, phase: str, iteration: int) -> None:
        super().__init__(
            f"interrupted after {phase} iteration {iteration}; {checkpoint} holds the run: "
            f"continue it with the same command and `resume` {checkpoint}"
        )
        self.checkpoint = checkpoint
        self.phase = phase
        self.iteration = iteration


class DivergedError(RanpError):
    """The training loss is not finite (the learning rate is too high for the model)."""


class Constraint(Protocol):
    """What the loop calls around the optimizer step."""

    def regularize(self) -> None:
        """After backward: adjust the gradients."""

    def update(self) -> Any:
        """After the step."""


@dataclass(frozen=True)
class RunProgress:
    """One progress report.

    Attributes:
        phase: "regularize" or "finetune".
        iteration: Iterations of the phase done.
        limit: Iterations the phase will take at most (None: until done).
        loss: Mean training loss over the last iterations.
        removed: Groups removed so far.
        due: Groups to remove.
        coefficients: Smallest and largest coefficient of the groups present.
        seconds_left: Estimated seconds to the end of the run (None: unknown yet).
    """

    phase: str
    iteration: int
    limit: int | None
    loss: float
    removed: int
    due: int
    coefficients: tuple[float, float]
    seconds_left: float | None


class KeptZeros:
    """Keeps chosen elements of some parameters at exactly 0 (fine-tuning after ``shape``).

    Args:
        masks: Per parameter, a 0/1 tensor of its shape (0: keep at zero).
        tensors: The parameters by name.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]):
        self.pairs = [
            (tensors[name], mask.to(tensors[name].device)) for name, mask in masks.items()
        ]

    @torch.no_grad()
    def regularize(self) -> None:
        """Zero the gradients of the kept zeros."""
        for tensor, mask in self.pairs:
            if tensor.grad is not None:
                tensor.grad.mul_(mask)

    @torch.no_grad()
    def update(self) -> None:
        """Put the kept zeros back to 0 after the step."""
        for tensor, mask in self.pairs:
            tensor.mul_(mask)


class RecordedRegularizer:
    """The regularizer as the loop's constraint, recording a snapshot at every schedule update."""

    def __init__(self, regularizer: Regularizer, history: History) -> None:
        self.regularizer = regularizer
        self.history = history

    def regularize(self) -> None:
        """After backward."""
        self.regularizer.regularize()

    def update(self) -> None:
        """After the step; a snapshot when the schedule was updated."""
        regularizer = self.regularizer
        before = regularizer.last_norms
        regularizer.update()
        if regularizer.last_norms is not before:
            self.history.snapshot(
                regularizer.iteration,
                regularizer.last_norms,
                [s.coefficients for s in regularizer.schedules],
                [int(s.removed.sum()) for s in regularizer.schedules],
            )

    def report(self) -> tuple[int, int, tuple[float, float], float]:
        """Removed groups, due groups, the coefficient range and the rough fraction done."""
        regularizer = self.regularizer
        return (
            regularizer.removed_count,
            regularizer.allocation.due_total,
            regularizer.coefficient_range(),
            regularizer.progress(),
        )


@contextlib.contextmanager
def catching_interrupts(enabled: bool) -> Iterator[list[bool]]:
    """While active, the first Ctrl-C sets ``flag[0]`` instead of raising."""
    flag = [False]
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class Trainer:
    """SGD on a module, with a constraint around each step.

    Attributes:
        phase: "regularize" or "finetune".
        forward: Inputs (by graph input name, on the device) to the loss's input.
        loss: ``loss(output, labels)``.
        optimizer: The optimizer.
        stream: The training batches.
        device: Where the batches go.
        history: Where losses go.
        constraint: Called after backward and after the step (or None).
        progress: Called after every iteration.
        checkpoint: Writes a checkpoint of (iterations done, position); None: never.
        checkpoint_every: Iterations between checkpoints.
        after: Iterations the run will take after this phase (for the time left).
        offset: Iterations before this phase (the record numbers iterations across phases).
        learning_rate: The learning rate of each iteration (numbered from 1); None keeps
            the optimizer's.
    """

    phase: str
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    stream: TrainingStream
    device: torch.device
    history: History
    constraint: Constraint | None = None
    progress: Callable[[RunProgress], None] | None = None
    checkpoint: Callable[[int, Position], Path] | None = None
    checkpoint_every: int = 1000
    after: int = 0
    offset: int = 0
    learning_rate: Callable[[int], float] | None = None

    def run(
        self, done: int, position: Position, *, limit: int | None, stop: Callable[[], bool]
    ) -> tuple[int, Position]:
        """Train from iteration ``done`` until ``limit`` iterations or ``stop()``.

        Returns:
            Iterations done and the stream position.

        Raises:
            Interrupted: Ctrl-C (after a checkpoint is written).
            DivergedError: The loss is not finite.
        """
        recent: list[float] = []
        started, first = time.perf_counter(), done
        with catching_interrupts(self.checkpoint is not None) as interrupted:
            batches = self.stream.batches(position)
            while (limit is None or done < limit) and not stop():
                position, batch = next(batches)
                value = self._step(batch, done + 1)
                done += 1
                self.history.losses[self.phase].add(self.offset + done, value)
                recent = [*recent, value][-LOSS_WINDOW:]
                if self.checkpoint is not None and (
                    interrupted[0] or done % self.checkpoint_every == 0
                ):
                    path = self.checkpoint(done, position)
                    if interrupted[0]:
                        raise Interrupted(path, self.phase, done)
                if self.progress is not None:
                    spent = (time.perf_counter() - started) / (done - first)
                    self.progress(self._report(done, limit, recent, spent, done - first))
        self.history.losses[self.phase].flush(self.offset + done)
        return done, position

    def _step(self, batch: Batch, number: int) -> float:
        inputs = {
            name: torch.from_numpy(array).to(self.device) for name, array in batch.inputs.items()
        }
        assert batch.labels is not None
        labels = torch.from_numpy(batch.labels).to(self.device)
        if self.learning_rate is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(number)
        loss = self.loss(self.forward(inputs), labels)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"the training loss is {float(loss)} at {self.phase} iteration {number}: "
                "lower the learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.constraint is not None:
            self.constraint.regularize()
        self.optimizer.step()
        if self.constraint is not None:
            self.constraint.update()
        return float(loss.detach())

    def _report(
        self, done: int, limit: int | None, recent: list[float], spent: float, steps: int
    ) -> RunProgress:
        removed, due, low_high, fraction = 0, 0, (0.0, 0.0), 0.0
        recorded = isinstance(self.constraint, RecordedRegularizer)
        if recorded:
            removed, due, low_high, fraction = self.constraint.report()  # type: ignore[union-attr]
        left: float | None = None
        if limit is not None:
            left = (limit - done + self.after) * spent
        elif recorded and fraction > 0.01:
            left = steps * spent * (1 - fraction) / fraction + self.after * spent
        return RunProgress(
            phase=self.phase,
            iteration=done,
            limit=limit,
            loss=float(np.mean(recent)) if recent else math.nan,
            removed=removed,
            due=due,
            coefficients=low_high,
            seconds_left=left,
        )
