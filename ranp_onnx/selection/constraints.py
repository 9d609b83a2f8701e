"""Stage 4, select: which units to keep, from scores, a sparsity and the constraints.

Two ways to choose, and the constraints that always apply afterwards:

- :func:`global_keep` (vanilla, weighted, RANP, random, taylor, l1): the reference's
  global top-k. ``k = floor(N (1 - sparsity))`` neurons; the threshold is the score at
  which the units taken in descending order reach ``k`` neurons; every unit scoring at
  least the threshold is kept (ties kept). On a network without coupled channels every
  unit is one neuron and this is exactly the reference. One deviation: when the threshold
  is 0 (many units without any gradient signal, e.g. dead ReLUs on one small batch), the
  reference keeps every zero and may prune nothing at all; here the zero-score units are
  taken in a seeded random order until ``k`` neurons are kept.
- :func:`per_group_keep` (layerwise, spr, dpr): a count per group, the best units first.

:func:`apply_constraints`: fixed units (graph outputs, unprunable groups, ``--keep``) are
kept; a group left with fewer than ``min_channels`` units gets its best ones back (the
layer is *infeasible* in the paper's sense, which :class:`Selection` records);
grouped-convolution blocks keep equal counts; ``round_to`` rounds each group's count up.
Each step only adds units in descending score order, so a higher sparsity always keeps a
subset of a lower one: FLOPs and memory never increase with sparsity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..analysis.channels import ChannelAnalysis


@dataclass(frozen=True)
class Selection:
    """Which units are kept.

    Attributes:
        keep: Keep flag per unit.
        emptied_groups: Groups the ranking alone would have emptied (infeasible layers
            in the paper's sense), rescued by ``min_channels``.
        threshold: The global score threshold, where the method has one.
        scores: The method's score per unit (zeros where it has none, e.g. applied plans).
    """

    keep: np.ndarray
    emptied_groups: tuple[int, ...]
    threshold: float | None
    scores: np.ndarray

    @property
    def feasible(self) -> bool:
        """True if the ranking emptied no layer (the paper's feasibility)."""
        return not self.emptied_groups


def candidate_units(channels: ChannelAnalysis, excluded: np.ndarray) -> np.ndarray:
    """Units that hold neurons and are not excluded from the ranking (``--ignore``)."""
    return np.flatnonzero((channels.unit_neurons > 0) & ~excluded)


def global_keep(
    channels: ChannelAnalysis,
    scores: np.ndarray,
    sparsity: float,
    excluded: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, float | None]:
    """The reference's global top-k over units, weighted by their neuron counts.

    Args:
        channels: The channel analysis.
        scores: Score per unit, >= 0 (units without neurons are ignored).
        sparsity: Fraction of the N neurons to remove.
        excluded: Units left out of N and of the ranking (kept).
        seed: Order in which zero-score units are taken when the threshold is 0.
            Defaults to 0.

    Returns:
        Keep flags (before constraints) and the threshold.
    """
    candidates = candidate_units(channels, excluded)
    neurons = channels.unit_neurons[candidates]
    total = int(neurons.sum())
    target = math.floor(total * (1.0 - sparsity) + 1e-9)
    keep = np.zeros(channels.unit_count, dtype=bool)
    if target <= 0 or candidates.size == 0:
        return keep, None
    order = np.argsort(-scores[candidates], kind="stable")
    reached = int(np.searchsorted(np.cumsum(neurons[order]), target))
    threshold = float(scores[candidates[order[min(reached, order.size - 1)]]])
    if threshold > 0:
        keep[candidates[scores[candidates] >= threshold]] = True
        return keep, threshold
    positive = scores[candidates] > 0
    keep[candidates[positive]] = True
    left = target - int(neurons[positive].sum())
    zeros = candidates[~positive]
    zeros = zeros[np.random.default_rng(seed).permutation(zeros.size)]
    taken = int(np.searchsorted(np.cumsum(channels.unit_neurons[zeros]), left)) + 1
    keep[zeros[:taken]] = True
    return keep, 0.0


def per_group_keep(
    channels: ChannelAnalysis, scores: np.ndarray, keep_fraction: np.ndarray
) -> np.ndarray:
    """Keep ``ceil(width * fraction_g)`` best units in every group.

    Args:
        channels: The channel analysis.
        scores: Score per unit (ranks units inside a group).
        keep_fraction: Fraction to keep, per group.
    """
    keep = np.zeros(channels.unit_count, dtype=bool)
    for group in channels.groups:
        count = math.ceil(group.width * float(keep_fraction[group.id]) - 1e-9)
        keep[_best(group.units, scores, count)] = True
    return keep


def apply_constraints(
    channels: ChannelAnalysis,
    keep: np.ndarray,
    scores: np.ndarray,
    *,
    fixed: np.ndarray,
    min_channels: int = 1,
    round_to: int = 1,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Make a raw keep vector valid.

    Args:
        channels: The channel analysis.
        keep: Raw keep flags per unit.
        scores: Score per unit (decides which units are added back).
        fixed: Units that are always kept.
        min_channels: Smallest number of units a group keeps.
        round_to: Round each group's kept count up to a multiple of this.

    Returns:
        The constrained keep flags and the ids of groups the raw selection emptied.
    """
    keep = keep | fixed
    emptied = tuple(g.id for g in channels.groups if not keep[g.units].any())
    for segment in channels.segments:
        if not keep[segment].any():
            keep[_best(segment, scores, 1)] = True
    for group in channels.groups:
        units = group.units
        count = int(np.count_nonzero(keep[units]))
        wanted = max(count, min(min_channels, group.width))
        if round_to > 1:
            wanted = min(group.width, math.ceil(wanted / round_to) * round_to)
        if group.equal_blocks:
            per_block = max(int(np.count_nonzero(keep[block])) for block in group.equal_blocks)
            per_block = max(per_block, math.ceil(wanted / len(group.equal_blocks)))
            for block in group.equal_blocks:
                keep[_best(block, scores, per_block, already=keep)] = True
        elif wanted > count:
            keep[_best(units, scores, wanted, already=keep)] = True
    keep |= fixed
    return keep, emptied


def _best(
    units: np.ndarray, scores: np.ndarray, count: int, already: np.ndarray | None = None
) -> np.ndarray:
    """The ``count`` best units, those already kept first (so the result is a superset)."""
    if count <= 0:
        return units[:0]
    primary = (
        already[units].astype(np.int64) if already is not None else np.zeros(units.size, np.int64)
    )
    order = np.lexsort((np.arange(units.size), -scores[units], -primary))
    return units[order[:count]]
