"""What a run remembers: the loss curve and the traced groups' norms and coefficients.

Both are thinned as they grow, so that a run of a million iterations keeps a record of a
few thousand points: when a series reaches its limit, neighbouring points are merged
(losses averaged) or every other snapshot is dropped, and from then on points are taken
twice as far apart. Everything is plain JSON data; :meth:`History.state` goes into the
checkpoint and :meth:`History.to_json` into the record, which :func:`build_record`
assembles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..analysis.costs import CostReport
    from .finish import Finished
    from .regularizer import Regularizer

#: The ``format`` entry of the JSON record.
RECORD_FORMAT = "ranp-onnx-regularize/1"
#: Most loss points kept per phase.
MAX_LOSS_POINTS = 2000
#: Most schedule snapshots kept.
MAX_SNAPSHOTS = 400
#: Groups traced per layer in the snapshots.
TRACED_PER_LAYER = 12

PHASES = ("regularize", "finetune")


class LossCurve:
    """Mean loss over runs of ``stride`` iterations, thinned by merging neighbours."""

    def __init__(self) -> None:
        self.points: list[list[float]] = []
        self.stride = 1
        self._sum = 0.0
        self._count = 0

    def add(self, iteration: int, loss: float) -> None:
        """Add the loss of one iteration (numbered from 1)."""
        self._sum += loss
        self._count += 1
        if self._count >= self.stride:
            self.flush(iteration)

    def flush(self, iteration: int) -> None:
        """Close the current run of iterations as a point."""
        if self._count:
            self.points.append([float(iteration), self._sum / self._count])
            self._sum, self._count = 0.0, 0
        if len(self.points) > MAX_LOSS_POINTS:
            merged = []
            for first in range(0, len(self.points) - 1, 2):
                a, b = self.points[first], self.points[first + 1]
                merged.append([b[0], 0.5 * (a[1] + b[1])])
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged
            self.stride *= 2

    def state(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "points": self.points,
            "stride": self.stride,
            "sum": self._sum,
            "count": self._count,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`."""
        self.points = [list(map(float, p)) for p in state["points"]]
        self.stride = int(state["stride"])
        self._sum, self._count = float(state["sum"]), int(state["count"])


