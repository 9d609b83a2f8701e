"""The coefficient schedule: averaged L1 ranks, Eq. 3, and when a group counts as gone.

Per layer (the paper's section 2.1, as IncReg implements it): at every update the groups
are ranked by L1 norm (ascending; groups already removed lowest), each group's rank is
averaged over the updates so far, and the groups still present are sorted by that average
into positions ``r = 0 .. M-1``. With ``D`` groups still to go, a group's coefficient
changes by Eq. 3 with ``R N_g`` read as ``D`` and ``N_g`` as ``M``::

    delta(r) = A (1 - r / D)                    r <= D
    delta(r) = -A (r - D) / (M - D - 1)          r >  D

so the lowest group gains ``A`` per update, the group at position ``D`` nothing and the
highest loses ``A``; coefficients never go below 0. The paper leaves open when a group is
gone; here, as in its successors' code, a group among the ``D`` lowest is removed (its
parameters set to exactly 0 and kept there) as soon as either

- its coefficient reaches ``ceiling`` (IncReg's ``target_reg``, which it recommends at
  ``1e4 x A``; the coefficient never exceeds it), or
- its L1 norm is ``gone_ratio`` times below the mean norm of the layer's kept groups
  (GReg's ``mag_ratio_limit``, 1000; 0 turns this off).

When a layer's last due group is gone, the coefficients of its kept groups return to 0
(IncReg clears them too): from then on only the weight decay acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: IncReg's recommended ceiling, in units of A (``target_reg = 1e4 x AA``).
CEILING_PER_A = 1e4
#: GReg's magnitude ratio at which a group counts as gone.
GONE_RATIO = 1000.0


@dataclass(frozen=True)
class ScheduleSettings:
    """How coefficients grow and when a group is gone.

    Attributes:
        a: ``A`` of Eq. 3: the largest change of a coefficient per update.
        ceiling: A due group whose coefficient reaches this is removed.
        gone_ratio: A due group whose norm times this is at most the mean norm of the
            layer's kept groups is removed (0: never by this rule).
    """

    a: float
    ceiling: float
    gone_ratio: float = GONE_RATIO


def coefficient_increment(
    positions: np.ndarray, to_remove: int, remaining: int, a: float
) -> np.ndarray:
    """Eq. 3: the change of each group's coefficient from its position.

    Args:
        positions: Positions ``0 .. remaining-1`` by averaged rank.
        to_remove: ``D``, groups still to go (``R N_g`` in the paper).
        remaining: ``M``, groups still present (``N_g`` in the paper).
        a: ``A``.
    """
    r = np.asarray(positions, dtype=np.float64)
    if to_remove <= 0:
        return np.zeros_like(r)
    above = remaining - to_remove - 1
    lower = a * (1.0 - r / to_remove)
    upper = -a * (r - to_remove) / above if above > 0 else np.zeros_like(r)
    return np.where(r <= to_remove, lower, upper)


class LayerSchedule:
    """The coefficients, averaged ranks and removals of one layer's groups.

    Attributes:
        due: Groups this layer is to lose.
        coefficients: ``lambda_g`` per group.
        rank_sum: Sum of each group's ranks over the updates.
        updates: Updates so far.
        removed: True for removed groups.
        removed_at: Iteration at which each group was removed (-1: present).
        removed_norm: Its L1 norm just before it was zeroed (NaN: present).
        removed_ratio: That norm over the mean norm of the kept groups then.
        forced: True for groups removed by :meth:`force` before they were gone.
    """

    def __init__(self, size: int, due: int) -> None:
        self.due = int(due)
        self.coefficients = np.zeros(size)
        self.rank_sum = np.zeros(size)
        self.updates = 0
        self.removed = np.zeros(size, dtype=bool)
        self.removed_at = np.full(size, -1, dtype=np.int64)
        self.removed_norm = np.full(size, np.nan)
        self.removed_ratio = np.full(size, np.nan)
        self.forced = np.zeros(size, dtype=bool)

    @property
    def to_remove(self) -> int:
        """Groups still to go."""
        return self.due - int(self.removed.sum())

    def positions(self, norms: np.ndarray) -> np.ndarray:
        """The groups still present, lowest averaged rank first (ties: norm, then index)."""
        alive = np.flatnonzero(~self.removed)
        average = self.rank_sum[alive] / max(self.updates, 1)
        return alive[np.lexsort((alive, norms[alive], average))]

    def update(self, norms: np.ndarray, iteration: int, settings: ScheduleSettings) -> np.ndarray:
        """Rank, average, change the coefficients and remove what is gone.

        Args:
            norms: L1 norm of every group (removed groups' are 0).
            iteration: The training iteration, recorded with removals.
            settings: A, the ceiling and the gone ratio.

        Returns:
            The groups removed by this update.
        """
        size = norms.size
        ranks = np.empty(size)
        ranks[np.lexsort((np.arange(size), norms, ~self.removed))] = np.arange(size)
        self.rank_sum += ranks
        self.updates += 1
        to_remove = self.to_remove
        if to_remove <= 0:
            return np.zeros(0, dtype=np.int64)
        ordered = self.positions(norms)
        delta = coefficient_increment(np.arange(ordered.size), to_remove, ordered.size, settings.a)
        self.coefficients[ordered] = np.clip(
            self.coefficients[ordered] + delta, 0.0, settings.ceiling
        )
        candidates = ordered[:to_remove]
        kept_mean = float(norms[ordered[to_remove:]].mean()) if ordered.size > to_remove else 0.0
        gone = self.coefficients[candidates] >= settings.ceiling
        if settings.gone_ratio > 0:
            gone |= norms[candidates] * settings.gone_ratio <= kept_mean
        return self._remove(candidates[gone], norms, kept_mean, iteration, forced=False)

    def force(self, norms: np.ndarray, iteration: int) -> np.ndarray:
        """Remove the due groups that are not gone yet, lowest averaged rank first."""
        ordered = self.positions(norms)
        to_remove = self.to_remove
        if to_remove <= 0:
            return np.zeros(0, dtype=np.int64)
        kept_mean = float(norms[ordered[to_remove:]].mean()) if ordered.size > to_remove else 0.0
        return self._remove(ordered[:to_remove], norms, kept_mean, iteration, forced=True)

    def _remove(
        self, groups: np.ndarray, norms: np.ndarray, kept_mean: float, iteration: int, forced: bool
    ) -> np.ndarray:
        self.removed[groups] = True
        self.removed_at[groups] = iteration
        self.removed_norm[groups] = norms[groups]
        self.removed_ratio[groups] = norms[groups] / kept_mean if kept_mean > 0 else np.nan
        self.forced[groups] = forced
        if self.to_remove <= 0:
            self.coefficients[~self.removed] = 0.0
        return groups

    def progress(self, ceiling: float) -> float:
        """A rough fraction done: removed groups, plus the due groups' way to the ceiling."""
        if self.due <= 0:
            return 1.0
        present = np.flatnonzero(~self.removed)
        highest = np.sort(self.coefficients[present])[::-1][: self.to_remove]
        climbing = float(np.minimum(highest / ceiling, 1.0).sum()) if ceiling > 0 else 0.0
        return (int(self.removed.sum()) + climbing) / self.due

    def state(self) -> dict[str, Any]:
        """Everything needed to continue, as numpy arrays and ints."""
        return {
            "due": self.due,
            "updates": self.updates,
            "coefficients": self.coefficients.copy(),
            "rank_sum": self.rank_sum.copy(),
            "removed": self.removed.copy(),
            "removed_at": self.removed_at.copy(),
            "removed_norm": self.removed_norm.copy(),
            "removed_ratio": self.removed_ratio.copy(),
            "forced": self.forced.copy(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`.

        Raises:
            ValueError: The state is for a layer of another size.
        """
        if np.asarray(state["coefficients"]).shape != self.coefficients.shape:
            raise ValueError("the saved schedule is for a layer of another size")
        self.due = int(state["due"])
        self.updates = int(state["updates"])
        for name in (
            "coefficients",
            "rank_sum",
            "removed",
            "removed_at",
            "removed_norm",
            "removed_ratio",
            "forced",
        ):
            current = getattr(self, name)
            setattr(self, name, np.asarray(state[name]).astype(current.dtype).copy())
