"""Training an ONNX model from scratch as a torch module, and measuring each step.

:func:`train_and_evaluate` wraps the model in :class:`ranp_onnx.scoring.evaluator.TorchGraph`,
trains it on the task's loss (cross-entropy on the logits: a final softmax is skipped),
and evaluates the task metric on the test set. It measures:

- the median wall time of a training step (forward, backward, optimizer step), over all
  steps but the first two and the profiled one;
- the peak memory a training step allocates: one step after two warm-up steps is run
  under ``torch.profiler`` with memory profiling, and the peak of its running allocation
  total is taken. This counts what the step itself allocates (activations kept for the
  backward pass, gradients, temporaries); the parameters, optimizer state and input
  batch, allocated before the step, are not in it.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from examples.tasks import Budget, Samples, Task
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ops import rule_for
from ranp_onnx.scoring.evaluator import TorchGraph

WARMUP_STEPS = 2
MB = float(1 << 20)


@dataclass(frozen=True)
class TrainingRun:
    """What training one network gave.

    Attributes:
        metric: Test metric (percent).
        final_loss: Mean training loss over the last epoch.
        step_seconds: Median wall time of a training step.
        peak_step_mb: Peak memory allocated by one training step (MB).
        steps: Optimizer steps taken.
        seconds: Wall time of training and evaluation.
    """

    metric: float
    final_loss: float
    step_seconds: float
    peak_step_mb: float
    steps: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def logits_name(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> str:
    """The tensor the loss reads: the output, or the input of a final channel softmax."""
    graph = analyse(model, {"input": input_shape})
    output = graph.output_names[0]
    producer = graph.producer(output)
    rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
    logits = rule.logits_input(producer, graph) if rule is not None and producer else None
    return logits or output


def _optimizer(module: torch.nn.Module, budget: Budget) -> torch.optim.Optimizer:
    parameters = [p for p in module.parameters() if p.requires_grad]
    if budget.optimizer == "adam":
        return torch.optim.Adam(
            parameters, lr=budget.learning_rate, weight_decay=budget.weight_decay
        )
    return torch.optim.SGD(
        parameters,
        lr=budget.learning_rate,
        momentum=0.9,
        nesterov=True,
        weight_decay=budget.weight_decay,
    )


def _peak_allocated_mb(profiler: torch.profiler.profile) -> float:
    """Peak of the running allocation total over the profiled step, in MB.

    The allocator's total is process-wide and drifts between profiled sessions (blocks
    allocated in one and freed outside it are never subtracted), so the peak is taken
    relative to the total just before the step's first allocation.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        profiler.export_chrome_trace(str(path))
        document = json.loads(path.read_text())
    events = document["traceEvents"] if isinstance(document, dict) else document
    memory = sorted(
        (event for event in events if event.get("name") == "[memory]"),
        key=lambda event: float(event["ts"]),
    )
    if not memory:
        return 0.0
    first = memory[0]["args"]
    baseline = int(first["Total Allocated"]) - int(first["Bytes"])
    peak = max(int(event["args"]["Total Allocated"]) for event in memory)
    return (peak - baseline) / MB


def train_and_evaluate(
    model: onnx.ModelProto,
    task: Task,
    train: Samples,
    test: Samples,
    *,
    seed: int,
) -> TrainingRun:
    """Train ``model`` from its current weights on ``train`` and score it on ``test``.

    Args:
        model: The network (already initialised as it should start).
        task: The task (budget, loss settings, metric).
        train: Training samples.
        test: Test samples.
        seed: Seeds the order of the training samples.

    Returns:
        The metric and the measurements.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    budget = task.budget
    logits = logits_name(model, (1, *train.inputs.shape[1:]))
    module = TorchGraph(model).train()
    optimizer = _optimizer(module, budget)
    per_epoch = len(train) // budget.batch_size
    total = max(1, per_epoch * budget.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    ignore = task.ignore_index if task.ignore_index is not None else -100
    generator = np.random.default_rng([seed, 7])
    times: list[float] = []
    peak_mb = 0.0
    losses: list[float] = []
    step = 0
    for _ in range(budget.epochs):
        order = generator.permutation(len(train))
        losses = []
        for first in range(0, per_epoch * budget.batch_size, budget.batch_size):
            chosen = np.sort(order[first : first + budget.batch_size])
            inputs = torch.from_numpy(train.inputs[chosen])
            labels = torch.from_numpy(train.labels[chosen])
            profiled = step == WARMUP_STEPS
            tick = time.perf_counter()
            if profiled:
                with torch.profiler.profile(
                    activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
                ) as profiler:
                    loss = _step(module, optimizer, logits, inputs, labels, ignore)
                peak_mb = _peak_allocated_mb(profiler)
            else:
                loss = _step(module, optimizer, logits, inputs, labels, ignore)
            if step >= WARMUP_STEPS and not profiled:
                times.append(time.perf_counter() - tick)
            schedule.step()
            losses.append(loss)
            step += 1
    metric = evaluate(module, logits, task, test)
    return TrainingRun(
        metric=metric,
        final_loss=float(np.mean(losses)) if losses else math.nan,
        step_seconds=statistics.median(times) if times else math.nan,
        peak_step_mb=peak_mb,
        steps=step,
        seconds=time.perf_counter() - started,
    )


def _step(
    module: TorchGraph,
    optimizer: torch.optim.Optimizer,
    logits: str,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    ignore: int,
) -> float:
    output = module.capture({"input": inputs}, [logits])[logits]
    loss = F.cross_entropy(output, labels, ignore_index=ignore)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def evaluate(module: TorchGraph, logits: str, task: Task, test: Samples, batch: int = 16) -> float:
    """The task metric of the module (eval mode: running BatchNorm statistics)."""
    module.eval()
    predictions = []
    with torch.no_grad():
        for first in range(0, len(test), batch):
            inputs = torch.from_numpy(test.inputs[first : first + batch])
            output = module.capture({"input": inputs}, [logits])[logits]
            predictions.append(output.argmax(dim=1).numpy())
    module.train()
    return task.metric(np.concatenate(predictions), test.labels, test.meta)
