"""The batch axis: does the graph follow it, and if not, which node fixes it.

Exporters bake the batch a model was exported at into its graph: torch's dynamo exporter
writes Reshape targets such as ``[1, 1536]``, the torchscript exporter turns
``x.view(x.size(0), -1)`` into a constant at a static batch. Such a graph runs only at its
own batch. :func:`batch_fixer` finds the node that fixes it by inferring the shapes again
at another batch (shapes only, nothing runs): every tensor that carries the batch on its
first axis must carry the new batch there and keep its other axes; the first node whose
outputs do not (or that does not accept the new shapes at all) is the one named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import first_line
from ..ir.graph import GraphAnalysis, NodeInfo
from .shape_inference import InferredShapes, infer_shapes


@dataclass(frozen=True)
class BatchFixer:
    """A node that does not follow the batch.

    Attributes:
        node: The node's name.
        op_type: Its op type.
        batch: The batch the graph was analysed at.
        other_batch: The batch it was tried at.
        tensor: The output that does not follow ("" if the node failed).
        shape: That output's shape at ``batch``.
        other_shape: Its shape at ``other_batch``.
        failure: Why the node does not accept ``other_batch``, a clause without a subject
            ("" if it does).
    """

    node: str
    op_type: str
    batch: int
    other_batch: int
    tensor: str = ""
    shape: tuple[int, ...] = ()
    other_shape: tuple[int, ...] = ()
    failure: str = ""

    def describe(self) -> str:
        """One clause for messages, naming the node and what it does to the batch."""
        where = f"node '{self.node}' ({self.op_type})"
        if self.failure:
            return f"{where} does not accept batch {self.other_batch} (it {self.failure})"
        if self.other_shape == self.shape:
            stays = f"its output stays {list(self.shape)} at batch {self.other_batch}"
            return f"{where} fixes the batch: {stays}"
        return (
            f"{where} fixes the batch: its output is {list(self.other_shape)} at batch "
            f"{self.other_batch}, {list(self.shape)} at batch {self.batch}"
        )


def analysed_batch(graph: GraphAnalysis) -> int | None:
    """The batch the graph was analysed at: the first axis of its first input (None: a scalar)."""
    for name in graph.input_names:
        shape = graph.input_shapes.get(name, ())
        if shape:
            return int(shape[0])
    return None


def batch_fixer(graph: GraphAnalysis, batch: int) -> BatchFixer | None:
    """The first node that does not follow the batch from the analysed one to ``batch``.

    Inputs whose first axis is the analysed batch get ``batch`` there, whatever the model
    declares; shapes are inferred again and compared node by node.

    Returns:
        The node, or None if every tensor follows (the graph runs at ``batch``).
    """
    analysed = analysed_batch(graph)
    if analysed is None or batch == analysed:
        return None
    shapes = {
        name: (batch, *shape[1:]) if shape and shape[0] == analysed else tuple(shape)
        for name, shape in graph.input_shapes.items()
    }
    other = infer_shapes(graph.model, shapes, stop_at_failure=True)
    failed = other.failure[0].index if other.failure is not None else None
    for node in graph.nodes:
        if node.index == failed and other.failure is not None:
            reason = first_line(other.failure[1]).removeprefix(f"node '{node.name}' ")
            reason = reason.removeprefix(f"({node.op_type}) ")
            return BatchFixer(node.name, node.op_type, analysed, batch, failure=reason)
        found = _fixing_output(graph, other, node, (analysed, batch))
        if found is not None:
            shape, other_shape = graph.shape(found), other.shape(found)
            assert other_shape is not None
            return BatchFixer(node.name, node.op_type, analysed, batch, found, shape, other_shape)
    return None


def _fixing_output(
    graph: GraphAnalysis, other: InferredShapes, node: NodeInfo, batches: tuple[int, int]
) -> str | None:
    """The output of a node that reads the batch but does not pass it on, or None.

    A node passes the batch on if at least one output carries it and every other output
    keeps its shape (the per-channel statistics of a training-mode BatchNormalization).
    """
    inputs = [_kind(graph, other, name, batches) for name in node.inputs if name]
    if "batch" not in inputs:
        return None
    outputs = [(name, _kind(graph, other, name, batches)) for name in node.outputs if name]
    outputs = [(name, kind) for name, kind in outputs if kind != "skip"]
    if not outputs or any(kind == "batch" for _, kind in outputs):
        return next((name for name, kind in outputs if kind == "other"), None)
    return outputs[0][0]


def _kind(graph: GraphAnalysis, other: InferredShapes, name: str, batches: tuple[int, int]) -> str:
    """How a tensor changes with the batch: "batch", "same", "other" or "skip" (static).

    "batch": it carries the batch on its first axis; "same": it keeps its shape.
    """
    info = graph.tensors.get(name)
    if info is None or info.static or info.shape is None or name in other.static:
        return "skip"
    shape = other.shape(name)
    if shape is None:
        return "skip"
    if _carries(info.shape, shape, batches):
        return "batch"
    return "same" if shape == info.shape else "other"


def _carries(shape: Sequence[int], other: Sequence[int], batches: tuple[int, int]) -> bool:
    """True if ``other`` is ``shape`` with its first axis scaled from one batch to the other."""
    analysed, batch = batches
    return (
        len(shape) == len(other) > 0
        and tuple(shape[1:]) == tuple(other[1:])
        and shape[0] * batch == other[0] * analysed
        and shape[0] != other[0]
    )
