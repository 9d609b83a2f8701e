"""The weight groups of the regularization: which parameter elements each group holds.

A :class:`RegularizedLayer` is what the paper calls a layer: a set of ``N_g`` weight groups
of which ``R N_g`` are to go, each group ranked by its L1 norm and given its own
coefficient. Two granularities (``--granularity``):

- ``channel`` (the default): a group is a unit of :mod:`ranp_onnx.analysis.channels`, the
  channels that are removed together; a layer is a prunable
  :class:`~ranp_onnx.analysis.channels.ChannelGroup` (coupled layers together; for grouped
  convolutions each block of equal counts). A
  group's parameters are every slice the rewrite would cut for the unit: the filters of
  the layers that write it, their biases and normalisation scales and shifts, and the
  input slices of the layers that read it. Removing whole groups gives a smaller dense
  network. Groups whose layers are all fully connected (weights without spatial axes) are
  left alone, as the paper leaves its fully connected layers.
- ``shape``: the paper's groups (its Fig. 1b): one column of the im2col matrix of a 3D
  convolution, i.e. the weights at one kernel position of one input channel across all
  filters. Every convolution with an input-channel axis is a layer, whatever its channel
  group; removing columns zeroes weights, and a channel whose every consuming column is
  gone is removed physically at the end.

Everything here is numpy: :mod:`~ranp_onnx.regularization.regularizer` binds the slices
to torch tensors by name (the ONNX initializer names, the ``state_dict`` keys).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..analysis.channels import ChannelAnalysis, ChannelGroup, Layer
from ..ops import rule_for
from ..rewrite.surgery import static_value
from ..selection.criteria import layer_resources

#: The ``--granularity`` choices.
GRANULARITIES = ("channel", "shape")


@dataclass(frozen=True)
class ParameterSlice:
    """The elements of one parameter that belong to a layer's groups.

    Attributes:
        tensor: The parameter (ONNX initializer name, the ``state_dict`` key).
        axes: The axes the groups index, increasing.
        index: ``int64`` shaped like the tensor's ``axes``: the group (within the layer)
            of each position, -1 where the position belongs to no group of this layer.
    """

    tensor: str
    axes: tuple[int, ...]
    index: np.ndarray


@dataclass(frozen=True)
class RegularizedLayer:
    """A layer in the paper's sense: groups ranked against each other.

    Attributes:
        name: A label: the channel group's first layer (node name), or the convolution.
        nodes: The scored layers (node names) it covers.
        size: ``N_g``, the number of groups.
        slices: Where each group's elements are.
        flops: ``G_l``, the layers' FLOPs in the RANP reference counter (DPR's share).
        weight: The first layer's weight as ``[neurons, fan-in]`` (DPR's PCA).
        units: Channel granularity: the unit of each group. Shape granularity: the unit
            of each column's input channel (what removing all its columns frees).
    """

    name: str
    nodes: tuple[str, ...]
    size: int
    slices: tuple[ParameterSlice, ...]
    flops: float
    weight: np.ndarray
    units: np.ndarray


@dataclass(frozen=True)
class WeightGroups:
    """The regularized layers of a model.

    Attributes:
        granularity: "channel" or "shape".
        channels: The channel analysis they were derived from.
        layers: The layers, in topological order of their first node.
        left_alone: Convolutions (node names) no layer covers, with the reason.
    """

    granularity: str
    channels: ChannelAnalysis
    layers: tuple[RegularizedLayer, ...]
    left_alone: tuple[tuple[str, str], ...]

    @property
    def group_count(self) -> int:
        """Groups over all layers."""
        return sum(layer.size for layer in self.layers)


def is_convolution(channels: ChannelAnalysis, layer: Layer) -> bool:
    """True if the layer's weight has spatial axes (a convolution, not a fully connected one)."""
    return len(channels.graph.shape(layer.weight)) >= 3


def weight_groups(
    channels: ChannelAnalysis, granularity: str, parameters: Collection[str]
) -> WeightGroups:
    """Find the weight groups of a model.

    Args:
        channels: The channel analysis of the model.
        granularity: "channel" or "shape".
        parameters: Names of the trainable tensors (slices of other tensors are ignored).

    Raises:
        ValueError: An unknown granularity.
    """
    if granularity == "channel":
        layers, left = _channel_layers(channels, set(parameters))
    elif granularity == "shape":
        layers, left = _shape_layers(channels, set(parameters))
    else:
        raise ValueError(f"unknown granularity {granularity!r}; choose from {GRANULARITIES}")
    return WeightGroups(granularity, channels, tuple(layers), tuple(left))


def _neuron_weight(channels: ChannelAnalysis, layer: Layer) -> np.ndarray:
    node = channels.graph.node(layer.node)
    rule = rule_for(node.op_type, node.domain)
    assert rule is not None
    return rule.neuron_weights(node, static_value(channels.graph, layer.weight))


