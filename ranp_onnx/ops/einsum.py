"""Einsum: Einstein summation, as transformer blocks write attention (``blxd,blyd->blxy``).

The equation is parsed once per question into one label per axis (an ellipsis expands to
labels of its own, aligned from the right as numpy broadcasts them). Costs follow torch's
lowering of ``torch.einsum`` without opt_einsum: repeated labels become diagonals, labels
that only one operand still needs are summed within it, then the operands are contracted
pairwise from left to right, each pair by one batched matrix product over the labels both
hold (or by an elementwise product where they share no summed label). torch's flop
counter (``torch.utils.flop_counter.FlopCounterMode``) counts exactly those products.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputShapeError, UnsupportedModelError
from .base import AutogradMemory, OpCost, OpRule, TrainingContext, numel, register
from .coupling import CHANNEL_AXIS

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext

ELLIPSIS = "..."


@dataclass(frozen=True)
class EinsumEquation:
    """An einsum equation with one label per axis of every operand and of the output.

    Attributes:
        text: The equation as the node states it.
        operands: The labels of each operand's axes; an ellipsis axis is ``".k"``, with k
            counted in the widest ellipsis (so broadcast axes share a label).
        output: The labels of the output's axes (the implicit output, without ``->``, is
            the ellipsis followed by the labels used once, in alphabetical order).
    """

    text: str
    operands: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]

    def sizes(self, shapes: Sequence[tuple[int, ...]]) -> dict[str, int]:
        """Return each label's size; a label of size 1 in one operand broadcasts.

        Raises:
            ValueError: The shapes disagree on a label.
        """
        sizes: dict[str, int] = {}
        for labels, shape in zip(self.operands, shapes, strict=True):
            for label, size in zip(labels, shape, strict=True):
                known = sizes.get(label, 1)
                if size != 1 and known not in (1, size):
                    raise ValueError(f"label {label!r} has sizes {known} and {size}")
                sizes[label] = size if size != 1 else known
        return sizes


def parse_equation(text: str, ranks: Sequence[int]) -> EinsumEquation:
    """Parse ``text`` for operands of the given ranks.

    Raises:
        ValueError: The equation is malformed or does not fit the ranks.
    """
    lhs, arrow, rhs = text.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"{len(terms)} operand terms for {len(ranks)} inputs")
    widest = 0
    for term, rank in zip(terms, ranks):
        letters = _letters(term)
        if ELLIPSIS in term:
            widest = max(widest, rank - len(letters))
        if rank < len(letters) or (ELLIPSIS not in term and rank != len(letters)):
            raise ValueError(f"term {term!r} does not fit an input of rank {rank}")
    operands = tuple(
        _expand(term, rank - len(_letters(term)), widest) for term, rank in zip(terms, ranks)
    )
    if arrow:
        output = _expand(rhs, widest, widest)
        used = {label for labels in operands for label in labels}
        if len(set(output)) != len(output) or not set(output) <= used:
            raise ValueError(f"output {rhs!r} repeats a label or names one no input has")
    else:
        counts = Counter(_letters(lhs.replace(",", "")))
        once = sorted(label for label, count in counts.items() if count == 1)
        output = (*_expand(ELLIPSIS, widest, widest), *once)
    return EinsumEquation(text=text, operands=operands, output=output)


def _letters(term: str) -> str:
    letters = term.replace(ELLIPSIS, "", 1)
    if not all(c.isascii() and c.isalpha() for c in letters):
        raise ValueError(f"term {term!r} has a character other than a letter or one '...'")
    return letters


def _expand(term: str, covered: int, widest: int) -> tuple[str, ...]:
    """The term's labels with its ellipsis (covering ``covered`` axes) spelled out."""
    before, found, after = term.partition(ELLIPSIS)
    if not found:
        return tuple(term)
    return (*before, *(f".{k}" for k in range(widest - covered, widest)), *after)


