"""Aliases of initializers: one owner for the ``Identity`` copies exporters write.

The torchscript exporter stores tensors of equal value once and feeds every other
parameter with that value through an op whose rule says ``parameter_view = "alias"``
(``Identity``), named after the torch parameter. Such an output stands for a parameter of
its own: the evaluator gives it its own tensor, ``to_onnx`` writes it back, costs count it,
and :func:`separate_aliases` turns it into an initializer of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import onnx

from ..ir.graph import NodeInfo, node_infos
from .base import rule_for


def initializer_aliases(nodes: Iterable[NodeInfo], initializers: Collection[str]) -> dict[str, str]:
    """Map the output of every alias of an initializer (or of such an alias) to its source.

    Args:
        nodes: The graph's nodes in topological order.
        initializers: The names of its initializers.
    """
    aliases: dict[str, str] = {}
    for node in nodes:
        rule = rule_for(node.op_type, node.domain)
        if rule is None or rule.parameter_view != "alias" or not node.outputs[0]:
            continue
        source = node.inputs[0]
        if source in initializers or source in aliases:
            aliases[node.outputs[0]] = aliases.get(source, source)
    return aliases


def separate_aliases(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give every aliased parameter its own initializer again, in place.

    Each alias of an initializer becomes a copy of the initializer under the alias's name
    (the torch parameter name), and the aliasing node goes; an alias that is a graph
    output stays as it is.

    Returns:
        The same model.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    aliases = initializer_aliases(node_infos(graph), initializers)
    kept = []
    for node in graph.node:
        name = node.output[0] if node.output else ""
        if name in aliases and name not in outputs:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[aliases[name]])
            copy.name = name
            graph.initializer.append(copy)
        else:
            kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return proto
