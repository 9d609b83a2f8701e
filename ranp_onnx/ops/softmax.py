"""Softmax, LogSoftmax and the Reduce family."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from .base import Autocast, AutogradMemory, OpCost, OpRule, TrainingContext, numel, register
from .coupling import pass_through
from .kernels.evaluation import axes_operand, normalize_axis, required

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext

#: A torch reduction: (input, sorted axes, keepdims) -> output.
Reduction = Callable[["torch.Tensor", list[int], bool], "torch.Tensor"]


@register
class SoftmaxRule(OpRule):
    """Softmax / LogSoftmax: exp, sum and divide, 3 FLOPs per element.

    The reference counter charges batch x (3 C - 1) with C the size of the softmax axis,
    ignoring every other axis (so a per-voxel softmax costs almost nothing there).
    """

    op_types = ("Softmax", "LogSoftmax")
    autocast: ClassVar[Mapping[str, Autocast]] = {"cuda": "float32"}

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The backward of ``softmax`` and ``log_softmax`` reads the output."""
        return AutogradMemory(saved_outputs=(0,))

    def logits_input(self, node: NodeInfo, graph: GraphAnalysis) -> str | None:
        """A softmax over the channel axis turns its input logits into probabilities."""
        rank = len(graph.shape(node.inputs[0]))
        default = -1 if graph.opset >= 13 else 1
        return (
            node.inputs[0]
            if int(node.attribute("axis", default)) % rank == min(1, rank - 1)
            else None
        )

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """A softmax over the channel axis mixes channels; over other axes it does not."""
        rank = len(graph.shape(node.inputs[0]))
        default = -1 if graph.opset >= 13 else 1
        axis = int(node.attribute("axis", default)) % rank
        mixes = axis <= 1 if graph.opset < 13 else axis == 1
        if mixes:
            channels.block_node(node, f"{node.op_type} over the channel axis")
            return
        pass_through(node, graph, channels)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.softmax`` / ``F.log_softmax``; before opset 13 over the flattened axes."""
        import torch.nn.functional as F

        x = required(inputs, 0)
        function = F.log_softmax if node.op_type == "LogSoftmax" else F.softmax
        old = context.opset < 13
        axis = normalize_axis(int(node.attribute("axis", 1 if old else -1)), x.dim())
        if not old or axis == x.dim() - 1:
            return [function(x, dim=axis)]
        rows = int(numel(tuple(x.shape[:axis])))
        return [function(x.reshape(rows, -1), dim=1).reshape(x.shape)]

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Three FLOPs per element."""
        shape = graph.shape(node.inputs[0])
        axis = int(node.attribute("axis", -1 if graph.opset >= 13 else 1)) % len(shape)
        return OpCost(
            flops=3 * numel(shape),
            paper_flops=shape[0] * (3 * shape[axis] - 1),
            paper_memory=True,
        )


@register
class ReduceRule(OpRule):
    """Reductions: one FLOP per input element."""

    op_types = (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
    )  # fmt: skip

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Sum and mean keep nothing; the others keep their input and output."""
        if node.op_type in ("ReduceMean", "ReduceSum", "ArgMax", "ArgMin"):
            return AutogradMemory()
        return AutogradMemory(saved_inputs=(0,), saved_outputs=(0,))

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Reducing over spatial axes passes channels; over batch or channels it does not."""
        rank = len(graph.shape(node.inputs[0]))
        axes = reduced_axes(node, graph, rank)
        keepdims = bool(node.attribute("keepdims", 1))
        if 1 in axes or (0 in axes and not keepdims):
            channels.block_node(node, f"{node.op_type} over the batch or channel axis")
            return
        pass_through(node, graph, channels)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per input element."""
        return OpCost(flops=numel(graph.shape(node.inputs[0])))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The torch reduction over the node's axes (an input from opset 13 / 18)."""
        x = required(inputs, 0)
        if node.op_type in ("ArgMax", "ArgMin"):
            return [_arg_extreme(node, x)]
        switch = 13 if node.op_type == "ReduceSum" else 18
        axes = axes_operand(node, inputs, 1, switch, context.opset)
        if not axes:
            if node.attribute("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.dim()))
        dims = sorted({normalize_axis(a, x.dim()) for a in axes})
        keepdims = bool(node.attribute("keepdims", 1))
        return [_reductions()[node.op_type](x, dims, keepdims)]


def _arg_extreme(node: NodeInfo, x: torch.Tensor) -> torch.Tensor:
    import torch

    function = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    axis = normalize_axis(int(node.attribute("axis", 0)), x.dim())
    keepdims = bool(node.attribute("keepdims", 1))
    if not node.attribute("select_last_index", 0):
        return function(x, dim=axis, keepdim=keepdims)
    return x.shape[axis] - 1 - function(x.flip(axis), dim=axis, keepdim=keepdims)


@functools.cache
def _reductions() -> dict[str, Reduction]:
    import torch

    def product(x: torch.Tensor, dims: list[int], keepdims: bool) -> torch.Tensor:
        for dim in reversed(dims):
            x = x.prod(dim, keepdim=True)
        return x if keepdims else x.squeeze(tuple(dims))

    return {
        "ReduceMean": lambda x, dims, keep: x.mean(dims, keepdim=keep),
        "ReduceSum": lambda x, dims, keep: x.sum(dims, keepdim=keep),
        "ReduceMax": lambda x, dims, keep: torch.amax(x, dims, keepdim=keep),
        "ReduceMin": lambda x, dims, keep: torch.amin(x, dims, keepdim=keep),
        "ReduceProd": product,
        "ReduceL1": lambda x, dims, keep: x.abs().sum(dims, keepdim=keep),
        "ReduceL2": lambda x, dims, keep: x.square().sum(dims, keepdim=keep).sqrt(),
        "ReduceLogSumExp": lambda x, dims, keep: torch.logsumexp(x, dims, keepdim=keep),
        "ReduceSumSquare": lambda x, dims, keep: x.square().sum(dims, keepdim=keep),
    }


def reduced_axes(node: NodeInfo, graph: GraphAnalysis, rank: int) -> set[int]:
    """Return the axes a Reduce or Arg op reduces over (normalised)."""
    if node.op_type in ("ArgMax", "ArgMin"):
        return {int(node.attribute("axis", 0)) % rank}
    axes = node.attribute("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        value = graph.constant(node.inputs[1])
        axes = value.reshape(-1).tolist() if value is not None else list(range(rank))
    if not axes:
        return set() if node.attribute("noop_with_empty_axes", 0) else set(range(rank))
    return {int(a) % rank for a in axes}