def einsum_cost(equation: EinsumEquation, shapes: Sequence[tuple[int, ...]]) -> OpCost:
    """Count ``torch.einsum``'s work: MACs of its matrix products, FLOPs of everything.

    MACs are those of the batched matrix products torch lowers the einsum to (half of
    FlopCounterMode's count). FLOPs are 2 per MAC, plus one per element of an elementwise
    product (a pair with no label to sum) and one per element read by a sum within one
    operand (of labels that no other operand and not the output holds), as Mul and
    ReduceSum count.

    Raises:
        ValueError: The shapes disagree on a label.
    """
    sizes = equation.sizes(shapes)
    summed = [label for label in sizes if label not in equation.output]
    pending = [
        dict(zip(labels, shape, strict=True))
        for labels, shape in zip(equation.operands, shapes, strict=True)
    ]
    holders = {label: sum(held.get(label, 1) != 1 for held in pending) for label in summed}
    if len(pending) == 1:
        reduced = numel(tuple(pending[0].get(label, 1) for label in summed))
        return OpCost(flops=numel(tuple(pending[0].values())) if reduced > 1 else 0)
    macs = flops = 0
    while len(pending) > 1:
        pair = (pending.pop(0), pending.pop(0))
        shared, alone = _contractions(pair, summed, holders)
        for held, labels in zip(pair, alone):
            if labels:
                flops += numel(tuple(held.values()))
                held.update(dict.fromkeys(labels, 1))
        left, right = pair
        product = {label: max(left.get(label, 1), right.get(label, 1)) for label in {*left, *right}}
        if shared:
            macs += numel(tuple(product.values()))
            product.update(dict.fromkeys(shared, 1))
        else:
            flops += numel(tuple(product.values()))
        pending.insert(0, product)
    return OpCost(macs=macs, flops=2 * macs + flops)


def _contractions(
    pair: tuple[dict[str, int], dict[str, int]], summed: list[str], holders: dict[str, int]
) -> tuple[list[str], tuple[list[str], list[str]]]:
    """The labels torch sums while contracting ``pair``: by the product, and within each side.

    A label is summed by the product once no later operand holds it, and within one side
    if no other operand holds it; ``holders`` (operands with the label, of size over 1) is
    updated.
    """
    shared: list[str] = []
    alone: tuple[list[str], list[str]] = ([], [])
    for label in summed:
        held = [side.get(label, 1) != 1 for side in pair]
        if all(held):
            holders[label] -= 1
            if holders[label] == 1:
                shared.append(label)
                holders[label] = 0
        elif holders[label] == 1 and any(held):
            alone[held.index(True)].append(label)
            holders[label] = 0
    return shared, alone


