"""Ops that compute shapes, indices and constants; static on exporters' graphs, no FLOPs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InternalError
from .base import OpRule, numel, register
from .coupling import depends_on_shapes
from .kernels.evaluation import ints, normalize_axis, required, scalar, to_tensor

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .contexts import EvalContext, RewriteContext


@register
class ShapeRule(OpRule):
    """Shape / Size: read a tensor's shape."""

    op_types = ("Shape", "Size")
    reads_shape = True

    def shape_value(self, node: NodeInfo, shape: tuple[int, ...]) -> np.ndarray | None:
        """The shape (between ``start`` and ``end``), or the element count."""
        if node.op_type == "Size":
            return np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
        start = int(node.attribute("start", 0))
        return np.array(shape[start : node.attribute("end")], dtype=np.int64)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The input's shape (``start``/``end`` cut it) or element count, as int64."""
        import torch

        x = required(inputs, 0)
        if node.op_type == "Size":
            return [torch.tensor(x.numel(), dtype=torch.int64, device=x.device)]
        start, end = int(node.attribute("start", 0)), node.attribute("end")
        dims = list(x.shape)[start : None if end is None else int(end)]
        return [torch.tensor(dims, dtype=torch.int64, device=x.device)]


@register
class ConstantRule(OpRule):
    """Constant / Range: produce constants."""

    op_types = ("Constant", "Range")

    def evaluation_problem(self, node: NodeInfo, opset: int) -> str | None:
        """String and sparse constants have no torch form."""
        if node.op_type == "Constant" and not set(node.attributes) & set(_CONSTANT_KINDS):
            return "only tensor, float and int constants are supported"
        return None

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The constant attribute, or ``torch.arange``."""
        import torch

        if node.op_type == "Constant":
            key = next(k for k in _CONSTANT_KINDS if k in node.attributes)
            value = np.asarray(node.attributes[key], dtype=_CONSTANT_KINDS[key])
            return [to_tensor(value, context.device, node)]
        start, limit, delta = (required(inputs, i) for i in range(3))
        return [
            torch.arange(
                scalar(start), scalar(limit), scalar(delta), dtype=start.dtype, device=start.device
            )
        ]


@register
class ConstantOfShapeRule(OpRule):
    """ConstantOfShape: one value in a given shape (``torch.zeros(n, k, d, h, w)``).

    Where the shape is computed from the input's (the zeros of a type-A shortcut, at any
    batch size) and the output is sliced with channels, the shape's channel entry becomes
    the kept count, so the pruned model still takes every batch size.
    """

    op_types = ("ConstantOfShape",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.full`` of the ``value`` attribute (a float 0 by default)."""
        import torch

        fill = node.attribute("value")
        fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)
        dtype = to_tensor(fill, torch.device("cpu"), node).dtype
        shape = ints(required(inputs, 0))
        return [torch.full(shape, fill[0].item(), dtype=dtype, device=context.device)]

    def follows_channels(self, node: NodeInfo, graph: GraphAnalysis, axis: int) -> bool:
        """True if entry ``axis`` of the shape can be set alone (see :func:`_shape_entry`)."""
        return _shape_entry(node, graph, axis) is not None

    def regenerate(
        self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext, axis: int
    ) -> None:
        """The shape's entry ``axis`` becomes the output's pruned length, a constant."""
        entry = _shape_entry(node, graph, axis)
        if entry is None:
            raise InternalError(f"node '{node.name}': shape entry {axis} cannot be set")
        owner, position, index = entry
        replaced = context.inputs.get((owner.name, position))
        piece = replaced[1] if replaced else context.value(owner.inputs[position])
        value = piece.reshape(-1).copy()
        value[index] = context.new_size(node.outputs[0], axis)
        context.replace_input(owner, position, value)


def _shape_entry(
    node: NodeInfo, graph: GraphAnalysis, axis: int
) -> tuple[NodeInfo, int, int] | None:
    """Where entry ``axis`` of a ConstantOfShape's computed shape can be set alone.

    The shape must be a Concat that only this node reads, and the entry's piece either
    one entry long (its value, such as ``planes - x.size(1)``, is replaced by the pruned
    length) or a constant. Returns (the Concat, the piece's position, the entry's index in
    the piece), or None.
    """
    shape = node.inputs[0]
    if len(graph.consumers(shape)) != 1:
        return None
    found = concatenated_piece(graph, shape, axis)
    if found is None:
        return None
    concat, position, _ = found
    piece = concat.inputs[position]
    if numel(graph.shape(piece)) == 1 or not depends_on_shapes(graph, piece):
        return found
    return None


def concatenated_piece(
    graph: GraphAnalysis, target: str, index: int
) -> tuple[NodeInfo, int, int] | None:
    """The input of the Concat that built 1-D ``target`` which holds entry ``index``.

    Returns (the Concat node, the input's position, the entry's index inside it), or None
    if ``target`` is not built by a Concat.
    """
    producer = graph.producer(target)
    if producer is None or producer.op_type != "Concat":
        return None
    offset = 0
    for position, piece in enumerate(producer.inputs):
        length = numel(graph.shape(piece))
        if offset <= index < offset + length:
            return producer, position, index - offset
        offset += length
    return None


@register
class GatherRule(OpRule):
    """Gather / GatherElements: index along an axis."""

    op_types = ("Gather", "GatherElements")

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``index_select`` (Gather) or ``torch.gather``; negative indices count from the end."""
        import torch

        x, indices = required(inputs, 0), required(inputs, 1)
        axis = normalize_axis(int(node.attribute("axis", 0)), x.dim())
        indices = torch.where(indices < 0, indices + x.shape[axis], indices).to(torch.int64)
        if node.op_type == "GatherElements":
            return [torch.gather(x, axis, indices)]
        selected = torch.index_select(x, axis, indices.reshape(-1))
        shape = (*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])
        return [selected.reshape(shape)]


@register
class NonZeroRule(OpRule):
    """NonZero: indices of non-zero elements (data-dependent shape)."""

    op_types = ("NonZero",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.nonzero``, transposed to ONNX's [rank, count] layout."""
        import torch

        return [torch.nonzero(required(inputs, 0)).t().contiguous()]


#: Constant attributes torch can hold, with the numpy type each one decodes to.
_CONSTANT_KINDS: dict[str, type | None] = {
    "value": None,
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
}
