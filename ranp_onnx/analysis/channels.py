"""Stage 2b, channel groups: which channels of the graph must be pruned together.

Every channel axis an op rule declares is a :class:`Space`: the channel axis of an
activation (axis 1 of ``[N, C, ...]``, the features of ``[N, F]``) or an axis of a static
tensor that is sliced with it (a weight's output axis, a BatchNorm scale). Rules tie
elements of spaces together in a union-find (``Relu`` ties its input's channel c to its
output's channel c; ``Concat`` ties input i's channel c to output channel offset_i + c; a
residual ``Add`` ties all its inputs; ``Flatten`` ties each feature to the channel it came
from). A connected set of elements is a *unit*: it is kept or removed as a whole.

Units that hold neurons (output channels of a Conv, ConvTranspose, Gemm or MatMul with a
weight) are what the scorers rank. A unit is fixed (never removed) if it touches a graph
input or output, or a tensor that some op cannot prune through; the reason is recorded.
Units with the same set of layers form a :class:`ChannelGroup`: a plain conv layer is one
group, layers joined by residual additions form one group, a depthwise conv joins the
group of the layer that feeds it.

Static tensors (initializers, constants and what is computed from them) are sliced along
their spaces by the rewriter; an initializer read by several nodes is tied across them, so
it is sliced consistently or its group is fixed.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PlanError, UnsupportedModelError
from ..ir.graph import GraphAnalysis, TensorInfo
from ..ops import rule_for
from ..ops.channel_graph import ChannelGraph
from .channel_statics import follow_computed_statics, trace_static_sources


@dataclass(frozen=True)
class Layer:
    """A scored layer: a node whose output channels are neurons.

    Attributes:
        node: Node name.
        op_type: Operator.
        weight: The weight input's tensor name.
        output: The output tensor.
        channels: Number of neurons (output channels).
        units: Unit id of each neuron.
    """

    node: str
    op_type: str
    weight: str
    output: str
    channels: int
    units: np.ndarray


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose neurons are pruned together, with the units they share.

    Attributes:
        id: Index in :attr:`ChannelAnalysis.groups`.
        layers: Names of the scored layers with neurons in the group.
        members: Every node that reads or writes the group's channels.
        units: Unit ids, in the order of the first layer's channels.
        prunable: False if the group must be kept whole.
        reason: Why it must be kept whole (None if prunable): the first of ``reasons``.
        equal_blocks: For grouped convolutions: the unit ids in each block that must keep
            equally many units (empty if no such constraint).
        reasons: Every reason the group must be kept whole, sorted (empty if prunable).
        notes: How op rules coupled its channels, where a rule said so (channels pruned in
            whole normalisation groups, zero padding that joins a residual stream).
    """

    id: int
    layers: tuple[str, ...]
    members: tuple[str, ...]
    units: np.ndarray
    prunable: bool
    reason: str | None
    equal_blocks: tuple[np.ndarray, ...]
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Number of units."""
        return int(self.units.size)


@dataclass(frozen=True)
class ChannelAnalysis:
    """The channel groups of a model.

    Attributes:
        graph: The analysed model.
        layers: Scored layers in topological order.
        groups: Groups of coupled layers (layer-less units, e.g. graph-input channels, are
            in no group).
        unit_count: Number of units.
        unit_group: Group id per unit (-1 for units without neurons).
        unit_neurons: Number of neurons per unit.
        unit_fixed_reason: Why a unit can never be removed ("" if it can).
        spaces: Unit id of every element of every space, keyed by (tensor, axis).
        derived: Axes whose new length is another space's kept count divided by a factor
            (a grouped conv weight's per-group axis), as (tensor, axis, source, divisor).
        recomputed: Static tensors computed at run time that the rewriter does not store:
            from a sliced source initializer (``Unsqueeze(prelu.weight)``), or regenerated.
        regenerated: (tensor, axis) of static tensors computed from activation shapes whose
            producer's rule gives that axis its pruned length (a ConstantOfShape).
        stored: Static tensors computed from activation shapes that the rewriter stores,
            pruned or not (every input dimension is fixed, so their value is too).
        segments: Unit sets of activations that hold only part of a group (a Split or
            Slice output): each must keep a unit, or a tensor would have no channels.
        blocked: Why each blocked tensor keeps its channels, keyed by tensor name.
    """

    graph: GraphAnalysis
    layers: tuple[Layer, ...]
    groups: tuple[ChannelGroup, ...]
    unit_count: int
    unit_group: np.ndarray
    unit_neurons: np.ndarray
    unit_fixed_reason: tuple[str, ...]
    spaces: Mapping[tuple[str, int], np.ndarray]
    derived: tuple[tuple[str, int, tuple[str, int], int], ...] = ()
    recomputed: frozenset[str] = frozenset()
    regenerated: tuple[tuple[str, int], ...] = ()
    stored: frozenset[str] = frozenset()
    segments: tuple[np.ndarray, ...] = ()
    blocked: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def neuron_count(self) -> int:
        """N: the number of neurons of all scored layers (the paper's sparsity base)."""
        return sum(layer.channels for layer in self.layers)

    def layer(self, node: str) -> Layer:
        """Return the layer of node ``node``."""
        for layer in self.layers:
            if layer.node == node:
                return layer
        raise KeyError(node)

    def kept_indices(self, keep: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
        """Return, for every space that loses elements, the sorted indices it keeps.

        Args:
            keep: Boolean keep flag per unit.
        """
        kept = {}
        for key, units in self.spaces.items():
            flags = keep[units]
            if not flags.all():
                kept[key] = np.flatnonzero(flags)
        return kept

    def layer_flags(self, names: Sequence[str], parameter: str) -> np.ndarray:
        """Per scored layer, True if one of ``names`` is its node or weight name.

        Raises:
            PlanError: A name matches no scored layer; the message names ``parameter``.
        """
        flags = np.zeros(len(self.layers), dtype=bool)
        for name in names:
            matches = [
                i for i, layer in enumerate(self.layers) if name in (layer.node, layer.weight)
            ]
            if not matches:
                raise PlanError(
                    f"`{parameter}` {name}: no scored layer has that node or weight name"
                )
            flags[matches] = True
        return flags

    def units_of(self, layer_flags: np.ndarray) -> np.ndarray:
        """Per unit, True if it holds a neuron of a flagged layer."""
        units = np.zeros(self.unit_count, dtype=bool)
        for layer, flag in zip(self.layers, layer_flags):
            if flag:
                units[layer.units] = True
        return units

    def fixed_units(self) -> np.ndarray:
        """Per unit, True if it can never be removed (a fixed unit, or its group kept whole)."""
        fixed = np.array([bool(reason) for reason in self.unit_fixed_reason])
        for group in self.groups:
            if not group.prunable:
                fixed[group.units] = True
        return fixed

    def require_prunable(self) -> None:
        """Refuse a model whose every channel group must be kept whole, with the reasons.

        Raises:
            PlanError: No group is prunable.
        """
        if any(group.prunable for group in self.groups):
            return
        reasons = sorted({str(group.reason) for group in self.groups})
        raise PlanError(f"nothing to prune: every layer must be kept whole ({'; '.join(reasons)})")


def pruned_shapes(channels: ChannelAnalysis, keep: np.ndarray) -> GraphAnalysis:
    """Return the analysis with every tensor shaped as it will be after pruning.

    No model is built: the cost rules read only shapes, so counting costs on this is
    exact and takes milliseconds (the budget searches call it many times).
    """
    graph = channels.graph
    tensors = dict(graph.tensors)
    kept = channels.kept_indices(keep)
    sizes = {key: int(indices.size) for key, indices in kept.items()}
    for tensor, axis, source, divisor in channels.derived:
        if source in kept:
            sizes[(tensor, axis)] = int(kept[source].size) // divisor
    for (tensor, axis), size in sizes.items():
        info = tensors.get(tensor)
        if info is None or info.shape is None:
            continue
        shape = list(info.shape)
        shape[axis] = size
        tensors[tensor] = TensorInfo(info.name, tuple(shape), info.elem_type, info.static)
    return dataclasses.replace(graph, tensors=tensors)


def analyse_channels(graph: GraphAnalysis) -> ChannelAnalysis:
    """Find the channel groups of an analysed model.

    Raises:
        UnsupportedModelError: The model has no layer with prunable channels.
    """
    channels = ChannelGraph(graph)
    for node in graph.nodes:
        if all(graph.tensors[name].static for name in node.outputs if name in graph.tensors):
            continue
        rule = rule_for(node.op_type, node.domain)
        channels.coupling = node
        if rule is None:
            channels.block_node(node, f"no rule for op '{node.op_type}'")
        else:
            rule.couple(node, graph, channels)
        channels.coupling = None
    _block_statics_read_unsliced(channels)
    trace_static_sources(channels)
    follow_computed_statics(channels)
    for name in graph.input_names:
        channels.block(name, f"channels of graph input '{name}'")
    for name in graph.output_names:
        channels.block(name, f"feeds graph output '{name}'")
    return _finish(channels)


def _segments(
    channels: ChannelGraph, groups: list[ChannelGroup], unit_of_element: np.ndarray
) -> tuple[np.ndarray, ...]:
    graph = channels.graph
    group_units = {frozenset(g.units.tolist()) for g in groups}
    found: dict[frozenset[int], np.ndarray] = {}
    for space in channels.spaces():
        info = graph.tensors.get(space.tensor)
        if info is None or info.static:
            continue
        units = np.unique(unit_of_element[space.ids])
        key = frozenset(units.tolist())
        if key not in group_units and key not in found:
            found[key] = units
    return tuple(found.values())


def _block_statics_read_unsliced(channels: ChannelGraph) -> None:
    """Fix the spaces of static tensors that a consumer reads whole.

    The dynamo exporter stores equal initializers once and feeds them to every node that
    uses them (a LayerNormalization's and an InstanceNormalization's scale of ones). A
    space on such a tensor is sliced for every reader, so every node that reads it at run
    time must have declared that space; a node whose outputs are all static is exempt (the
    rewriter gives what it computes its own value).
    """
    graph = channels.graph
    for space in list(channels.spaces()):
        info = graph.tensors.get(space.tensor)
        if info is None or not info.static or space.tensor in channels.blocked:
            continue
        readers = channels.declared[(space.tensor, space.axis)]
        for node in graph.consumers(space.tensor):
            outputs = [graph.tensors.get(name) for name in node.outputs]
            if node.name in readers or all(out is None or out.static for out in outputs):
                continue
            channels.block(
                space.tensor,
                f"'{space.tensor}' is also read by node '{node.name}', which does not slice it",
            )
            break


def _unit_reasons(
    channels: ChannelGraph, unit_of_element: np.ndarray, unit_count: int
) -> tuple[list[str], dict[int, set[str]]]:
    """Why each unit is fixed: the first reason recorded ("" if none), and every reason."""
    fixed = [""] * unit_count
    every: dict[int, set[str]] = defaultdict(set)
    for space in channels.spaces():
        reason = channels.blocked.get(space.tensor)
        if reason is None:
            continue
        for unit in np.unique(unit_of_element[space.ids]):
            fixed[unit] = fixed[unit] or reason
            every[int(unit)].add(reason)
    return fixed, every


def _finish(channels: ChannelGraph) -> ChannelAnalysis:
    graph = channels.graph
    roots = channels.roots()
    unique_roots, unit_of_element = np.unique(roots, return_inverse=True)
    unit_count = len(unique_roots)
    fixed, unit_reasons = _unit_reasons(channels, unit_of_element, unit_count)

    neurons = np.zeros(unit_count, dtype=np.int64)
    unit_layers: dict[int, list[int]] = defaultdict(list)
    layers = []
    for index, (node, space, weight) in enumerate(channels.layers):
        units = unit_of_element[space.ids]
        np.add.at(neurons, units, 1)
        for unit in np.unique(units):
            unit_layers[int(unit)].append(index)
        layers.append(
            Layer(
                node=node.name,
                op_type=node.op_type,
                weight=weight,
                output=space.tensor,
                channels=space.size,
                units=units,
            )
        )
    if not layers:
        raise UnsupportedModelError(
            "the model has no Conv, ConvTranspose, Gemm or MatMul layer with a weight: "
            "nothing to prune"
        )
    groups, unit_group = _groups(
        channels, layers, unit_layers, (fixed, unit_reasons), unit_of_element, unit_count
    )
    spaces = {(space.tensor, space.axis): unit_of_element[space.ids] for space in channels.spaces()}
    return ChannelAnalysis(
        graph=graph,
        layers=tuple(layers),
        groups=tuple(groups),
        unit_count=unit_count,
        unit_group=unit_group,
        unit_neurons=neurons,
        unit_fixed_reason=tuple(fixed),
        spaces=spaces,
        derived=tuple(channels.derived),
        recomputed=frozenset(channels.recomputed),
        regenerated=tuple(channels.regenerated),
        stored=frozenset(channels.stored),
        segments=_segments(channels, groups, unit_of_element),
        blocked=dict(channels.blocked),
    )


def _groups(
    channels: ChannelGraph,
    layers: list[Layer],
    unit_layers: Mapping[int, list[int]],
    fixed: tuple[list[str], Mapping[int, set[str]]],
    unit_of_element: np.ndarray,
    unit_count: int,
) -> tuple[list[ChannelGroup], np.ndarray]:
    by_signature: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for layer_index, layer in enumerate(layers):
        for unit in layer.units:
            signature = tuple(unit_layers[int(unit)])
            if signature[0] == layer_index and int(unit) not in by_signature[signature]:
                by_signature[signature].append(int(unit))
    unit_group = np.full(unit_count, -1, dtype=np.int64)
    groups: list[ChannelGroup] = []
    constraints = _equal_block_constraints(channels, unit_of_element)
    # The tensors whose channel space holds each unit: one pass over the spaces, not one
    # per group (that was quadratic in the graph size).
    tensors_of_unit: dict[int, set[str]] = defaultdict(set)
    for space in channels.spaces():
        for unit in np.unique(unit_of_element[space.ids]).tolist():
            tensors_of_unit[unit].add(space.tensor)
    notes = [(set(unit_of_element[ids].tolist()), text) for ids, text in channels.notes]
    for signature, units in by_signature.items():
        group_id = len(groups)
        unit_array = np.array(units, dtype=np.int64)
        unit_group[unit_array] = group_id
        first, every = fixed
        primary = sorted({first[u] for u in units if first[u]})
        reasons = sorted(set().union(*(every.get(u, set()) for u in units)))
        blocks = constraints.get(frozenset(units), ())
        conflict = _constraint_conflict(units, constraints, channels, unit_of_element)
        reasons += [conflict] if conflict is not None else []
        reason = primary[0] if primary else conflict
        member_names: set[str] = set()
        for tensor in set().union(*(tensors_of_unit.get(u, ()) for u in units)):
            member_names |= channels.members.get(tensor, set())
        groups.append(
            ChannelGroup(
                id=group_id,
                layers=tuple(layers[i].node for i in signature),
                members=tuple(sorted(member_names)),
                units=unit_array,
                prunable=reason is None,
                reason=reason,
                equal_blocks=blocks,
                reasons=tuple(reasons),
                notes=tuple(dict.fromkeys(text for found, text in notes if found & set(units))),
            )
        )
    return groups, unit_group


def _equal_block_constraints(
    channels: ChannelGraph, unit_of_element: np.ndarray
) -> dict[frozenset[int], tuple[np.ndarray, ...]]:
    """Merge the equal-count constraints of grouped convolutions per set of units.

    Two partitions of the same units (a conv with 2 groups writes them, one with 4 reads
    them) merge into their common refinement when its blocks are all equally large:
    equal counts in every fine block give equal counts in every coarse one. Otherwise
    the constraint is empty, which fixes the group.
    """
    constraints: dict[frozenset[int], tuple[np.ndarray, ...]] = {}
    for space, count, _node in channels.equal:
        units = unit_of_element[space.ids]
        blocks = tuple(np.unique(part) for part in np.split(units, count))
        # Equal unit counts give equal channel counts only where no unit straddles two
        # blocks and every unit holds as many channels (a depthwise multiplier repeats
        # units); otherwise no unit selection is valid, which fixes the group.
        _, per_unit = np.unique(units, return_counts=True)
        if sum(block.size for block in blocks) != per_unit.size or np.ptp(per_unit) > 0:
            blocks = ()
        key = frozenset(int(u) for u in units)
        existing = constraints.get(key)
        constraints[key] = blocks if existing is None else _refine(existing, blocks)
    return constraints


def _refine(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    if not a or not b:
        return ()
    fine = [np.intersect1d(x, y) for x in a for y in b]
    fine = [block for block in fine if block.size]
    if len({block.size for block in fine}) != 1:
        return ()
    return tuple(fine)


def _constraint_conflict(
    units: list[int],
    constraints: Mapping[frozenset[int], tuple[np.ndarray, ...]],
    channels: ChannelGraph,
    unit_of_element: np.ndarray,
) -> str | None:
    """A group whose units are split differently by two grouped convolutions is kept whole."""
    unit_set = set(units)
    touching = [key for key in constraints if key & unit_set]
    for key in touching:
        if key != frozenset(unit_set) or not constraints[key]:
            nodes = sorted(
                {
                    node
                    for space, _count, node in channels.equal
                    if unit_set & set(unit_of_element[space.ids].tolist())
                }
            )
            named = ", ".join(f"'{node}'" for node in nodes)
            return f"grouped convolutions split these channels in incompatible ways ({named})"
    return None
