"""Pad: spatial padding passes channels; constant padding of the channel axis adds free ones.

The 3D ResNets of video action recognition (Hara et al.'s shortcut type A) widen a residual
stream by zero-padding the identity along the channel axis: output channels
``[begin, begin + C_in)`` are the input's, the ``begin`` channels before and the ``end``
channels after are constants that no layer upstream computes. They join whatever they are
added to downstream (the stage's convolutions), and pruning one removes it everywhere, so
the pruned Pad pads by the number of padded channels kept. Kept channels stay in
ascending order, so the kept padding before the input's channels stays before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .base import OpRule, register
from .coupling import depends_on_shapes, pass_through
from .kernels.evaluation import ints, optional, required, scalar
from .kernels.slicing import pad_tensor

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


@dataclass(frozen=True)
class PadArguments:
    """A Pad node's padding, as ONNX gives it.

    Attributes:
        pads: [begin per axis..., end per axis...] (None if not statically known).
        axes: The padded axes, normalised (every axis if the node gives none).
        mode: constant, reflect, edge or wrap.
        computed: True if the pads are computed from shapes at run time.
        value: The constant it pads with (constant mode).
    """

    pads: list[int] | None
    axes: list[int]
    mode: str
    computed: bool
    value: float = 0.0

    def channel_pads(self) -> tuple[int, int]:
        """(begin, end) padding of the channel axis (0, 0 if it is not padded)."""
        if self.pads is None or 1 not in self.axes:
            return 0, 0
        position = self.axes.index(1)
        return self.pads[position], self.pads[position + len(self.axes)]


@register
class PadRule(OpRule):
    """Pad: spatial padding passes channels; constant channel padding adds free channels."""

    op_types = ("Pad",)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Constant padding with ``F.pad``; reflect, edge and wrap by index mapping."""
        x = required(inputs, 0)
        mode = str(node.attribute("mode", "constant"))
        if context.opset < 11:
            pads = [int(p) for p in node.attribute("pads", node.attribute("paddings", []))]
            value: float | int | bool = float(node.attribute("value", 0.0))
            axes = None
        else:
            pads = ints(required(inputs, 1))
            constant = optional(inputs, 2)
            value = scalar(constant) if constant is not None and constant.numel() else 0
            axes = ints(optional(inputs, 3)) or None
        return [pad_tensor(x, pads, axes, mode, value)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Spatial padding passes channels; constant channel padding ties the input's run.

        Output channels ``[begin, begin + C_in)`` are the input's; the padded ones are tied
        to nothing here. Padding the channel axis by an amount computed from shapes,
        cropping it, or filling it with copies of channels (reflect, edge, wrap) keeps them
        whole.
        """
        arguments = pad_arguments(node, graph)
        begin, end = arguments.channel_pads()
        if (begin, end) == (0, 0):
            pass_through(node, graph, channels)
            return
        problem = _channel_pad_problem(arguments, begin, end)
        if problem is not None:
            channels.block_node(node, problem)
            return
        x, y = node.inputs[0], node.outputs[0]
        x_space, y_space = channels.space(x, 1), channels.space(y, 1)
        channels.member(node, x_space, y_space)
        channels.tie(x_space, y_space, b_start=begin)
        fill = "zeros" if arguments.value == 0 else f"the constant {arguments.value:g}"
        for start, count in ((0, begin), (begin + x_space.size, end)):
            if count:
                channels.note(
                    y_space,
                    f"'{node.name}' pads channels {start}-{start + count - 1} of '{y}' with "
                    f"{fill}: no layer upstream computes them, they are pruned with the "
                    "layers they meet",
                    start=start,
                    count=count,
                )

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """The channel padding becomes the number of padded channels kept, before and after."""
        arguments = pad_arguments(node, graph)
        begin, _ = arguments.channel_pads()
        kept = context.kept_channels(node.outputs[0])
        if arguments.pads is None or kept is None or 1 not in arguments.axes:
            return
        inside = graph.shape(node.inputs[0])[1]
        pads = list(arguments.pads)
        position = arguments.axes.index(1)
        pads[position] = int(np.count_nonzero(kept < begin))
        pads[position + len(arguments.axes)] = int(np.count_nonzero(kept >= begin + inside))
        if graph.opset < 11:
            key = "pads" if "pads" in node.attributes else "paddings"
            context.set_attribute(node, key, pads)
        else:
            context.replace_input(node, 1, np.array(pads, dtype=np.int64))


def pad_arguments(node: NodeInfo, graph: GraphAnalysis) -> PadArguments:
    """Read a Pad node's pads, axes and mode (attributes before opset 11, inputs after)."""
    rank = len(graph.shape(node.inputs[0]))
    mode = str(node.attribute("mode", "constant"))
    if graph.opset < 11:
        pads = node.attribute("pads", node.attribute("paddings"))
        listed = [int(p) for p in pads] if pads is not None else None
        value = float(node.attribute("value", 0.0))
        return PadArguments(listed, list(range(rank)), mode, computed=False, value=value)
    pads_name, fill_name, axes_name = (
        node.inputs[slot] if len(node.inputs) > slot else "" for slot in (1, 2, 3)
    )
    pads = graph.constant(pads_name) if pads_name else None
    fill = graph.constant(fill_name) if fill_name else None
    axes = graph.constant(axes_name) if axes_name else None
    return PadArguments(
        pads=[int(p) for p in pads.reshape(-1)] if pads is not None else None,
        axes=[int(a) % rank for a in axes.reshape(-1)] if axes is not None else list(range(rank)),
        mode=mode,
        computed=bool(pads_name) and depends_on_shapes(graph, pads_name),
        value=float(fill.reshape(-1)[0]) if fill is not None and fill.size else 0.0,
    )


def _channel_pad_problem(arguments: PadArguments, begin: int, end: int) -> str | None:
    """Why a Pad of the channel axis keeps its channels whole, or None if it need not."""
    if arguments.computed or arguments.pads is None:
        return "Pad of the channel axis by amounts computed from shapes"
    if begin < 0 or end < 0:
        return "Pad crops the channel axis"
    if arguments.mode != "constant":
        return f"Pad of the channel axis in mode '{arguments.mode}' copies channels"
    return None
