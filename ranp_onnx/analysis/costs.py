"""Stage 3, costs: parameters, MACs, FLOPs and activation memory, per node and in total.

Two conventions:

- ``standard``: exact MACs; FLOPs count every multiply, add, compare and transcendental
  (a MAC is 2 FLOPs); activation memory is the bytes of every node output that depends on
  the inputs; parameters are the learnable initializers at their stored size.
- ``ranp-paper``: the RANP reference counter (shared reference, section 3), which
  reproduces the paper's tables: a MAC is 1 FLOP, batch norm costs 4 per element, and
  memory sums the output elements of layer modules only (conv, norm, activation, pooling,
  softmax, dropout, linear) at 4 bytes each. Params are counted the same way in both.

Peak memory is the same in both: the largest sum of live activations along the
topological order, where a tensor lives from its producer to its last consumer (graph
outputs to the end); inputs and initializers are excluded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..ir.graph import FLOAT_TYPES, GraphAnalysis, NodeInfo
from ..ir.units import MB
from ..ops import LayerGeometry, OpCost, OpRule, rule_for

Convention = Literal["standard", "ranp-paper"]
CONVENTIONS: tuple[Convention, ...] = ("standard", "ranp-paper")
#: Bytes per element in the reference counter's memory and parameter figures.
PAPER_BYTES = 4


@dataclass(frozen=True)
class LayerCost:
    """The cost of one node.

    Attributes:
        name: Node name.
        op_type: Operator.
        input_shapes: Shapes of its data inputs (None where absent or unknown).
        output_shapes: Shapes of its outputs.
        geometry: Channels, kernel, strides and groups where the op has them.
        params: Learnable parameters first read by this node.
        macs: Exact multiply-accumulates.
        flops: FLOPs in the report's convention.
        memory_bytes: Activation memory of its outputs in the report's convention.
        counted: False if ranp-onnx has no rule for the op (its FLOPs are unknown).
    """

    name: str
    op_type: str
    input_shapes: tuple[tuple[int, ...] | None, ...]
    output_shapes: tuple[tuple[int, ...] | None, ...]
    geometry: LayerGeometry | None
    params: int
    macs: int
    flops: int
    memory_bytes: int
    counted: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        geometry = self.geometry or LayerGeometry()
        return {
            "name": self.name,
            "op_type": self.op_type,
            "input_shapes": [list(s) if s is not None else None for s in self.input_shapes],
            "output_shapes": [list(s) if s is not None else None for s in self.output_shapes],
            "channels_in": geometry.channels_in,
            "channels_out": geometry.channels_out,
            "kernel": list(geometry.kernel) if geometry.kernel else None,
            "strides": list(geometry.strides) if geometry.strides else None,
            "groups": geometry.groups,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "memory_mb": self.memory_bytes / MB,
            "counted": self.counted,
        }


@dataclass(frozen=True)
class CostTotals:
    """Whole-model figures.

    Attributes:
        params: Learnable parameters.
        params_mb: Their size in MB (2^20 bytes).
        macs: Exact multiply-accumulates.
        flops: FLOPs in the convention.
        gflops: ``flops / 1e9``.
        memory_mb: Activation memory in the convention, MB.
        peak_memory_mb: Peak live activation memory, MB.
    """

    params: int
    params_mb: float
    macs: int
    flops: int
    gflops: float
    memory_mb: float
    peak_memory_mb: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "params": self.params,
            "params_mb": self.params_mb,
            "macs": self.macs,
            "flops": self.flops,
            "gflops": self.gflops,
            "memory_mb": self.memory_mb,
            "peak_memory_mb": self.peak_memory_mb,
        }


@dataclass(frozen=True)
class CostReport:
    """Per-node and total costs of a model at given input shapes.

    Attributes:
        model: The model's name.
        convention: "standard" or "ranp-paper".
        input_shapes: The input shapes counted at.
        layers: One entry per node that depends on the inputs, in topological order.
        totals: Whole-model figures.
        uncounted: Op types without a cost rule and how many nodes have them.
    """

    model: str
    convention: Convention
    input_shapes: Mapping[str, tuple[int, ...]]
    layers: tuple[LayerCost, ...]
    totals: CostTotals
    uncounted: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """The ``report --json`` document."""
        return {
            "model": self.model,
            "convention": self.convention,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "totals": self.totals.to_json(),
            "uncounted_ops": dict(self.uncounted),
            "layers": [layer.to_json() for layer in self.layers],
        }


def count_costs(graph: GraphAnalysis, convention: Convention = "standard") -> CostReport:
    """Count what the analysed model costs.

    Args:
        graph: The analysed model.
        convention: "standard" (exact, default) or "ranp-paper" (the reference counter).

    Returns:
        The report.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {CONVENTIONS}")
    paper = convention == "ranp-paper"
    seen_parameters: set[str] = set()
    layers = []
    uncounted: Counter[str] = Counter()
    for node in graph.nodes:
        if all(graph.tensors[name].static for name in node.outputs if name in graph.tensors):
            continue
        rule = rule_for(node.op_type, node.domain)
        if rule is None:
            uncounted[node.op_type] += 1
            cost, geometry = OpCost(), None
        else:
            cost, geometry = rule.cost(node, graph), rule.geometry(node, graph)
        params = _new_parameters(node, rule, graph, seen_parameters) if rule else 0
        layers.append(
            LayerCost(
                name=node.name,
                op_type=node.op_type,
                input_shapes=tuple(_shape_or_none(graph, n) for n in node.inputs),
                output_shapes=tuple(_shape_or_none(graph, n) for n in node.outputs),
                geometry=geometry,
                params=params,
                macs=cost.macs,
                flops=cost.paper_flops if paper else cost.flops,
                memory_bytes=_memory(node, cost, graph, paper),
                counted=rule is not None,
            )
        )
    params = sum(layer.params for layer in layers)
    param_bytes = params * PAPER_BYTES if paper else _parameter_bytes(graph, seen_parameters)
    flops = sum(layer.flops for layer in layers)
    totals = CostTotals(
        params=params,
        params_mb=param_bytes / MB,
        macs=sum(layer.macs for layer in layers),
        flops=flops,
        gflops=flops / 1e9,
        memory_mb=sum(layer.memory_bytes for layer in layers) / MB,
        peak_memory_mb=peak_live_bytes(graph) / MB,
    )
    return CostReport(
        model=graph.model.name,
        convention=convention,
        input_shapes=dict(graph.input_shapes),
        layers=tuple(layers),
        totals=totals,
        uncounted=dict(sorted(uncounted.items())),
    )


