"""How many groups each layer gives up: SPR or DPR, scaled to a FLOPs target.

The paper (section 2.2) allocates an overall pruning ratio ``pr`` to the layers either
evenly (SPR) or by redundancy and cost (DPR: ``gamma_l = (1 - w) alpha_l + w beta_l``,
``alpha`` from the PCA reconstruction error of the layer's weights, ``beta`` its share of
the FLOPs, ``v`` from Eq. 4; :func:`ranp_onnx.selection.importance.dpr_prune_ratios`). Layer ``l``
then loses ``floor(R_l N_g)`` of its ``N_g`` groups, and always keeps ``min_keep``.

A speedup is a FLOPs reduction of the whole model, counted as the paper counts it: with
column (shape) groups a layer that loses a fraction ``R`` of its columns loses that
fraction of its multiply-accumulates; with channel groups the model is counted after the
channels are removed, so a layer also gets cheaper when the layer feeding it loses
channels. Eq. 4 holds exactly for columns (``pr = 1 - 1/speedup`` over the convolutions);
in general the smallest ``pr`` whose allocation meets the target is found by bisection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..analysis.channels import pruned_shapes
from ..analysis.costs import Convention, count_costs
from ..errors import PlanError
from ..selection.importance import dpr_prune_ratios
from ..selection.search import lowest_accepted
from .groups import WeightGroups

#: The ``--allocation`` choices.
ALLOCATIONS = ("spr", "dpr")
#: DPR's weight of the FLOPs share (the paper's ``w_gflops``).
FLOPS_WEIGHT = 0.8


@dataclass(frozen=True)
class Allocation:
    """The groups each layer is to lose.

    Attributes:
        method: "spr" or "dpr".
        prune_ratio: ``pr`` of Eq. 4 at which the allocation meets the target.
        ratios: ``R_l`` per layer (clipped to [0, 1]).
        due: Groups to remove per layer, ``min(floor(R_l N_g), N_g - min_keep)``.
        full_flops: FLOPs of the model in ``convention``.
        target_flops: The FLOPs asked for.
        predicted_flops: FLOPs once the due groups are gone.
        convention: The counting convention.
    """

    method: str
    prune_ratio: float
    ratios: tuple[float, ...]
    due: tuple[int, ...]
    full_flops: int
    target_flops: float
    predicted_flops: float
    convention: Convention

    @property
    def due_total(self) -> int:
        """Groups to remove over all layers."""
        return sum(self.due)


def layer_ratios(groups: WeightGroups, method: str, prune_ratio: float) -> np.ndarray:
    """``R_l`` for every layer at an overall ratio ``pr``, clipped to [0, 1].

    Raises:
        ValueError: An unknown method.
    """
    return np.clip(prune_ratio * _unit_ratios(groups, method), 0.0, 1.0)


def _unit_ratios(groups: WeightGroups, method: str) -> np.ndarray:
    """The ratios at ``pr = 1`` before clipping: they scale linearly with ``pr``."""
    if method == "spr":
        return np.ones(len(groups.layers))
    if method == "dpr":
        return dpr_prune_ratios(
            [layer.weight for layer in groups.layers],
            [layer.flops for layer in groups.layers],
            1.0,
            flops_weight=FLOPS_WEIGHT,
            max_ratio=np.inf,
        )
    raise ValueError(f"unknown allocation {method!r}; choose from {ALLOCATIONS}")


def due_counts(
    groups: WeightGroups, ratios: Sequence[float] | np.ndarray, min_keep: int = 1
) -> np.ndarray:
    """Groups to remove per layer: ``floor(R N_g)``, leaving at least ``min_keep``."""
    sizes = np.array([layer.size for layer in groups.layers], dtype=np.int64)
    wanted = np.floor(np.asarray(ratios) * sizes + 1e-9).astype(np.int64)
    return np.clip(np.minimum(wanted, sizes - min_keep), 0, None)


def predicted_flops(
    groups: WeightGroups, due: Sequence[int] | np.ndarray, convention: Convention
) -> float:
    """FLOPs of the model once ``due[l]`` groups of every layer are gone."""
    channels = groups.channels
    if groups.granularity == "channel":
        keep = np.ones(channels.unit_count, dtype=bool)
        for layer, count in zip(groups.layers, due):
            keep[layer.units[: int(count)]] = False
        return float(count_costs(pruned_shapes(channels, keep), convention).totals.flops)
    report = count_costs(channels.graph, convention)
    per_mac = 1 if convention == "ranp-paper" else 2
    macs = {layer.name: layer.macs for layer in report.layers}
    saved = sum(
        per_mac * macs[layer.name] * int(count) / layer.size
        for layer, count in zip(groups.layers, due)
    )
    return float(report.totals.flops) - saved


def target_description(speedup: float | None, target_flops: float | None) -> str:
    """The target as the user gave it, e.g. "`speedup` 2"."""
    return f"`speedup` {speedup:g}" if speedup is not None else f"`target_flops` {target_flops:g}"


def _checked_target(
    groups: WeightGroups, speedup: float | None, target_flops: float | None
) -> tuple[str, float]:
    """The target as given and as a fraction of the FLOPs; refuse what cannot be done."""
    if (speedup is None) == (target_flops is None):
        raise PlanError("give exactly one of `speedup` and `target_flops`")
    asked = target_description(speedup, target_flops)
    fraction = 1.0 / speedup if speedup is not None else float(target_flops or 0.0)
    if fraction >= 1.0:
        raise PlanError(f"{asked}: the full model already meets it; nothing to regularize")
    if fraction <= 0.0:
        raise PlanError(f"{asked}: must keep a positive fraction of the FLOPs")
    if not groups.layers:
        reasons = sorted({reason for _, reason in groups.left_alone}) or ["no convolution"]
        raise PlanError(
            f"nothing to regularize at `granularity` {groups.granularity}: "
            f"no convolution has groups that can go ({'; '.join(reasons)})"
        )
    return asked, fraction


def allocate(
    groups: WeightGroups,
    method: str,
    *,
    speedup: float | None = None,
    target_flops: float | None = None,
    convention: Convention = "standard",
    min_keep: int = 1,
) -> Allocation:
    """The least pruning of ``method`` that brings the model to the FLOPs target.

    Args:
        groups: The weight groups.
        method: "spr" or "dpr".
        speedup: Full FLOPs / pruned FLOPs to reach; or
        target_flops: the fraction of the full FLOPs to keep.
        convention: How FLOPs are counted. Defaults to "standard".
        min_keep: Groups every layer keeps. Defaults to 1.

    Raises:
        PlanError: Both or neither target; a target the full model already meets; no
            regularized layer; a target that removing every group cannot reach.
    """
    asked, fraction = _checked_target(groups, speedup, target_flops)
    full = count_costs(groups.channels.graph, convention).totals.flops
    target = fraction * full
    unit = _unit_ratios(groups, method)
    top = 1.0 / float(unit.min()) if unit.min() > 0 else 1.0

    def select(scale: float) -> tuple[float, np.ndarray, float]:
        ratios = np.clip(scale * top * unit, 0.0, 1.0)
        due = due_counts(groups, ratios, min_keep)
        return scale * top, ratios, predicted_flops(groups, due, convention)

    found = lowest_accepted(select, lambda chosen: chosen[2] <= target * (1 + 1e-12))
    if found is None:
        smallest = select(1.0)[2]
        raise PlanError(_unreachable(asked, groups, smallest, full))
    prune_ratio, ratios, flops = found[1]
    return Allocation(
        method=method,
        prune_ratio=prune_ratio,
        ratios=tuple(float(r) for r in ratios),
        due=tuple(int(d) for d in due_counts(groups, ratios, min_keep)),
        full_flops=int(full),
        target_flops=target,
        predicted_flops=flops,
        convention=convention,
    )


def _unreachable(asked: str, groups: WeightGroups, smallest: float, full: float) -> str:
    left = groups.left_alone
    why = ""
    if left:
        reasons = sorted({reason for _, reason in left})
        why = (
            f"; {len(left)} convolution(s) are kept whole ({reasons[0]}"
            f"{', ...' if len(reasons) > 1 else ''}; `ranp-onnx explain` says why)"
        )
    return (
        f"{asked} is not reachable at `granularity` {groups.granularity}: removing all but "
        f"one group of every regularized layer leaves {smallest / full:.1%} of the FLOPs "
        f"({full / smallest:.2f}x){why}"
    )


def paper_ratios(groups: WeightGroups, speedup: float) -> np.ndarray:
    """DPR's ratios at the paper's ``pr = 1 - 1/speedup`` (its Table 1), unclipped."""
    return (1.0 - 1.0 / speedup) * _unit_ratios(groups, "dpr")