@register
class EinsumRule(OpRule):
    """Einsum: torch's batched matrix products; channels tied where axis 1 is carried."""

    op_types = ("Einsum",)

    def parameter_slots(self, node: NodeInfo, graph: GraphAnalysis) -> tuple[int, ...]:
        """Every operand: an initializer operand is a parameter, as MatMul's are."""
        return tuple(range(len(node.inputs)))

    def equation(self, node: NodeInfo, graph: GraphAnalysis) -> EinsumEquation:
        """The node's equation parsed for its operands' ranks.

        Raises:
            UnsupportedModelError: The equation is malformed.
        """
        text = str(node.attribute("equation", ""))
        try:
            return parse_equation(text, [len(graph.shape(name)) for name in node.inputs])
        except ValueError as error:
            raise UnsupportedModelError(
                f"node '{node.name}': Einsum equation {text!r}: {error}"
            ) from None

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """The operands agree on every label's size, and the output has those sizes.

        ONNX shape inference takes a broadcast label's size from the first operand (1 in
        ``bij,bjk->bik`` on [1, 3, 4] and [5, 4, 6]) where onnxruntime broadcasts it: such
        a graph is refused rather than analysed at the wrong shape.
        """
        equation = self.equation(node, graph)
        try:
            sizes = equation.sizes([graph.shape(name) for name in node.inputs])
        except ValueError as error:
            raise InputShapeError(f"node '{node.name}' (Einsum): {error}") from None
        expected = tuple(sizes[label] for label in equation.output)
        inferred = graph.shape(node.outputs[0])
        if inferred != expected:
            raise UnsupportedModelError(
                f"node '{node.name}': Einsum '{equation.text}' broadcasts a label, which ONNX "
                f"shape inference gets wrong (it infers {inferred}, the equation gives {expected})"
            )

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """MACs of torch's matrix products; FLOPs add elementwise products and inner sums.

        The reference counter counts nothing (torch.einsum is a function, not a module).
        """
        shapes = [graph.shape(name) for name in node.inputs]
        return einsum_cost(self.equation(node, graph), shapes)

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Tie each operand whose channel axis carries the output's channel label.

        An activation's channel axis that is summed, moved to another output axis or
        repeated (a diagonal) keeps its channels; so do the output's if its channel label
        comes from another axis of an activation. Static operands holding the output's
        channel label are sliced with it; an operand of size 1 there broadcasts.
        """
        equation = self.equation(node, graph)
        if len(equation.output) <= CHANNEL_AXIS:
            channels.block_node(node, f"Einsum '{equation.text}' output has no channel axis")
            return
        output = node.outputs[0]
        out_space = channels.space(output, CHANNEL_AXIS)
        channels.member(node, out_space)
        label = equation.output[CHANNEL_AXIS]
        for position, name in enumerate(node.inputs):
            shape, labels = graph.shape(name), equation.operands[position]
            static = graph.tensors[name].static
            axes = [axis for axis, held in enumerate(labels) if held == label]
            broadcast = any(shape[axis] != out_space.size for axis in axes)
            if broadcast:
                axes = []  # size 1 there: it broadcasts along the output's channels
            if len(axes) == 1 and (static or axes[0] == CHANNEL_AXIS):
                operand = channels.space(name, axes[0])
                channels.member(node, operand)
                channels.tie(operand, out_space)
                continue
            where = f"(node '{node.name}')"
            carried = broadcast and labels[CHANNEL_AXIS : CHANNEL_AXIS + 1] == (label,)
            if not static and len(labels) > CHANNEL_AXIS and not carried:
                problem = _input_channel_problem(equation, position)
                channels.block(name, f"Einsum '{equation.text}' {problem} {where}")
            if axes:
                problem = _output_channel_problem(position, axes)
                channels.block(output, f"Einsum '{equation.text}' {problem} {where}")

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """Each of two operands is kept if the other one's gradient is needed; one, nothing.

        As autograd's hooks show for ``bhid,bhjd->bhij`` and ``bhij,bhjd->bhid``. Where
        torch first permutes an operand into a contiguous copy (``ncdhw,kc->nkdhw``), the
        copy is kept instead of the operand: counted as the operand, once.
        """
        if len(node.inputs) != 2:
            return AutogradMemory()
        a, b = node.inputs
        saved = tuple(position for position, other in ((0, b), (1, a)) if context.needs_grad(other))
        return AutogradMemory(saved_inputs=saved)

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``torch.einsum`` on the node's equation."""
        import torch

        operands = [tensor for tensor in inputs if tensor is not None]
        return [torch.einsum(str(node.attribute("equation", "")), *operands)]


def _input_channel_problem(equation: EinsumEquation, position: int) -> str:
    """What the equation does to the channel axis of an operand it does not tie."""
    channel = equation.operands[position][CHANNEL_AXIS]
    if equation.operands[position].count(channel) > 1:
        return f"takes a diagonal over input {position}'s channel axis"
    if channel not in equation.output:
        return f"sums over input {position}'s channel axis"
    return f"moves input {position}'s channel axis to output axis {equation.output.index(channel)}"


def _output_channel_problem(position: int, axes: list[int]) -> str:
    """Why the output's channel axis cannot follow operand ``position``."""
    if len(axes) > 1:
        return f"takes the output's channels from a diagonal of input {position}"
    return f"moves axis {axes[0]} of input {position} to the output's channel axis"
