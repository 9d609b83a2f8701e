"""Plans are data: what a selection keeps, as JSON keyed by ONNX names.

A :class:`PrunePlan` records, for every scored layer, the output channels it keeps (keyed
by the layer's weight initializer, which is the torch parameter name on exported models
and so survives re-export), every channel group with its members, kept units, score
summary and costs, the groups left alone and why, the settings, and the achieved figures.
:func:`keep_from_plan` maps a plan back onto a model, also onto an export of the same
network at another input size (the paper's "prune at 64^3, train at 128^3").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.channels import ChannelAnalysis, ChannelGroup
from ..analysis.costs import CostReport
from ..errors import PlanError

PLAN_FORMAT = "ranp-onnx-plan/1"


@dataclass(frozen=True)
class PrunePlan:
    """A reviewable, re-appliable pruning decision.

    Attributes:
        model: The model's name.
        settings: The options that produced it.
        layers: Per scored layer: node, weight, op_type, channels, kept indices.
        groups: Per channel group: layers, members, width, kept units (positions in the
            first layer's channel order), prunable and reason, score summary, costs.
        achieved: Neuron sparsity, the before/after totals and the fraction of each
            total kept (``fraction_kept``: params, flops, macs, memory_mb).
    """

    model: str
    settings: Mapping[str, Any]
    layers: tuple[Mapping[str, Any], ...]
    groups: tuple[Mapping[str, Any], ...]
    achieved: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": PLAN_FORMAT,
            "model": self.model,
            "settings": dict(self.settings),
            "achieved": dict(self.achieved),
            "layers": [dict(layer) for layer in self.layers],
            "groups": [dict(group) for group in self.groups],
            "unprunable": [
                {"group": g["id"], "layers": g["layers"], "reason": g["reason"]}
                for g in self.groups
                if not g["prunable"]
            ],
        }

    def dumps(self) -> str:
        """Serialise with sorted keys."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PrunePlan:
        """Read a plan document.

        Raises:
            PlanError: It is not a ranp-onnx plan.
        """
        if not isinstance(document, Mapping) or document.get("format") != PLAN_FORMAT:
            raise PlanError(f"not a ranp-onnx plan (expected format '{PLAN_FORMAT}')")
        try:
            return cls(
                model=str(document["model"]),
                settings=dict(document["settings"]),
                layers=tuple(document["layers"]),
                groups=tuple(document["groups"]),
                achieved=dict(document.get("achieved", {})),
            )
        except (KeyError, TypeError) as error:
            raise PlanError(f"the plan is missing {error}") from error


def build_plan(
    channels: ChannelAnalysis,
    keep: np.ndarray,
    scores: np.ndarray,
    *,
    settings: Mapping[str, Any],
    before: CostReport,
    after: CostReport,
) -> PrunePlan:
    """Describe a selection as a plan."""
    layers = layer_entries(channels, keep)
    groups = [_group_entry(group, keep, scores, before, after) for group in channels.groups]
    total = channels.neuron_count
    kept_neurons = int(channels.unit_neurons[keep].sum())
    achieved = {
        "neurons": total,
        "neurons_kept": kept_neurons,
        "neuron_sparsity": 1.0 - kept_neurons / total if total else 0.0,
        "before": before.totals.to_json(),
        "after": after.totals.to_json(),
        "fraction_kept": {
            key: _fraction(getattr(after.totals, key), getattr(before.totals, key))
            for key in ("params", "flops", "macs", "memory_mb")
        },
        "convention": before.convention,
    }
    return PrunePlan(
        model=channels.graph.model.name,
        settings=dict(settings),
        layers=tuple(layers),
        groups=tuple(groups),
        achieved=achieved,
    )


def layer_entries(channels: ChannelAnalysis, keep: np.ndarray) -> list[dict[str, Any]]:
    """The plan's ``layers``: per scored layer, its names, channel count and kept channels."""
    return [
        {
            "node": layer.node,
            "weight": layer.weight,
            "op_type": layer.op_type,
            "channels": layer.channels,
            "kept": [int(i) for i in np.flatnonzero(keep[layer.units])],
        }
        for layer in channels.layers
    ]


def keep_elsewhere(
    target: ChannelAnalysis, source: ChannelAnalysis, keep: np.ndarray
) -> np.ndarray:
    """Map a selection on ``source`` onto ``target``, the same network at other input shapes.

    Raises:
        PlanError: The networks differ (see :func:`keep_from_plan`).
    """
    plan = PrunePlan(
        model=source.graph.model.name,
        settings={},
        layers=tuple(layer_entries(source, keep)),
        groups=(),
    )
    return keep_from_plan(target, plan)


def _group_entry(
    group: ChannelGroup, keep: np.ndarray, scores: np.ndarray, before: CostReport, after: CostReport
) -> dict[str, Any]:
    """One group of the plan: members, kept units, score summary, costs before and after."""
    flags = keep[group.units]
    before_by_node = {layer.name: layer for layer in before.layers}
    after_by_node = {layer.name: layer for layer in after.layers}
    members = [name for name in group.members if name in before_by_node]
    remaining = [after_by_node[name] for name in members if name in after_by_node]
    return {
        "id": group.id,
        "layers": list(group.layers),
        "members": list(group.members),
        "width": group.width,
        "kept_count": int(flags.sum()),
        "kept": [int(i) for i in np.flatnonzero(flags)],
        "prunable": group.prunable,
        "reason": group.reason,
        "scores": _summary(scores[group.units], flags),
        "gflops_before": sum(before_by_node[n].flops for n in members) / 1e9,
        "gflops_after": sum(layer.flops for layer in remaining) / 1e9,
        "memory_mb_before": sum(before_by_node[n].memory_bytes for n in members) / 2**20,
        "memory_mb_after": sum(layer.memory_bytes for layer in remaining) / 2**20,
    }


def _fraction(after: float, before: float) -> float | None:
    return float(after) / float(before) if before else None


def _summary(scores: np.ndarray, kept: np.ndarray) -> dict[str, float | None]:
    def stat(values: np.ndarray, how: str) -> float | None:
        return float(getattr(np, how)(values)) if values.size else None

    return {
        "kept_min": stat(scores[kept], "min"),
        "kept_mean": stat(scores[kept], "mean"),
        "removed_max": stat(scores[~kept], "max"),
        "removed_mean": stat(scores[~kept], "mean"),
    }


def keep_from_plan(channels: ChannelAnalysis, plan: PrunePlan) -> np.ndarray:
    """Map a plan onto a model's units.

    Layers are matched by weight initializer name, then by node name. Every scored layer of
    the model must be in the plan with the same channel count, and coupled neurons must
    agree.

    Raises:
        PlanError: The plan does not fit the model; the message names the layer.
    """
    by_weight = {entry["weight"]: entry for entry in plan.layers}
    by_node = {entry["node"]: entry for entry in plan.layers}
    decided = np.full(channels.unit_count, -1, dtype=np.int8)
    for layer in channels.layers:
        entry = by_weight.get(layer.weight) or by_node.get(layer.node)
        if entry is None:
            raise PlanError(f"layer '{layer.node}' (weight '{layer.weight}') is not in the plan")
        if int(entry["channels"]) != layer.channels:
            raise PlanError(
                f"layer '{layer.node}' has {layer.channels} channels; the plan was made for "
                f"{entry['channels']}"
            )
        flags = np.zeros(layer.channels, dtype=np.int8)
        kept = np.asarray(entry["kept"], dtype=np.int64)
        if kept.size and (kept.min() < 0 or kept.max() >= layer.channels):
            raise PlanError(f"layer '{layer.node}': kept index out of range in the plan")
        flags[kept] = 1
        previous = decided[layer.units]
        if np.any((previous >= 0) & (previous != flags)):
            raise PlanError(
                f"layer '{layer.node}': the plan keeps channels that this model couples to "
                "removed ones (the networks differ)"
            )
        decided[layer.units] = flags
    keep = decided != 0
    for unit, reason in enumerate(channels.unit_fixed_reason):
        if reason and channels.unit_neurons[unit] and decided[unit] == 0:
            raise PlanError(f"the plan removes channels this model cannot remove ({reason})")
    return keep
