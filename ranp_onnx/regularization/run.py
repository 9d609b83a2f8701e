"""One run of ``regularize``: setup, the two phases, checkpoints and the record.

*regularize*: SGD with the per-group coefficients until every due group is gone (or
``iterations`` / ``epochs`` run out: then the groups still due are removed as they
rank); then the rewrite (:func:`~.finish.finish`). *finetune*: ``finetune`` more
iterations of the smaller model. With a checkpoint path, checkpoints are written every
``checkpoint_every`` iterations and on Ctrl-C; a resumed run continues exactly.

This module imports torch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import torch

from ..analysis.channels import analyse_channels
from ..analysis.costs import count_costs
from ..analysis.shapes import analyse
from ..errors import DataError
from ..ir.graph import GraphAnalysis
from ..scoring.data import DataSource
from ..scoring.losses import make_loss
from ..scoring.module_data import ModuleData, scoring_batches
from . import checkpoint as checkpoints
from .allocation import Allocation, allocate
from .finish import Finished, finish, zero_column_flops, zero_column_masks
from .groups import WeightGroups, weight_groups
from .loop import KeptZeros, RecordedRegularizer, RunProgress, Trainer
from .options import RegularizeOptions
from .record import History, build_record
from .regularizer import Regularizer, trainable_tensors
from .results import RegularizeResult
from .stream import Position, TrainingStream
from .subjects import GraphSubject, ModuleSubject


def cosine(start: float, iterations: int) -> Callable[[int], float]:
    """The fine-tuning learning rate at each iteration: ``start`` decayed by a cosine toward 0."""
    return lambda number: 0.5 * start * (1 + math.cos(math.pi * (number - 1) / iterations))


def plan_groups(
    graph: GraphAnalysis, options: RegularizeOptions, parameters: Iterable[str]
) -> tuple[WeightGroups, Allocation]:
    """The weight groups and the allocation that meets the target."""
    groups = weight_groups(analyse_channels(graph), options.granularity, list(parameters))
    allocation = allocate(
        groups,
        options.allocation,
        speedup=options.speedup,
        target_flops=options.target_flops,
        convention=options.convention,
        min_keep=options.min_keep,
    )
    return groups, allocation


@dataclass
class RunState:
    """Where a run is: phase, iterations, data position, time spent."""

    phase: str = "regularize"
    done: int = 0
    position: Position = field(default_factory=Position)
    regularize_iterations: int = 0
    seconds: float = 0.0


class Run:
    """One run: setup, the two phases, checkpoints, the record."""

    def __init__(
        self,
        subject: GraphSubject | ModuleSubject,
        data: ModuleData,
        options: RegularizeOptions,
        progress: Callable[[RunProgress], None] | None,
        checkpoint: str | Path | None,
        resume: str | Path | None,
    ) -> None:
        self.subject = subject
        self.options = options
        self.progress = progress
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        self.resume = resume
        graph = subject.graph
        self.before = count_costs(graph, options.convention)
        self.tensors = trainable_tensors(subject.module)
        self.groups, self.allocation = plan_groups(graph, options, self.tensors)
        batches, _ = scoring_batches(
            data,
            graph,
            loss=options.loss,
            ignore_index=options.ignore_index,
            batch_size=options.batch_size,
            seed=options.seed,
        )
        if batches is None or (isinstance(batches, DataSource) and not batches.labelled):
            raise DataError(
                "regularize trains the model: `data` needs labelled samples (random data "
                "has no labels)"
            )
        self.stream = TrainingStream(batches, seed=options.seed, batch_size=options.batch_size)
        self.loss = make_loss(
            options.loss,
            classes=subject.classes(),
            ignore_index=options.ignore_index,
            output_is_probability=subject.output_is_probability,
        )
        self.limit = self._regularize_limit()
        self.state = RunState()
        self.finished: Finished | None = None
        self.regularizer: Regularizer | None = None
        self.history = History([])
        self.started = time.perf_counter()

    def _regularize_limit(self) -> int | None:
        if self.options.iterations is not None:
            return self.options.iterations
        if self.options.epochs is None:
            return None
        per_epoch = self.stream.per_epoch
        if per_epoch is None:
            raise DataError("`epochs` needs data of known length (give `iterations` instead)")
        return max(1, math.ceil(self.options.epochs * per_epoch))

    # -- the run -------------------------------------------------------------------------
    def execute(self) -> RegularizeResult:
        """Regularize, rewrite, fine-tune (from the checkpoint, if resuming)."""
        torch.manual_seed(self.options.seed)
        saved = self._load() if self.resume is not None else None
        if self.state.phase == "regularize":
            self._regularize(saved)
            saved = None
        assert self.finished is not None
        model = self._finetune(saved)
        self.subject.finish()
        return self._result(model)

    def _regularize(self, saved: dict[str, Any] | None) -> None:
        options = self.options
        regularizer = Regularizer(
            self.groups,
            self.allocation,
            self.tensors,
            options.schedule(),
            update_interval=options.update_interval,
        )
        optimizer = self._optimizer(options.lr)
        if saved is None:
            self.history = History.tracing(regularizer.last_norms)
        else:
            regularizer.load_state_dict(saved["regularizer"])
            optimizer.load_state_dict(saved["optimizer"])
        self.regularizer = regularizer
        history = self.history
        constraint = RecordedRegularizer(regularizer, history)
        trainer = self._trainer("regularize", optimizer, constraint, after=options.finetune)
        done, _ = trainer.run(
            self.state.done, self.state.position, limit=self.limit, stop=lambda: regularizer.done
        )
        if not regularizer.done:
            regularizer.finish()
        self.state = replace(self.state, regularize_iterations=done)
        self.finished = finish(
            self.subject.export(),
            dict(self.subject.graph.input_shapes),
            self.groups,
            regularizer.schedules,
            convention=options.convention,
            min_keep=options.min_keep,
            check=options.validate,
            tolerance=options.tolerance,
            device=options.device,
        )
        self.subject.adopt(self.finished.model, options.tolerance)
        self.state = replace(self.state, phase="finetune", done=0, position=Position())

    def _finetune(self, saved: dict[str, Any] | None) -> onnx.ModelProto:
        assert self.finished is not None
        options = self.options
        if options.finetune == 0:
            return self.finished.model
        tensors = trainable_tensors(self.subject.module)
        optimizer = self._optimizer(options.finetune_lr or options.lr)
        if saved is not None:
            optimizer.load_state_dict(saved["optimizer"])
        constraint = None
        if self.groups.granularity == "shape":
            pruned = analyse(self.finished.model, dict(self.subject.graph.input_shapes))
            masks = {k: torch.from_numpy(v) for k, v in zero_column_masks(pruned).items()}
            constraint = KeptZeros(masks, tensors)
            constraint.update()
        trainer = self._trainer("finetune", optimizer, constraint, after=0)
        trainer.offset = self.state.regularize_iterations
        trainer.learning_rate = cosine(options.finetune_lr or options.lr, options.finetune)
        trainer.run(
            self.state.done, self.state.position, limit=options.finetune, stop=lambda: False
        )
        return self.subject.export()

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        parameters = [p for p in self.subject.module.parameters() if p.requires_grad]
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=self.options.momentum,
            weight_decay=self.options.weight_decay,
        )

    def _trainer(
        self, phase: str, optimizer: torch.optim.Optimizer, constraint: Any, *, after: int
    ) -> Trainer:
        def write(done: int, position: Position) -> Path:
            self.state = replace(self.state, done=done, position=position)
            return self._save(optimizer)

        return Trainer(
            phase=phase,
            forward=self.subject.forward,
            loss=self.loss,
            optimizer=optimizer,
            stream=self.stream,
            device=self.subject.device,
            history=self.history,
            constraint=constraint,
            progress=self.progress,
            checkpoint=write if self.checkpoint_path is not None else None,
            checkpoint_every=self.options.checkpoint_every,
            after=after,
        )

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self, optimizer: torch.optim.Optimizer) -> Path:
        assert self.checkpoint_path is not None
        state = self.state
        payload: dict[str, Any] = {
            "model_sha256": checkpoints.fingerprint(self.subject.graph.model.proto),
            "settings": json.dumps(self.options.settings(), sort_keys=True),
            "phase": state.phase,
            "done": state.done,
            "epoch": state.position.epoch,
            "batch": state.position.batch,
            "regularize_iterations": state.regularize_iterations,
            "seconds": self._seconds(),
            "module": self.subject.module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "history": json.dumps(self.history.state()),
        }
        if self.regularizer is not None:
            payload["regularizer"] = self.regularizer.state_dict()
        if state.phase == "finetune" and self.finished is not None:
            payload["pruned"] = checkpoints.model_bytes(self.finished.model)
            payload["finished"] = json.dumps(self.finished.to_json())
        return checkpoints.save_checkpoint(self.checkpoint_path, payload)

    def _load(self) -> dict[str, Any]:
        path = str(self.resume)
        saved = checkpoints.load_checkpoint(path)
        checkpoints.check_resumable(
            saved, self.subject.graph.model.proto, self.options.settings(), path
        )
        self.state = RunState(
            phase=saved["phase"],
            done=int(saved["done"]),
            position=Position(int(saved["epoch"]), int(saved["batch"])),
            regularize_iterations=int(saved["regularize_iterations"]),
            seconds=float(saved["seconds"]),
        )
        self.history = History.from_state(json.loads(saved["history"]))
        if self.state.phase == "finetune":
            self._load_finished(saved)
        self.subject.module.load_state_dict(saved["module"])
        torch.set_rng_state(saved["rng"])
        return saved

    def _load_finished(self, saved: dict[str, Any]) -> None:
        pruned = checkpoints.model_from_bytes(saved["pruned"])
        document = json.loads(saved["finished"])
        shapes = dict(self.subject.graph.input_shapes)
        self.finished = Finished(
            model=pruned,
            removed_units=int(document["removed_channels"]),
            validation=checkpoints.validation_from_json(document["validation"]),
            after=count_costs(analyse(pruned, shapes), self.options.convention),
            sparse_flops=int(document["sparse_flops"]),
        )
        regularizer = Regularizer(
            self.groups, self.allocation, self.tensors, self.options.schedule()
        )
        regularizer.load_state_dict(saved["regularizer"])
        self.regularizer = regularizer
        self.subject.adopt(pruned, self.options.tolerance)

    def _seconds(self) -> float:
        return self.state.seconds + time.perf_counter() - self.started

    # -- the result ----------------------------------------------------------------------
    def _result(self, model: onnx.ModelProto) -> RegularizeResult:
        assert self.finished is not None and self.regularizer is not None
        shapes = dict(self.subject.graph.input_shapes)
        final = analyse(model, shapes)
        after = count_costs(final, self.options.convention)
        sparse = after.totals.flops
        if self.groups.granularity == "shape":
            sparse -= round(zero_column_flops(final, self.options.convention))
        record = build_record(
            model=self.subject.graph.model.name,
            settings=self.options.settings(),
            regularizer=self.regularizer,
            finished=self.finished,
            before=self.before,
            after=after,
            sparse_flops=sparse,
            iterations={
                "regularize": self.state.regularize_iterations,
                "finetune": self.options.finetune,
            },
            history=self.history,
            in_place=self.subject.in_place,
            seconds=self._seconds(),
        )
        return RegularizeResult(
            model=model,
            record=record,
            before=self.before,
            after=after,
            sparse_flops=int(sparse),
            validation=self.finished.validation,
            module=self.subject.module,
            in_place=self.subject.in_place,
            reason=self.subject.reason,
        )
