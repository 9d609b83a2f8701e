"""Stage analysis: the peak memory of one training step in torch, and what it is made of.

The model answers "does training at this patch and batch fit in 11 GB" before anything
runs. It plays one step of the ``to_torch`` module (:mod:`.passes`) on a ledger of
storages (:mod:`.timeline`), from facts, not fitted constants:

- parameters and buffers at their stored size; their gradients, allocated as the backward
  reaches each one; the optimizer's state (SGD none, momentum one copy, Adam and AdamW
  two copies and a step counter per parameter) and its step's temporaries;
- the batch and its labels;
- what each op's torch evaluation keeps for the backward pass, which its op rule says
  (:meth:`~ranp_onnx.ops.base.OpRule.autograd_memory`), a storage kept by two ops
  counted once;
- the backward's working set: each gradient from its creation to its last reader, the
  merging of gradients where a tensor has several readers, and the scratch buffers of
  torch's backends (oneDNN's blocked copies, im2col buffers; :mod:`ranp_onnx.ops.conv_memory`);
- under autocast, the float16 / bfloat16 copies each op's policy makes.

The step predicted is the one :func:`ranp_onnx.reporting.training_step.measure_training_step`
measures; ``benchmarks`` section (g) prints the predicted / measured ratios. cuDNN's
workspace on CUDA is not modelled.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import onnx

from ...errors import InputShapeError, UnsupportedModelError
from ...ir.graph import GraphAnalysis
from ...ir.load import LoadedModel, load_model
from ...ir.units import GB
from ...ops import rule_for
from ..shapes import analyse
from .passes import PassSettings, play_step
from .timeline import CATEGORIES

Optimizer = Literal["sgd", "momentum", "adam", "adamw"]
OPTIMIZERS: tuple[Optimizer, ...] = ("sgd", "momentum", "adam", "adamw")
Precision = Literal["float32", "float16", "bfloat16"]
PRECISIONS: tuple[Precision, ...] = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class TrainingSetup:
    """How the model is trained.

    Attributes:
        optimizer: "sgd", "momentum" (SGD with momentum), "adam" or "adamw".
        precision: "float32", or the autocast type: "float16" (with a gradient scaler)
            or "bfloat16".
        device: "cpu" or "cuda": which backends (and so which scratch buffers) torch uses.
    """

    optimizer: Optimizer = "sgd"
    precision: Precision = "float32"
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainingMemory:
    """The predicted peak of one training step and its breakdown at that moment.

    Attributes:
        model: The model's name.
        setup: How it is trained.
        input_shapes: The training batch's shapes (batch axis included).
        peak_bytes: The most bytes torch's allocator holds during the step.
        breakdown: The peak by category (``parameters``, ``gradients``, ``optimizer
            state``, ``inputs``, ``saved activations``, ``working set``); they add up to
            ``peak_bytes``.
        phase: When the peak happens: "forward", "loss", "backward" or "optimizer step".
        node: The node running then (None between nodes).
        saved_after_forward: Bytes autograd keeps once the loss is computed.
        parameter_count: Trainable parameters.
    """

    model: str
    setup: TrainingSetup
    input_shapes: Mapping[str, tuple[int, ...]]
    peak_bytes: int
    breakdown: Mapping[str, int]
    phase: str
    node: str | None
    saved_after_forward: int
    parameter_count: int

    @property
    def batch_size(self) -> int:
        """The batch size (axis 0 of the first input)."""
        first = next(iter(self.input_shapes.values()), (1,))
        return int(first[0]) if first else 1

    def to_json(self) -> dict[str, Any]:
        """The ``report --training --json`` document."""
        return {
            "model": self.model,
            "setup": self.setup.to_json(),
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "batch_size": self.batch_size,
            "peak_bytes": self.peak_bytes,
            "peak_gb": self.peak_bytes / GB,
            "breakdown_bytes": dict(self.breakdown),
            "phase": self.phase,
            "node": self.node,
            "saved_after_forward_bytes": self.saved_after_forward,
            "parameters": self.parameter_count,
        }


def loss_input(graph: GraphAnalysis) -> str:
    """The tensor a training loss reads: the first output, or the logits before a Softmax."""
    output = graph.output_names[0]
    producer = graph.producer(output)
    rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
    logits = rule.logits_input(producer, graph) if producer is not None and rule else None
    return logits if logits is not None else output


def predict_training_memory(
    graph: GraphAnalysis, setup: TrainingSetup | None = None
) -> TrainingMemory:
    """Predict the peak memory of one training step of ``graph`` in torch.

    Args:
        graph: The model analysed at the training batch's shapes (see
            :func:`training_graph`); a pruned model's shapes (``pruned_shapes``) will do.
        setup: Optimizer, precision and device. Defaults to SGD in float32 on CPU.

    Returns:
        The peak and its breakdown.
    """
    setup = setup or TrainingSetup()
    logits = loss_input(graph)
    settings = PassSettings(
        device=setup.device,
        optimizer=setup.optimizer,
        autocast=setup.precision != "float32",
        training=True,
        loss_input=logits,
        kept=frozenset({logits}),
    )
    played = play_step(graph, settings)
    ledger = played.ledger
    return TrainingMemory(
        model=graph.model.name,
        setup=setup,
        input_shapes=dict(graph.input_shapes),
        peak_bytes=ledger.peak,
        breakdown={category: ledger.at_peak.get(category, 0) for category in CATEGORIES},
        phase=ledger.where[0],
        node=ledger.where[1],
        saved_after_forward=played.saved_after_forward,
        parameter_count=played.parameter_count,
    )


def training_graph(
    model: str | os.PathLike[str] | onnx.ModelProto | LoadedModel,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    batch: int | None = None,
) -> GraphAnalysis:
    """Analyse a model at the training batch's shapes.

    Args:
        model: A path, ModelProto or loaded model.
        input_shapes: Shapes of the inputs (the training patch), keyed by name ("" for
            the only input); fixed dimensions of the model are used where none is given.
        batch: The batch size: axis 0 of every input, even where the model fixes it
            (exporters often write batch 1).

    Raises:
        InputShapeError: A shape does not fit, or the graph fixes its batch size inside
            (a Reshape to a constant shape).
    """
    loaded = load_model(model)
    shapes = {name: tuple(int(d) for d in dims) for name, dims in (input_shapes or {}).items()}
    if batch is None:
        return analyse(loaded, shapes)
    if batch < 1:
        raise InputShapeError(f"`train_batch` {batch}: must be at least 1")
    proto = onnx.ModelProto()
    proto.CopyFrom(loaded.proto)
    stored = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in stored]
    if "" in shapes and len(inputs) == 1:
        shapes[inputs[0].name] = shapes.pop("")
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        given = shapes.get(value.name)
        if given is None and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
            given = tuple(int(d.dim_value) for d in dims)
        if given is not None and len(given) >= 1:
            shapes[value.name] = (batch, *given[1:])
        if len(dims) >= 1:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    fixed = {
        int(v.type.tensor_type.shape.dim[0].dim_value)
        for v in loaded.proto.graph.input
        if v.name not in stored and v.type.tensor_type.shape.dim
    }
    try:
        return analyse(dataclasses.replace(loaded, proto=proto), shapes)
    except (InputShapeError, UnsupportedModelError) as error:
        if fixed <= {0, batch} or "node '" not in str(error):
            raise  # not a node that shape inference refuses at the new batch
        raise InputShapeError(
            f"{error} (at batch {batch}; the model was exported at batch "
            f"{max(fixed)} and may fix it inside: export it with a dynamic batch axis)"
        ) from error
