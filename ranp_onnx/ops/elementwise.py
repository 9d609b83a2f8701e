"""Elementwise binary and variadic arithmetic with numpy broadcasting."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from .base import (
    Autocast,
    AutogradMemory,
    OpCost,
    OpRule,
    TrainingContext,
    numel,
    register,
    rule_for,
)
from .coupling import broadcast

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext

#: A torch implementation of a binary op, applied left to right over variadic operands.
BinaryFunction = Callable[["torch.Tensor", "torch.Tensor", "NodeInfo"], "torch.Tensor"]


@register
class ArithmeticRule(OpRule):
    """Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean: (inputs - 1) FLOPs per output element.

    The reference counter counts none of them (its models call them functionally).
    """

    op_types = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod")
    autocast: ClassVar[Mapping[str, Autocast]] = {"cpu": "promote", "cuda": "promote"}

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Ties every operand that carries the channel axis (a residual Add ties its inputs)."""
        broadcast(node, graph, channels)

    def parameter_slots(self, node: NodeInfo, graph: GraphAnalysis) -> tuple[int, ...]:
        """A bias added to a layer's output (Linear exported as MatMul + Add) is a parameter.

        That is an Add of one static operand with one value per output channel of the layer
        that produces the other operand.
        """
        if node.op_type != "Add" or len(node.inputs) != 2:
            return ()
        static = [i for i, name in enumerate(node.inputs) if graph.tensors[name].static]
        if len(static) != 1:
            return ()
        producer = graph.producer(node.inputs[1 - static[0]])
        rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
        if producer is None or rule is None:
            return ()
        if not any(
            slot < len(producer.inputs)
            and producer.inputs[slot] in graph.tensors
            and graph.tensors[producer.inputs[slot]].static
            for slot in rule.parameter_slots(producer, graph)
        ):
            return ()
        geometry = rule.geometry(producer, graph)
        bias = graph.tensors[node.inputs[static[0]]]
        if geometry is None or geometry.channels_out is None or bias.shape is None:
            return ()
        return (static[0],) if bias.numel == geometry.channels_out else ()

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Add passes its gradient on; a product keeps the operand the other's gradient needs.

        An operand broadcast to the output gets a gradient summed down to its shape; for a
        product the full-size product is made first.
        """
        operands = [name for name in node.inputs if name]
        output = graph.shape(node.outputs[0])
        full = tuple(i for i, name in enumerate(operands) if graph.shape(name) == output)
        if node.op_type in ("Add", "Sum"):
            return AutogradMemory(gradient_views=full)
        if node.op_type == "Sub":
            return AutogradMemory(gradient_views=tuple(i for i in full if i == 0))
        if node.op_type in ("Mean", "Mod") or len(operands) != 2:
            return AutogradMemory()
        needs = [context.needs_grad(name) for name in operands]
        saved = tuple(i for i in (0, 1) if needs[1 - i] or node.op_type != "Mul")
        broadcast = any(needs[i] and i not in full for i in (0, 1))
        scratch = context.nbytes(graph, node.outputs[0]) if broadcast else 0
        return AutogradMemory(saved_inputs=saved, backward_scratch=scratch)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per output element and extra operand."""
        operands = len([name for name in node.inputs if name])
        return OpCost(flops=max(operands - 1, 1) * numel(graph.shape(node.outputs[0])))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Fold the operands left to right with the op's broadcasting torch function."""
        operands = [tensor for tensor in inputs if tensor is not None]
        function = _binary()["Add" if node.op_type in ("Sum", "Mean") else node.op_type]
        result = operands[0]
        for operand in operands[1:]:
            result = function(result, operand, node)
        if node.op_type == "Mean":
            result = result / len(operands)
        return [result]


@register
class ComparisonRule(OpRule):
    """Comparisons and selection: one FLOP per output element."""

    op_types = (
        "Equal",
        "Greater",
        "Less",
        "GreaterOrEqual",
        "LessOrEqual",
        "Where",
        "And",
        "Or",
        "Xor",
    )

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Ties every operand that carries the channel axis (a residual Add ties its inputs)."""
        broadcast(node, graph, channels)

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """``torch.where`` keeps its condition; comparisons have no gradient."""
        return AutogradMemory(saved_inputs=(0,) if node.op_type == "Where" else ())

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """One FLOP per output element."""
        return OpCost(flops=numel(graph.shape(node.outputs[0])))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """The torch comparison, logical op or ``torch.where``."""
        import torch

        operands = [tensor for tensor in inputs if tensor is not None]
        if node.op_type == "Where":
            condition, x, y = operands
            return [torch.where(condition.to(torch.bool), x, y)]
        return [_binary()[node.op_type](operands[0], operands[1], node)]


@functools.cache
def _binary() -> dict[str, BinaryFunction]:
    import torch

    def divide(a: torch.Tensor, b: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return a / b
        return torch.div(a, b, rounding_mode="trunc")

    def power(a: torch.Tensor, b: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        result = torch.pow(a, b)
        return result if result.dtype == a.dtype else result.to(a.dtype)

    def modulo(a: torch.Tensor, b: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        return torch.fmod(a, b) if node.attribute("fmod", 0) else torch.remainder(a, b)

    functions: dict[str, BinaryFunction] = {"Div": divide, "Pow": power, "Mod": modulo}
    names: dict[str, Callable[..., torch.Tensor]] = {
        "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Max": torch.maximum,
        "Min": torch.minimum, "Equal": torch.eq, "Greater": torch.gt, "Less": torch.lt,
        "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le, "And": torch.logical_and,
        "Or": torch.logical_or, "Xor": torch.logical_xor,
    }  # fmt: skip
    for op_type, function in names.items():
        functions[op_type] = _ignoring_node(function)
    return functions


def _ignoring_node(
    function: Callable[..., torch.Tensor],
) -> BinaryFunction:
    def apply(a: torch.Tensor, b: torch.Tensor, node: NodeInfo) -> torch.Tensor:
        return function(a, b)

    return apply
