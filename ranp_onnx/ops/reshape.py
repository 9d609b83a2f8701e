"""Ops that rearrange axes (Reshape, Flatten, Transpose, ...); they cost no FLOPs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .base import AutogradMemory, OpRule, TrainingContext, numel, register
from .coupling import broadcast_axis, depends_on_shapes, pass_through
from .kernels.evaluation import axes_operand, ints, normalize_axis, required
from .shape import concatenated_piece

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


@register
class ReshapeRule(OpRule):
    """Reshape: a flatten into features, channels folded into groups, or channels kept."""

    op_types = ("Reshape",)
    parameter_view = "view"

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.reshape``; 0 copies the input's dimension unless ``allowzero``."""
        x = required(inputs, 0)
        shape = ints(required(inputs, 1)) if context.opset >= 5 else node.attribute("shape")
        allow_zero = bool(node.attribute("allowzero", 0))
        target = [
            int(x.shape[axis]) if size == 0 and not allow_zero else int(size)
            for axis, size in enumerate(shape)
        ]
        return [x.reshape(target)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Channels map to contiguous blocks of the output's axis 1, or share its entries.

        With the batch axis unchanged, row-major order keeps each channel's values together:
        [N, C, S] -> [N, C*m, S/m] gives channel c the entries [c*m, (c+1)*m) of axis 1 (a
        flatten into [N, C*S] features, say); [N, C, S] -> [N, C/k, k*S] puts channels
        [g*k, (g+1)*k) in entry g (GroupNorm's [N, G, -1]), and those k channels are pruned
        together. Any other reshape mixes channels (a channel shuffle's [N, G, C/G, ...] is
        this second kind, and its Transpose keeps the channels whole).
        """
        x, y = node.inputs[0], node.outputs[0]
        before, after = graph.shape(x), graph.shape(y)
        fold = channel_fold(before, after)
        if fold is None:
            channels.block_node(node, f"Reshape {list(before)} -> {list(after)} mixes channels")
            return
        factor, input_finer = fold
        x_space, y_space = channels.space(x, 1), channels.space(y, 1)
        channels.member(node, x_space, y_space)
        if not input_finer:
            channels.tie_blocks(y_space, x_space, factor)
            return
        channels.tie_blocks(x_space, y_space, factor)
        if factor > 1:
            channels.note(
                x_space,
                f"'{node.name}' folds the {before[1]} channels of '{x}' into {after[1]} groups "
                f"of {factor}: they are pruned in whole groups",
            )

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """A hard-coded target shape gets the new channel (or feature) count.

        A target built at run time (``x.view(x.size(0), 16, -1)``: a Concat of pieces, some
        from Shape) adapts by itself except for pieces that are constants: the piece that
        holds the channel count is patched there.
        """
        shape_name = node.inputs[1]
        new_size = context.new_size(node.outputs[0])
        if not depends_on_shapes(graph, shape_name):
            shape = context.value(shape_name).copy()
            if shape.size >= 2 and shape[1] > 0:
                shape[1] = new_size
                context.replace_input(node, 1, shape)
            return
        _patch_concatenated_target(graph, context, shape_name, 1, new_size)


def channel_fold(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, bool] | None:
    """How a reshape maps axis 1 of ``before`` to axis 1 of ``after``, if it keeps channels.

    Returns (factor, input_finer): every ``factor`` consecutive entries of the finer side's
    axis 1 make one entry of the coarser side's; None if the batch axis changes, axis 1 of
    one side is not a multiple of the other's, the trailing axes do not make up for it, or
    all channels fold into one entry.
    """
    if len(before) < 2 or len(after) < 2 or before[0] != after[0]:
        return None
    rest_before, rest_after = numel(before[2:]), numel(after[2:])
    if after[1] % before[1] == 0:
        factor = after[1] // before[1]
        return (factor, False) if rest_before == factor * rest_after else None
    if before[1] % after[1] == 0 and after[1] > 1:
        factor = before[1] // after[1]
        return (factor, True) if rest_after == factor * rest_before else None
    return None


def _patch_concatenated_target(
    graph: GraphAnalysis, context: RewriteContext, target: str, index: int, size: int
) -> None:
    """Set entry ``index`` of a target shape built by Concat, if a constant piece holds it.

    A target computed from shapes as a whole, or a computed piece, follows the pruned input.
    """
    found = concatenated_piece(graph, target, index)
    if found is None:
        return
    producer, position, inside = found
    piece = producer.inputs[position]
    if depends_on_shapes(graph, piece):
        return
    value = context.value(piece).reshape(-1).copy()
    if value[inside] > 0:
        value[inside] = size
        context.replace_input(producer, position, value)


@register
class FlattenRule(OpRule):
    """Flatten: with axis 1 each channel owns a block of prod(spatial) features."""

    op_types = ("Flatten",)
    parameter_view = "view"

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """A 2-D reshape: the axes before ``axis`` become rows, the rest columns."""
        x = required(inputs, 0)
        axis = normalize_axis(int(node.attribute("axis", 1)), x.dim())
        rows, columns = numel(tuple(x.shape[:axis])), numel(tuple(x.shape[axis:]))
        return [x.reshape(rows, columns)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Flatten from axis 1: channel c owns features [c*S, (c+1)*S) with S = prod(spatial)."""
        x, y = node.inputs[0], node.outputs[0]
        before = graph.shape(x)
        if len(before) < 2 or int(node.attribute("axis", 1)) % max(len(before), 1) != 1:
            channels.block_node(node, "Flatten at an axis other than 1")
            return
        x_space, y_space = channels.space(x, 1), channels.space(y, 1)
        channels.member(node, x_space, y_space)
        channels.tie_blocks(y_space, x_space, numel(before[2:]))


@register
class TransposeRule(OpRule):
    """Transpose: moves the channel axis."""

    op_types = ("Transpose",)
    parameter_view = "view"

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.permute`` by ``perm`` (default: reverse the axes)."""
        x = required(inputs, 0)
        perm = [int(p) for p in node.attribute("perm", range(x.dim() - 1, -1, -1))]
        return [x.permute(perm)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Only a permutation that leaves the channel axis in place passes channels."""
        rank = len(graph.shape(node.inputs[0]))
        perm = list(node.attribute("perm", range(rank - 1, -1, -1)))
        if rank < 2 or perm[1] != 1:
            channels.block_node(node, "Transpose moves the channel axis")
            return
        pass_through(node, graph, channels)


class _AxesRule(OpRule):
    """Squeeze and Unsqueeze: remove or insert axes of size 1."""

    parameter_view = "view"

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Adding or removing axes after the channel axis passes channels."""
        reference = node.outputs[0] if node.op_type == "Unsqueeze" else node.inputs[0]
        if any(axis <= 1 for axis in _axes(node, graph, len(graph.shape(reference)))):
            channels.block_node(node, f"{node.op_type} moves the channel axis")
            return
        pass_through(node, graph, channels)


@register
class SqueezeRule(_AxesRule):
    """Squeeze: drops axes of size 1."""

    op_types = ("Squeeze",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.squeeze`` of the given axes, or of every axis of size 1."""
        x = required(inputs, 0)
        axes = axes_operand(node, inputs, 1, 13, context.opset)
        if axes is None:
            return [x.squeeze()]
        return [x.squeeze(tuple(normalize_axis(a, x.dim()) for a in axes))]

    def static_source(
        self, node: NodeInfo, graph: GraphAnalysis, axis: int
    ) -> tuple[str, int] | None:
        """Output axis ``axis`` is the ``axis``-th input axis that was not squeezed."""
        rank = len(graph.shape(node.inputs[0]))
        removed = _axes(node, graph, rank)
        remaining = [a for a in range(rank) if a not in removed]
        return (node.inputs[0], remaining[axis]) if axis < len(remaining) else None


@register
class UnsqueezeRule(_AxesRule):
    """Unsqueeze: inserts axes of size 1."""

    op_types = ("Unsqueeze",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Insert axes of size 1 at the given positions of the output."""
        x = required(inputs, 0)
        axes = axes_operand(node, inputs, 1, 13, context.opset) or []
        rank = x.dim() + len(axes)
        for axis in sorted(normalize_axis(a, rank) for a in axes):
            x = x.unsqueeze(axis)
        return [x]

    def static_source(
        self, node: NodeInfo, graph: GraphAnalysis, axis: int
    ) -> tuple[str, int] | None:
        """An output axis that was not inserted comes from the input axis before it."""
        inserted = _axes(node, graph, len(graph.shape(node.outputs[0])))
        if axis in inserted:
            return None
        return node.inputs[0], axis - sum(1 for a in inserted if a < axis)


@register
class ExpandRule(OpRule):
    """Expand: broadcasts to a shape."""

    op_types = ("Expand",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """A view of the input; the gradient is summed down to the input's shape."""
        return AutogradMemory(output_views=(0,))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.expand`` to the two-way broadcast of the input and ``shape``."""
        import torch

        x = required(inputs, 0)
        shape = torch.broadcast_shapes(tuple(x.shape), tuple(ints(required(inputs, 1))))
        return [x.expand(shape)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Broadcasting passes the channels an input carries.

        A target shape computed from shapes that spells out the channel count is kept whole.
        """
        if len(graph.shape(node.outputs[0])) < 2:
            channels.block_node(node, "Expand to a tensor without a channel axis")
            return
        shape = graph.constant(node.inputs[1])
        rank = len(graph.shape(node.outputs[0]))
        if shape is None or (len(shape) + 1 >= rank and depends_on_shapes(graph, node.inputs[1])):
            channels.block_node(node, "Expand to a computed shape")
            return
        channels.member(node, channels.space(node.outputs[0], 1))
        x = node.inputs[0]
        axis = broadcast_axis(graph.shape(x), graph.shape(node.outputs[0]), 1)
        if axis is not None:
            channels.tie(channels.space(x, axis), channels.space(node.outputs[0], 1))

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """A target shape that spells out the channel count gets the new count."""
        shape = context.value(node.inputs[1]).copy()
        rank = len(graph.shape(node.outputs[0]))
        position = 1 - (rank - len(shape))
        if 0 <= position < len(shape) and shape[position] > 1:
            shape[position] = context.new_size(node.outputs[0])
            context.replace_input(node, 1, shape)


@register
class TileRule(OpRule):
    """Tile: repeats along axes."""

    op_types = ("Tile",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.repeat`` by ``repeats``."""
        return [required(inputs, 0).repeat(ints(required(inputs, 1)))]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Tiling axes other than the channel axis passes channels."""
        x, y = node.inputs[0], node.outputs[0]
        if graph.shape(x)[1:2] != graph.shape(y)[1:2]:
            channels.block_node(node, "Tile repeats the channel axis")
            return
        pass_through(node, graph, channels)


@register
class DepthToSpaceRule(OpRule):
    """DepthToSpace / SpaceToDepth: move channels into space and back."""

    op_types = ("DepthToSpace", "SpaceToDepth")

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Reshape, permute, reshape (DCR or CRD order for DepthToSpace)."""
        x = required(inputs, 0)
        block = int(node.attribute("blocksize"))
        n, c, h, w = (int(d) for d in x.shape)
        if node.op_type == "SpaceToDepth":
            y = x.reshape(n, c, h // block, block, w // block, block)
            y = y.permute(0, 3, 5, 1, 2, 4)
            return [y.reshape(n, c * block * block, h // block, w // block)]
        if str(node.attribute("mode", "DCR")) == "CRD":
            y = x.reshape(n, c // (block * block), block, block, h, w).permute(0, 1, 4, 2, 5, 3)
        else:
            y = x.reshape(n, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
        return [y.reshape(n, c // (block * block), h * block, w * block)]


def _axes(node: NodeInfo, graph: GraphAnalysis, rank: int) -> set[int]:
    """The axes a Squeeze removes or an Unsqueeze inserts, normalised to ``rank``."""
    axes = node.attribute("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        value = graph.constant(node.inputs[1])
        axes = value.reshape(-1).tolist() if value is not None else None
    if axes is None:
        axes = [i for i, d in enumerate(graph.shape(node.inputs[0])) if d == 1]
    return {int(a) % rank for a in axes}