def peak_live_bytes(graph: GraphAnalysis) -> int:
    """Return the peak of live activation bytes along the topological order."""
    end = len(graph.nodes)
    deltas = np.zeros(end + 1, dtype=np.int64)
    outputs = set(graph.output_names)
    for node in graph.nodes:
        for name in node.outputs:
            info = graph.tensors.get(name)
            if not name or info is None or info.static:
                continue
            consumers = graph.consumers(name)
            last = end if name in outputs else max((c.index for c in consumers), default=node.index)
            deltas[node.index] += info.nbytes
            deltas[last + 1 if last < end else end] -= info.nbytes
    return int(np.cumsum(deltas[:end]).max(initial=0))


def _memory(node: NodeInfo, cost: OpCost, graph: GraphAnalysis, paper: bool) -> int:
    if paper:
        if not cost.paper_memory or not node.outputs:
            return 0
        return graph.tensors[node.outputs[0]].numel * PAPER_BYTES
    return sum(
        graph.tensors[name].nbytes
        for name in node.outputs
        if name and name in graph.tensors and not graph.tensors[name].static
    )


def parameter_source(graph: GraphAnalysis, name: str) -> str | None:
    """Return the tensor that stands for the learnable parameter read as ``name``, or None.

    A float initializer is its own source. A static tensor computed from one by a view
    (Transpose, Reshape, Cast, ...; see ``OpRule.parameter_view``) is that initializer, so
    ``MatMul(x, Transpose(W))`` counts W once however many views read it. An alias
    (Identity) is a parameter of its own: torch's exporter de-duplicates equal-valued
    initializers and hands each layer its copy through an Identity named after the layer's
    parameter, so counting aliases apart gives torch's parameter count. A truly shared
    parameter is one initializer read directly, and counts once.

    Args:
        graph: The analysed model.
        name: A value read at a parameter position of a node.

    Returns:
        The name to count the parameter under (its size is that tensor's), or None if the
        value is not a parameter (computed from the inputs, an integer, a constant node).
    """
    while True:
        info = graph.tensors.get(name) if name else None
        if info is None or not info.static or info.elem_type not in FLOAT_TYPES:
            return None
        if graph.is_initializer(name):
            return name
        producer = graph.producer(name)
        rule = rule_for(producer.op_type, producer.domain) if producer is not None else None
        if producer is None or rule is None or rule.parameter_view is None:
            return None
        if not producer.inputs or not producer.inputs[0]:
            return None
        if rule.parameter_view == "alias":
            return name if parameter_source(graph, producer.inputs[0]) is not None else None
        name = producer.inputs[0]


def _new_parameters(node: NodeInfo, rule: OpRule, graph: GraphAnalysis, seen: set[str]) -> int:
    count = 0
    for slot in rule.parameter_slots(node, graph):
        if slot >= len(node.inputs):
            continue
        source = parameter_source(graph, node.inputs[slot])
        if source is None or source in seen:
            continue
        seen.add(source)
        count += graph.tensors[source].numel
    return count


def _parameter_bytes(graph: GraphAnalysis, names: set[str]) -> int:
    return sum(graph.tensors[name].nbytes for name in names)


def _shape_or_none(graph: GraphAnalysis, name: str) -> tuple[int, ...] | None:
    info = graph.tensors.get(name) if name else None
    return info.shape if info is not None else None
