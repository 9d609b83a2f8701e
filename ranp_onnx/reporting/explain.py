"""Why a layer can or cannot be pruned: a dry run of the channel analysis.

:func:`explain` lists every node whose op rule gives it a weight (Conv, ConvTranspose,
Gemm, MatMul) with the channel groups its output channels belong to, the other layers and
nodes of those groups, and whether they can be pruned; where not, every reason the channel
analysis recorded, each naming the node or tensor that fixes the channels (a graph output,
an op that mixes channels, an op without a rule, a weight shared with another node) or the
``--keep`` / ``--ignore`` option that asked for it. Nothing is scored or rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.channels import ChannelAnalysis, ChannelGroup, Layer, analyse_channels
from ..ir.graph import GraphAnalysis, NodeInfo
from ..ops import rule_for
from .tables import format_table


@dataclass(frozen=True)
class GroupExplanation:
    """One channel group.

    Attributes:
        id: The group's id (as in plans).
        layers: Its scored layers.
        members: Every node that reads or writes its channels.
        width: Number of units (sets of coupled channels, kept or removed whole) it has.
        prunable: False if it is kept whole.
        reasons: Why it is kept whole (empty if prunable).
        unit_channels: Output channels of its first layer in each unit (more than 1 where
            channels are pruned in whole GroupNorm groups or channel multipliers).
        notes: How op rules coupled its channels, where they said so.
    """

    id: int
    layers: tuple[str, ...]
    members: tuple[str, ...]
    width: int
    prunable: bool
    reasons: tuple[str, ...]
    unit_channels: int = 1
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "layers": list(self.layers),
            "members": list(self.members),
            "width": self.width,
            "channels_per_unit": self.unit_channels,
            "prunable": self.prunable,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class LayerExplanation:
    """One weighted node.

    Attributes:
        node: Node name.
        op_type: Operator.
        weight: Its weight input.
        channels: Output channels (neurons); None if it is not a scored layer.
        groups: Ids of the groups its output channels belong to (empty if not scored).
        prunable: True if some of its output channels may be removed.
        reasons: Why (some of) its channels are kept (empty if all may be removed).
    """

    node: str
    op_type: str
    weight: str
    channels: int | None
    groups: tuple[int, ...]
    prunable: bool
    reasons: tuple[str, ...]

    @property
    def status(self) -> str:
        """One of prunable, partly (some of its groups are kept whole) or kept whole."""
        if not self.prunable:
            return "kept whole"
        return "partly" if self.reasons else "prunable"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "node": self.node,
            "op_type": self.op_type,
            "weight": self.weight,
            "channels": self.channels,
            "groups": list(self.groups),
            "prunable": self.prunable,
            "status": self.status,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Explanation:
    """Every weighted node of a model and its channel groups."""

    model: str
    layers: tuple[LayerExplanation, ...]
    groups: tuple[GroupExplanation, ...]

    @property
    def unprunable(self) -> tuple[LayerExplanation, ...]:
        """The layers kept whole."""
        return tuple(layer for layer in self.layers if not layer.prunable)

    def to_json(self) -> dict[str, Any]:
        """The ``explain --json`` document."""
        return {
            "model": self.model,
            "layers": [layer.to_json() for layer in self.layers],
            "groups": [group.to_json() for group in self.groups],
            "prunable_layers": sum(layer.prunable for layer in self.layers),
            "unprunable_layers": len(self.unprunable),
        }


def explain(
    graph: GraphAnalysis, *, keep: Sequence[str] = (), ignore: Sequence[str] = ()
) -> Explanation:
    """Explain which weighted layers of a model can be pruned, and why not.

    Args:
        graph: The analysed model.
        keep: Layers (node or weight names) to keep whole, as ``prune --keep``.
        ignore: Layers to leave out of scoring and pruning, as ``prune --ignore``.

    Raises:
        UnsupportedModelError: The model has no layer with a weight.
        PlanError: A ``keep`` or ``ignore`` name matches no scored layer.
    """
    channels = analyse_channels(graph)
    asked = _option_reasons(channels, keep, ignore)
    groups = tuple(_group(group, asked, channels) for group in channels.groups)
    layers = []
    scored = {layer.node: layer for layer in channels.layers}
    for node in graph.nodes:
        rule = rule_for(node.op_type, node.domain)
        slot = rule.weight_input if rule is not None else None
        layer = scored.get(node.name)
        if layer is not None:
            ids = sorted({int(g) for g in channels.unit_group[layer.units]})
            layers.append(_scored_layer(layer, ids, groups))
        elif slot is not None and slot < len(node.inputs):
            layers.append(_unscored_layer(node, node.inputs[slot], channels))
    return Explanation(model=graph.model.name, layers=tuple(layers), groups=groups)


def _option_reasons(
    channels: ChannelAnalysis, keep: Sequence[str], ignore: Sequence[str]
) -> dict[int, list[str]]:
    """Reasons per group id that ``--keep`` / ``--ignore`` add."""
    reasons: dict[int, list[str]] = {}
    for parameter, names, text in (
        ("keep", keep, "kept whole by --keep"),
        ("ignore", ignore, "left out by --ignore"),
    ):
        channels.layer_flags(names, parameter)  # refuses a name that matches no layer
        for name in names:
            matches = [layer for layer in channels.layers if name in (layer.node, layer.weight)]
            for layer in matches:
                for group in sorted({int(g) for g in channels.unit_group[layer.units]}):
                    reasons.setdefault(group, []).append(f"{text} '{layer.node}'")
    return reasons


def _group(
    group: ChannelGroup, asked: dict[int, list[str]], channels: ChannelAnalysis
) -> GroupExplanation:
    reasons = (*group.reasons, *asked.get(group.id, ()))
    first = channels.layer(group.layers[0])
    in_group = int(np.count_nonzero(np.isin(first.units, group.units)))
    return GroupExplanation(
        id=group.id,
        layers=group.layers,
        members=group.members,
        width=group.width,
        prunable=not reasons,
        reasons=tuple(reasons),
        unit_channels=max(in_group // max(group.width, 1), 1),
        notes=group.notes,
    )


def _scored_layer(
    layer: Layer, ids: list[int], groups: Sequence[GroupExplanation]
) -> LayerExplanation:
    mine = [groups[i] for i in ids]
    reasons = sorted({reason for group in mine for reason in group.reasons})
    return LayerExplanation(
        node=layer.node,
        op_type=layer.op_type,
        weight=layer.weight,
        channels=layer.channels,
        groups=tuple(ids),
        prunable=any(group.prunable for group in mine),
        reasons=tuple(reasons),
    )


def _unscored_layer(node: NodeInfo, weight: str, channels: ChannelAnalysis) -> LayerExplanation:
    """A weighted node the channel analysis declared no neurons for: its block reason."""
    found = [channels.blocked[name] for name in node.outputs if name in channels.blocked]
    own = [reason for reason in found if f"'{node.name}'" in reason]
    reason = (own or found or [f"{node.op_type} node '{node.name}' declares no neurons"])[0]
    return LayerExplanation(
        node=node.name,
        op_type=node.op_type,
        weight=weight,
        channels=None,
        groups=(),
        prunable=False,
        reasons=(f"not a scored layer: {reason}",),
    )


def format_explanation(explanation: Explanation) -> str:
    """Render the layers as a table, then the groups that hold several layers or are fixed."""
    rows = [
        [
            str(index),
            layer.node,
            layer.op_type,
            str(layer.channels) if layer.channels is not None else "",
            ",".join(map(str, layer.groups)),
            layer.status,
            "; ".join(layer.reasons),
        ]
        for index, layer in enumerate(explanation.layers)
    ]
    header = ["#", "layer", "op", "channels", "group", "pruning", "why kept"]
    prunable = sum(layer.prunable for layer in explanation.layers)
    lines = [
        f"model: {explanation.model}   layers: {len(explanation.layers)} "
        f"({prunable} prunable, {len(explanation.unprunable)} kept whole)   "
        f"channel groups: {len(explanation.groups)}",
        "",
        format_table(header, rows, right={0, 3}),
    ]
    shown = [g for g in explanation.groups if len(g.layers) > 1 or not g.prunable or g.notes]
    if shown:
        lines += ["", "groups (coupled layers, coupled by a rule, or kept whole):"]
    for group in shown:
        state = "prunable" if group.prunable else "kept whole: " + "; ".join(group.reasons)
        size = f"{group.width} channels"
        if group.unit_channels > 1:
            size = f"{group.width} units of {group.unit_channels} channels"
        lines.append(f"  group {group.id} ({size}, {state})")
        lines.append(f"    layers:  {', '.join(group.layers)}")
        lines.append(f"    members: {', '.join(group.members)}")
        lines.extend(f"    how:     {note}" for note in group.notes)
    return "\n".join(lines)
