"""Channel-coupling patterns shared by many op rules.

The op rules call these from their ``couple`` methods: an activation passes channels
straight through, a broadcasting binary op ties every operand that carries the channel
axis, a per-channel parameter is sliced with the channels it scales.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph, Space

#: The channel axis of an activation: axis 1 of [N, C, ...] and of [N, F].
CHANNEL_AXIS = 1


def activation_space(graph: GraphAnalysis, channels: ChannelGraph, name: str) -> Space | None:
    """Return the channel space of an activation, or None if it has no channel axis."""
    shape = graph.shape(name)
    if len(shape) <= CHANNEL_AXIS:
        return None
    return channels.space(name, CHANNEL_AXIS)


def pass_through(
    node: NodeInfo,
    graph: GraphAnalysis,
    channels: ChannelGraph,
    inputs: tuple[int, ...] = (0,),
) -> None:
    """Tie channel c of the given inputs to channel c of every output.

    Blocks the node if a tensor has no channel axis or the channel counts differ.
    """
    names = [node.inputs[i] for i in inputs if i < len(node.inputs) and node.inputs[i]]
    names += [name for name in node.outputs if name and name in graph.tensors]
    spaces = [activation_space(graph, channels, name) for name in names]
    if any(space is None for space in spaces) or len({s.size for s in spaces if s}) > 1:
        channels.block_node(node, f"{node.op_type} changes the channel axis")
        return
    first = spaces[0]
    assert first is not None
    channels.member(node, *(s for s in spaces if s is not None))
    for space in spaces[1:]:
        assert space is not None
        channels.tie(first, space)


def broadcast_axis(operand: tuple[int, ...], result: tuple[int, ...], axis: int) -> int | None:
    """Return the operand axis that numpy broadcasting aligns with ``result``'s ``axis``.

    None if the operand has no such axis or broadcasts along it (size 1 against more).
    """
    aligned = axis - (len(result) - len(operand))
    if aligned < 0 or operand[aligned] != result[axis]:
        return None
    return aligned


def broadcast(node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
    """Tie the channel axis of every operand that carries it to the output's.

    Static operands (a per-channel constant) are tied too, so the rewriter slices them;
    operands that broadcast along the channel axis are left alone.
    """
    output = node.outputs[0]
    result = graph.shape(output)
    if len(result) <= CHANNEL_AXIS:
        channels.block_node(node, f"{node.op_type} output has no channel axis")
        return
    out_space = channels.space(output, CHANNEL_AXIS)
    channels.member(node, out_space)
    for name in node.inputs:
        if not name:
            continue
        axis = broadcast_axis(graph.shape(name), result, CHANNEL_AXIS)
        if axis is None:
            continue
        operand = channels.space(name, axis)
        channels.member(node, operand)
        channels.tie(operand, out_space)


def per_channel(
    node: NodeInfo,
    graph: GraphAnalysis,
    channels: ChannelGraph,
    slots: tuple[int, ...],
    with_space: Space,
) -> None:
    """Tie axis 0 of the 1-D inputs at ``slots`` (scales, biases, statistics) to ``with_space``."""
    for slot in slots:
        if slot >= len(node.inputs) or not node.inputs[slot]:
            continue
        name = node.inputs[slot]
        shape = graph.shape(name)
        if len(shape) == 1 and shape[0] == with_space.size:
            channels.tie(channels.space(name, 0), with_space)
        elif shape and max(shape) > 1:
            channels.block_node(node, f"{node.op_type} input {slot} is not per-channel")


def depends_on_shapes(graph: GraphAnalysis, name: str) -> bool:
    """Return True if static tensor ``name`` is computed from the shape of an activation.

    Such a tensor adapts by itself when channels are pruned (``x.view(x.size(0), -1)``);
    a stored constant (``[1, 2048]``) has to be patched. The shape of a constant is a
    constant too (torch's exporter measures the length of ``F.pad``'s list that way).
    """
    return bool(shape_sources(graph, name))


def shape_sources(graph: GraphAnalysis, name: str) -> list[str]:
    """The activations whose shapes static tensor ``name`` is computed from (Shape, Size).

    Walks the static sub-graph above ``name`` only: a Shape node's input is a source when
    it is an activation, and its own ancestors do not matter.
    """
    from .base import rule_for

    pending, seen, sources = [name], set(), set()
    while pending:
        tensor = pending.pop()
        info = graph.tensors.get(tensor)
        if not tensor or tensor in seen or info is None or not info.static:
            continue
        seen.add(tensor)
        producer = graph.producer(tensor)
        if producer is None:
            continue
        rule = rule_for(producer.op_type, producer.domain)
        if rule is not None and rule.reads_shape:
            source = graph.tensors.get(producer.inputs[0]) if producer.inputs else None
            if source is not None and not source.static:
                sources.add(source.name)
            continue
        pending.extend(producer.inputs)
    return sorted(sources)
