"""Ops that pass, join or cut channels (Concat, Split, Slice, ...); no FLOPs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .base import Autocast, AutogradMemory, OpCost, OpRule, TrainingContext, register
from .coupling import depends_on_shapes, pass_through
from .kernels.evaluation import ints, normalize_axis, optional, required, scalar, torch_dtype
from .kernels.slicing import slice_tensor, split_sizes

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


@register
class ConcatRule(OpRule):
    """Concat: on the channel axis each input owns a slice of the output's channels."""

    op_types = ("Concat",)
    autocast: ClassVar[Mapping[str, Autocast]] = {"cpu": "promote", "cuda": "promote"}

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """A new output; each input's gradient is a slice (a view) of the output's."""
        return AutogradMemory(gradient_views=tuple(range(len(node.inputs))))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.cat`` along ``axis``."""
        import torch

        tensors = [tensor for tensor in inputs if tensor is not None]
        axis = normalize_axis(int(node.attribute("axis")), tensors[0].dim())
        return [torch.cat(tensors, dim=axis)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """On the channel axis input i's channel c is output channel offset_i + c.

        A constant part (the zeros a type-A shortcut appends to the identity) is sliced
        with the channels it is tied to downstream; it is no layer's output.
        """
        y = node.outputs[0]
        rank = len(graph.shape(y))
        if rank < 2:
            channels.block_node(node, "Concat of tensors without a channel axis")
            return
        if int(node.attribute("axis")) % rank != 1:
            pass_through(node, graph, channels, inputs=tuple(range(len(node.inputs))))
            return
        y_space = channels.space(y, 1)
        channels.member(node, y_space)
        offset = 0
        for name in node.inputs:
            part = channels.space(name, 1)
            channels.member(node, part)
            channels.tie(part, y_space, b_start=offset)
            if graph.tensors[name].static:
                channels.note(
                    y_space,
                    f"'{node.name}' concatenates the constant '{name}' as channels "
                    f"{offset}-{offset + part.size - 1} of '{y}': no layer upstream computes "
                    "them, they are pruned with the layers they meet",
                    start=offset,
                    count=part.size,
                )
            offset += part.size

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """A constant part that lost every channel is dropped (no empty tensor is left)."""
        rank = len(graph.shape(node.outputs[0]))
        if int(node.attribute("axis")) % rank != 1:
            return
        for position, name in enumerate(node.inputs):
            if graph.tensors[name].static and context.new_size(name) == 0:
                context.remove_input(node, position)


@register
class SplitRule(OpRule):
    """Split: on the channel axis each output owns a slice of the input's channels."""

    op_types = ("Split",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The outputs are views; the gradient is concatenated into a new tensor."""
        return AutogradMemory(output_views=tuple(range(len(node.outputs))))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.split`` by the ``split`` sizes, else into equal parts (last smaller)."""
        import torch

        x = required(inputs, 0)
        axis = normalize_axis(int(node.attribute("axis", 0)), x.dim())
        if context.opset < 13:
            given = [int(s) for s in node.attribute("split", [])]
        else:
            given = ints(optional(inputs, 1))
        parts = int(node.attribute("num_outputs", len(node.outputs)))
        sizes = split_sizes(int(x.shape[axis]), parts, given)
        return list(torch.split(x, sizes, dim=axis))

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """On the channel axis output i's channel c is input channel offset_i + c."""
        x = node.inputs[0]
        rank = len(graph.shape(x))
        outputs = [name for name in node.outputs if name]
        if rank < 2:
            channels.block_node(node, "Split of a tensor without a channel axis")
            return
        if int(node.attribute("axis", 0)) % rank != 1:
            pass_through(node, graph, channels)
            return
        if len(node.inputs) > 1 and node.inputs[1] and depends_on_shapes(graph, node.inputs[1]):
            channels.block_node(node, "Split sizes on the channel axis are computed from shapes")
            return
        x_space = channels.space(x, 1)
        channels.member(node, x_space)
        offset = 0
        for name in outputs:
            part = channels.space(name, 1)
            channels.member(node, part)
            channels.tie(part, x_space, b_start=offset)
            offset += part.size

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """Split sizes become the kept channel counts of the outputs."""
        rank = len(graph.shape(node.inputs[0]))
        if int(node.attribute("axis", 0)) % rank != 1:
            return
        sizes = np.array([context.new_size(name) for name in node.outputs if name], dtype=np.int64)
        unequal = len(set(sizes.tolist())) > 1
        if graph.opset < 13:
            if "split" in node.attributes or unequal:
                context.set_attribute(node, "split", [int(s) for s in sizes])
        elif (len(node.inputs) > 1 and node.inputs[1]) or unequal:
            context.replace_input(node, 1, sizes)
            context.set_attribute(node, "num_outputs", None)


@register
class SliceRule(OpRule):
    """Slice: a strided window; on the channel axis it selects channels."""

    op_types = ("Slice",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """A view (negative steps gather a copy); the gradient is a new zero-filled tensor."""
        _, _, _, steps = _slice_arguments(node, graph)
        if steps is not None and any(step < 0 for step in steps):
            return AutogradMemory()
        return AutogradMemory(output_views=(0,))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Strided window; negative steps select with ``index_select``."""
        x = required(inputs, 0)
        if context.opset < 10:
            starts, ends = node.attribute("starts"), node.attribute("ends")
            axes, steps = node.attribute("axes"), None
        else:
            starts, ends = ints(required(inputs, 1)), ints(required(inputs, 2))
            axes, steps = ints(optional(inputs, 3)), ints(optional(inputs, 4))
        return [slice_tensor(x, list(starts), list(ends), axes, steps)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Slicing the channel axis with step 1 selects a contiguous run of channels."""
        x, y = node.inputs[0], node.outputs[0]
        window = channel_window(node, graph)
        if window is None:
            pass_through(node, graph, channels)
            return
        start, step = window
        if step != 1 or any(depends_on_shapes(graph, n) for n in node.inputs[1:] if n):
            channels.block_node(node, "Slice of the channel axis with a step or computed bounds")
            return
        x_space, y_space = channels.space(x, 1), channels.space(y, 1)
        channels.member(node, x_space, y_space)
        channels.tie(y_space, x_space, b_start=start)

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """New bounds: the kept channels before the old start, plus the kept run."""
        window = channel_window(node, graph)
        if window is None:
            return
        start, _ = window
        kept_in = context.kept_channels(node.inputs[0])
        new_start = int(np.count_nonzero(kept_in < start)) if kept_in is not None else start
        new_end = new_start + context.new_size(node.outputs[0])
        set_slice_bounds(node, graph, context, new_start, new_end)


class _Copy(OpRule):
    """Ops whose output holds the input's values, element for element."""

    def static_source(
        self, node: NodeInfo, graph: GraphAnalysis, axis: int
    ) -> tuple[str, int] | None:
        """The output is the input: same axis."""
        return node.inputs[0], axis

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Elementwise: channel c in, channel c out."""
        pass_through(node, graph, channels)


@register
class IdentityRule(_Copy):
    """Identity: passes everything through."""

    op_types = ("Identity",)
    parameter_view = "alias"

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The input itself."""
        return AutogradMemory.view()

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The input itself."""
        return [required(inputs, 0)]


@register
class CastRule(_Copy):
    """Cast / CastLike: change the element type, channels unchanged."""

    op_types = ("Cast", "CastLike")
    parameter_view = "view"

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The input itself when the type does not change, else a new tensor."""
        x, y = node.inputs[0], node.outputs[0]
        if graph.tensors[x].elem_type == graph.tensors[y].elem_type:
            return AutogradMemory.view()
        return AutogradMemory()

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``Tensor.to`` the ``to`` type (Cast) or the second input's type (CastLike)."""
        x = required(inputs, 0)
        if node.op_type == "CastLike":
            dtype = required(inputs, 1).dtype
        else:
            dtype = torch_dtype(int(node.attribute("to")), node)
        return [x if x.dtype == dtype else x.to(dtype)]


@register
class DropoutRule(OpRule):
    """Dropout: an identity at inference; the reference counts its output memory."""

    op_types = ("Dropout",)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """In training mode the mask: float noise on CPU, booleans on CUDA; else a view."""
        ratio = float(node.attribute("ratio", 0.5))
        if len(node.inputs) > 1 and node.inputs[1]:
            value = graph.constant(node.inputs[1])
            ratio = float(value.reshape(-1)[0]) if value is not None else 0.5
        if not context.training or ratio <= 0.0:
            return AutogradMemory.view()
        x = node.inputs[0]
        mask = context.nbytes(graph, x)
        if context.device != "cpu":
            mask //= context.itemsizes.get(x, graph.tensors[x].itemsize)
        return AutogradMemory(saved_bytes=mask)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Identity, or ``F.dropout`` in training mode or if the node says ``training_mode``."""
        import torch
        import torch.nn.functional as F

        x = required(inputs, 0)
        if context.opset >= 12:
            ratio_input, mode_input = optional(inputs, 1), optional(inputs, 2)
            ratio = 0.5 if ratio_input is None else float(scalar(ratio_input))
            static_training = mode_input is not None and bool(scalar(mode_input))
        else:
            ratio = float(node.attribute("ratio", 0.5))
            static_training = context.opset < 7 and not node.attribute("is_test", 0)
        active = (context.dropout_training or static_training) and ratio > 0.0
        wants_mask = len(node.outputs) > 1 and bool(node.outputs[1])
        if not wants_mask:
            return [F.dropout(x, ratio, training=True) if active else x]
        if not active:  # onnxruntime's mask: all true from opset 12, all false before
            kept = torch.full_like(x, context.opset >= 12, dtype=torch.bool)
            return [x, kept if context.opset >= 10 else kept.to(x.dtype)]
        noise = torch.empty_like(x).bernoulli_(1.0 - ratio)  # as torch's CPU dropout draws
        mask = noise.to(torch.bool) if context.opset >= 10 else noise
        return [x * (noise / (1.0 - ratio)), mask]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Elementwise: channel c in, channel c out."""
        pass_through(node, graph, channels)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """No FLOPs; output memory in the reference convention."""
        return OpCost(paper_memory=True)


def channel_window(node: NodeInfo, graph: GraphAnalysis) -> tuple[int, int] | None:
    """Return (start, step) of a Slice on the channel axis, or None if it does not cut it.

    Unknown (computed) bounds give step 0, which the callers refuse.
    """
    rank = len(graph.shape(node.inputs[0]))
    starts, ends, axes, steps = _slice_arguments(node, graph)
    if starts is None or ends is None:
        return (0, 0)
    axes = axes if axes is not None else list(range(len(starts)))
    normalized = [int(a) % rank for a in axes]
    if 1 not in normalized:
        return None
    position = normalized.index(1)
    size = graph.shape(node.inputs[0])[1]
    start = int(starts[position])
    start = min(max(start + size if start < 0 else start, 0), size)
    step = int(steps[position]) if steps is not None else 1
    return start, step


def _slice_arguments(node: NodeInfo, graph: GraphAnalysis) -> tuple[list[int] | None, ...]:
    if graph.opset < 10:
        return (
            node.attribute("starts"),
            node.attribute("ends"),
            node.attribute("axes"),
            None,
        )
    values = []
    for slot in (1, 2, 3, 4):
        name = node.inputs[slot] if slot < len(node.inputs) else ""
        value = graph.constant(name) if name else None
        values.append([int(v) for v in value.reshape(-1)] if value is not None else None)
    return tuple(values)


def set_slice_bounds(
    node: NodeInfo, graph: GraphAnalysis, context: RewriteContext, start: int, end: int
) -> None:
    """Set the channel-axis start and end of a Slice (attributes or its own new inputs)."""
    rank = len(graph.shape(node.inputs[0]))
    starts, ends, axes, _ = _slice_arguments(node, graph)
    assert starts is not None and ends is not None
    axes = axes if axes is not None else list(range(len(starts)))
    position = [int(a) % rank for a in axes].index(1)
    starts, ends = list(starts), list(ends)
    starts[position], ends[position] = start, end
    if graph.opset < 10:
        context.set_attribute(node, "starts", starts)
        context.set_attribute(node, "ends", ends)
    else:
        context.replace_input(node, 1, np.array(starts, dtype=np.int64))
        context.replace_input(node, 2, np.array(ends, dtype=np.int64))