class History:
    """The loss per phase and snapshots of the schedule.

    Args:
        traced: Per regularized layer, the groups whose norm and coefficient are recorded.
    """

    def __init__(self, traced: list[list[int]]) -> None:
        self.losses = {phase: LossCurve() for phase in PHASES}
        self.traced = traced
        self.snapshots: list[dict[str, Any]] = []
        self.snapshot_stride = 1
        self._updates = 0

    @classmethod
    def tracing(cls, norms: list[np.ndarray]) -> History:
        """Trace up to TRACED_PER_LAYER groups per layer, evenly spread over the initial ranking."""
        traced = []
        for layer in norms:
            order = np.argsort(layer, kind="stable")
            picks = np.unique(np.linspace(0, order.size - 1, min(TRACED_PER_LAYER, order.size)))
            traced.append(sorted(int(order[int(p)]) for p in picks))
        return cls(traced)

    def snapshot(
        self,
        iteration: int,
        norms: list[np.ndarray],
        coefficients: list[np.ndarray],
        removed: list[int],
    ) -> None:
        """Record the traced groups at a schedule update (thinned)."""
        self._updates += 1
        if (self._updates - 1) % self.snapshot_stride:
            return
        self.snapshots.append(
            {
                "iteration": iteration,
                "norms": [[float(n[g]) for g in picks] for n, picks in zip(norms, self.traced)],
                "coefficients": [
                    [float(c[g]) for g in picks] for c, picks in zip(coefficients, self.traced)
                ],
                "removed": list(removed),
            }
        )
        if len(self.snapshots) > MAX_SNAPSHOTS:
            self.snapshots = self.snapshots[::2]
            self.snapshot_stride *= 2

    def state(self) -> dict[str, Any]:
        """JSON-ready state (for checkpoints)."""
        return {
            "losses": {phase: curve.state() for phase, curve in self.losses.items()},
            "traced": self.traced,
            "snapshots": self.snapshots,
            "snapshot_stride": self.snapshot_stride,
            "updates": self._updates,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> History:
        """Rebuild from :meth:`state`."""
        history = cls([list(map(int, picks)) for picks in state["traced"]])
        for phase, curve in state["losses"].items():
            history.losses[phase].load(curve)
        history.snapshots = list(state["snapshots"])
        history.snapshot_stride = int(state["snapshot_stride"])
        history._updates = int(state["updates"])
        return history

    def to_json(self) -> dict[str, Any]:
        """The record's ``history`` entry."""
        return {
            "loss": {phase: curve.points for phase, curve in self.losses.items()},
            "traced_groups": self.traced,
            "snapshots": self.snapshots,
        }


def build_record(
    *,
    model: str,
    settings: dict[str, Any],
    regularizer: Regularizer,
    finished: Finished,
    before: CostReport,
    after: CostReport,
    sparse_flops: int,
    iterations: dict[str, int],
    history: History,
    in_place: bool,
    seconds: float,
) -> dict[str, Any]:
    """The JSON record of a finished run (what ``--record`` writes)."""
    groups, allocation = regularizer.groups, regularizer.allocation
    layers, removals = _layer_entries(regularizer)
    totals = before.totals
    removed = _removed_summary(layers, removals)
    removed.update(due=allocation.due_total, channels_removed=finished.removed_units)
    return {
        "format": RECORD_FORMAT,
        "model": model,
        "settings": settings,
        "granularity": groups.granularity,
        "allocation": {
            "method": allocation.method,
            "prune_ratio": allocation.prune_ratio,
            "target_flops": allocation.target_flops,
            "predicted_flops": allocation.predicted_flops,
            "layers": layers,
            "left_alone": [{"layer": n, "reason": r} for n, r in groups.left_alone],
        },
        "removed": removed,
        "removals": removals,
        "iterations": iterations,
        "before": totals.to_json(),
        "after": after.totals.to_json(),
        "sparse_flops": sparse_flops,
        "speedup": totals.flops / max(sparse_flops, 1),
        "convention": before.convention,
        "validation": finished.validation.to_json() if finished.validation else None,
        "in_place": in_place,
        "history": history.to_json(),
        "seconds": seconds,
    }


def _layer_entries(regularizer: Regularizer) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per layer: its allocation and outcome, and every removal's iteration and norm."""
    layers = []
    removals = []
    for layer, schedule, ratio in zip(
        regularizer.groups.layers, regularizer.schedules, regularizer.allocation.ratios
    ):
        gone = np.flatnonzero(schedule.removed)
        layers.append(
            {
                "name": layer.name,
                "nodes": list(layer.nodes),
                "groups": layer.size,
                "ratio": ratio,
                "due": schedule.due,
                "removed": int(gone.size),
                "forced": int(schedule.forced.sum()),
                "flops": layer.flops,
            }
        )
        removals.append(
            {
                "groups": gone.tolist(),
                "iteration": schedule.removed_at[gone].tolist(),
                "norm": _finite(schedule.removed_norm[gone]),
                "ratio_to_kept_mean": _finite(schedule.removed_ratio[gone]),
            }
        )
    return layers, removals


def _removed_summary(
    layers: list[dict[str, Any]], removals: list[dict[str, Any]]
) -> dict[str, Any]:
    """How many groups went, and how far from 0 they were when they went."""
    norms = [x for entry in removals for x in entry["norm"] if x is not None]
    ratios = [x for entry in removals for x in entry["ratio_to_kept_mean"] if x is not None]
    return {
        "groups": sum(entry["removed"] for entry in layers),
        "forced": sum(entry["forced"] for entry in layers),
        "max_norm_at_removal": max(norms, default=None),
        "max_ratio_to_kept_mean": max(ratios, default=None),
        "median_ratio_to_kept_mean": float(np.median(ratios)) if ratios else None,
    }


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]