def _channel_layers(
    channels: ChannelAnalysis, parameters: set[str]
) -> tuple[list[RegularizedLayer], list[tuple[str, str]]]:
    by_node = {layer.node: layer for layer in channels.layers}
    flops = dict(zip((layer.node for layer in channels.layers), layer_resources(channels, "flops")))
    layers: list[RegularizedLayer] = []
    left: list[tuple[str, str]] = []
    for group in channels.groups:
        members = [by_node[name] for name in group.layers]
        convolutions = [layer.node for layer in members if is_convolution(channels, layer)]
        if not convolutions:
            continue
        reason = _why_not_regularized(channels, group)
        if reason is not None:
            left.extend((name, reason) for name in convolutions)
            continue
        blocks = group.equal_blocks or (group.units,)
        group_flops = sum(flops[name] for name in group.layers)
        for number, units in enumerate(blocks):
            name = group.layers[0] + (f" (block {number})" if len(blocks) > 1 else "")
            first = members[0]
            weight = _neuron_weight(channels, first)[np.isin(first.units, units)]
            slices = _unit_slices(channels, units, parameters)
            if not slices:
                left.extend(
                    (name, "no trainable parameter holds its channels") for name in convolutions
                )
                continue
            layers.append(
                RegularizedLayer(
                    name=name,
                    nodes=tuple(group.layers),
                    size=int(units.size),
                    slices=slices,
                    flops=group_flops * units.size / group.width,
                    weight=weight,
                    units=np.asarray(units, dtype=np.int64),
                )
            )
    return layers, left


def _why_not_regularized(channels: ChannelAnalysis, group: ChannelGroup) -> str | None:
    if not group.prunable:
        return str(group.reason)
    fixed = next(
        (channels.unit_fixed_reason[u] for u in group.units if channels.unit_fixed_reason[u]), ""
    )
    if fixed:
        return fixed
    if group.width < 2:
        return "a single channel"
    return None


def _unit_slices(
    channels: ChannelAnalysis, units: np.ndarray, parameters: set[str]
) -> tuple[ParameterSlice, ...]:
    """Every parameter axis that holds these units, with each unit's position."""
    position = np.full(channels.unit_count, -1, dtype=np.int64)
    position[units] = np.arange(units.size)
    slices = []
    for (tensor, axis), space_units in sorted(channels.spaces.items()):
        if tensor not in parameters:
            continue
        index = position[space_units]
        if (index >= 0).any():
            slices.append(ParameterSlice(tensor, (axis,), index))
    return tuple(slices)


def weight_axes(channels: ChannelAnalysis, layer: Layer) -> tuple[int, int | None]:
    """The axis of the layer's weight that indexes its neurons, and the one for its inputs.

    The input axis is None where no single axis holds the input channels (a grouped or
    depthwise convolution).
    """
    spaces = {
        axis: units for (tensor, axis), units in channels.spaces.items() if tensor == layer.weight
    }
    out_axis = next((a for a, units in spaces.items() if np.array_equal(units, layer.units)), None)
    if out_axis is None:
        return -1, None
    others = [a for a in spaces if a != out_axis and a in (0, 1)]
    return out_axis, others[0] if len(others) == 1 else None


def _shape_layers(
    channels: ChannelAnalysis, parameters: set[str]
) -> tuple[list[RegularizedLayer], list[tuple[str, str]]]:
    flops = dict(zip((layer.node for layer in channels.layers), layer_resources(channels, "flops")))
    layers: list[RegularizedLayer] = []
    left: list[tuple[str, str]] = []
    for layer in channels.layers:
        if not is_convolution(channels, layer):
            continue
        out_axis, in_axis = weight_axes(channels, layer)
        if layer.weight not in parameters:
            left.append((layer.node, "its weight is not a trainable parameter"))
            continue
        if in_axis is None or out_axis < 0:
            left.append((layer.node, "a grouped convolution has no im2col columns"))
            continue
        shape = channels.graph.shape(layer.weight)
        axes = tuple(sorted({in_axis, *range(2, len(shape))}))
        columns = int(np.prod([shape[a] for a in axes]))
        window = columns // shape[in_axis]
        layers.append(
            RegularizedLayer(
                name=layer.node,
                nodes=(layer.node,),
                size=columns,
                slices=(
                    ParameterSlice(
                        layer.weight, axes, np.arange(columns).reshape([shape[a] for a in axes])
                    ),
                ),
                flops=flops[layer.node],
                weight=_neuron_weight(channels, layer),
                units=np.repeat(channels.spaces[(layer.weight, in_axis)], window),
            )
        )
    return layers, left
