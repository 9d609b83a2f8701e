"""A real training step in torch, and its peak memory as torch's allocator counts it.

:func:`measure_training_step` runs the step the training-memory model predicts
(:mod:`ranp_onnx.training_memory`): the module in training mode, the forward up to the
loss input, the cross-entropy (mse for an output without a class axis), ``backward()`` and
the optimizer's step, under autocast when asked. A first step creates the optimizer's
state; gradients are then set to None and the next step is measured:

- on CUDA with ``torch.cuda.max_memory_allocated`` (reset before the step);
- on CPU from the memory events of ``torch.profiler`` (``profile_memory=True``): every
  allocation and free of torch's CPU allocator during the step, added up in time order,
  on top of the bytes alive before it (parameters, buffers, optimizer state, the batch).
  Process memory (RSS) is not used: it counts the interpreter, libraries and freed pages
  the allocator keeps.

Further steps are timed without the profiler. This module imports torch; ``import
ranp_onnx`` does not.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..ir.graph import GraphAnalysis
from ..scoring.evaluator import TorchGraph
from ..scoring.losses import cross_entropy

if TYPE_CHECKING:
    from ..analysis.training_memory import TrainingSetup


@dataclass(frozen=True)
class MeasuredStep:
    """A training step measured in torch.

    Attributes:
        peak_bytes: The most bytes torch's allocator held during the step.
        baseline_bytes: Bytes alive when the step started (parameters, buffers, optimizer
            state, the batch).
        seconds: Median wall time of the timed steps (None if none were timed).
        device: Where it ran.
    """

    peak_bytes: int
    baseline_bytes: int
    seconds: float | None
    device: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "peak_bytes": self.peak_bytes,
            "baseline_bytes": self.baseline_bytes,
            "seconds": self.seconds,
            "device": self.device,
        }


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer called ``name`` with torch's default settings (SGD: lr 0.01)."""
    params = list(parameters)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params)
    if name == "adamw":
        return torch.optim.AdamW(params)
    raise ValueError(f"unknown optimizer '{name}'")


def measure_training_step(
    module: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    *,
    loss_input: str | None = None,
    optimizer: str = "sgd",
    precision: str = "float32",
    timed_steps: int = 0,
) -> MeasuredStep:
    """Measure the peak memory (and optionally the time) of one training step.

    Args:
        module: A :class:`~ranp_onnx.torch_graph.TorchGraph` or any module taking the
            inputs positionally; moved nowhere (put it and the tensors on the device).
        inputs: The batch, by input name.
        labels: Class indices ``[N, ...]`` (or targets shaped like the output for mse).
        loss_input: For a TorchGraph: the tensor the loss reads (the logits before a final
            Softmax). Defaults to the module's output.
        optimizer: "sgd", "momentum", "adam" or "adamw".
        precision: "float32", or "float16" / "bfloat16" for autocast (float16 with a
            gradient scaler).
        timed_steps: Steps timed after the measured one. Defaults to 0.

    Returns:
        The measurement.
    """
    device = next(iter(inputs.values())).device
    step, state = _step_function(module, inputs, labels, loss_input, optimizer, precision, device)
    module.train()
    step()  # creates the optimizer state
    _zero_grad(module)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        baseline = _storage_bytes(
            [*module.parameters(), *module.buffers(), *inputs.values(), labels]
            + [value for entry in state.state.values() for value in entry.values()]
        )
        peak = baseline + _profiled_peak(step)
    times = []
    for _ in range(timed_steps):
        _zero_grad(module)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return MeasuredStep(
        peak_bytes=int(peak),
        baseline_bytes=int(baseline),
        seconds=statistics.median(times) if times else None,
        device=str(device),
    )


def _step_function(
    module: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    loss_input: str | None,
    optimizer_name: str,
    precision: str,
    device: torch.device,
) -> tuple[Callable[[], None], torch.optim.Optimizer]:
    optimizer = make_optimizer(optimizer_name, module.parameters())
    scaler = torch.amp.GradScaler(device.type) if precision == "float16" else None

    def autocast() -> AbstractContextManager[Any]:
        if precision == "float32":
            return nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, precision))

    def forward() -> torch.Tensor:
        if isinstance(module, TorchGraph):
            name = loss_input or module.output_names[0]
            return module.capture(dict(inputs), [name])[name]
        return module(*inputs.values())

    def step() -> None:
        with autocast():
            output = forward()
            classes = output.dim() >= 2 and output.shape[1] >= 2 and not labels.is_floating_point()
            if classes:
                loss = cross_entropy(output, labels)
            else:
                loss = torch.nn.functional.mse_loss(output, labels.to(output.dtype))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        del output, loss  # the caller holds the output until the step ends

    return step, optimizer


def _zero_grad(module: torch.nn.Module) -> None:
    for parameter in module.parameters():
        parameter.grad = None


def _storage_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (non-tensors are skipped)."""
    storages: dict[int, int] = {}
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what the profiler's C++ side writes to file descriptor 2 (two log lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profiled_peak(step: Callable[[], None]) -> int:
    """The highest total of the allocator's events during ``step``, above its start."""
    from torch.profiler import ProfilerActivity, profile

    with (
        _native_stderr_silenced(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler,
    ):
        step()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def measure_graph_step(
    graph: GraphAnalysis,
    setup: TrainingSetup,
    *,
    timed_steps: int = 0,
    seed: int = 0,
) -> MeasuredStep:
    """Measure a training step of ``to_torch(graph)`` on random data at the graph's shapes.

    The step :func:`~ranp_onnx.training_memory.predict_training_memory` predicts for the
    same graph and setup: random inputs, random class labels for the loss input (random
    targets for an output without a class axis), on ``setup.device``.

    Args:
        graph: The model analysed at the training shapes (batch included).
        setup: Optimizer, precision and device.
        timed_steps: Steps timed after the measured one. Defaults to 0.
        seed: Seed of the random batch. Defaults to 0.
    """
    from ..analysis.training_memory import loss_input

    device = torch.device(setup.device)
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        name: torch.randn(graph.input_shapes[name], generator=generator).to(device)
        for name in graph.input_names
    }
    target = loss_input(graph)
    shape = graph.shape(target)
    if len(shape) >= 2 and shape[1] >= 2:
        labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    else:
        labels = torch.randn(shape, generator=generator)
    return measure_training_step(
        TorchGraph(graph).to(device),
        inputs,
        labels.to(device),
        loss_input=target,
        optimizer=setup.optimizer,
        precision=setup.precision,
        timed_steps=timed_steps,
    )
