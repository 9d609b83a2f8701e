"""The figure of ``regularize --plot``: the loss, and each layer's groups over iterations.

:func:`figure_data` takes everything from the JSON record (so a record can be plotted
again later, and tests check the numbers): the training loss of both phases, and per
regularized layer the traced groups' L1 norms (relative to their first value) and
coefficients at each snapshot, each group marked by whether it was removed.
:func:`render` draws them with matplotlib, imported only there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..ir.save import atomic_path
from ..reporting.plots import DPI, import_pyplot

#: Layers drawn at most (the ones losing the most groups).
MAX_LAYERS = 8


@dataclass(frozen=True)
class LayerTrace:
    """One layer's traced groups over the snapshots.

    Attributes:
        name: The layer.
        iterations: Iteration of each snapshot.
        norms: ``[snapshots, groups]`` L1 norms over each group's first value.
        coefficients: ``[snapshots, groups]`` coefficients.
        removed: Per traced group, True if it was removed.
        due: Groups the layer was to lose, of ``size``.
        size: Its groups.
    """

    name: str
    iterations: np.ndarray
    norms: np.ndarray
    coefficients: np.ndarray
    removed: np.ndarray
    due: int
    size: int


@dataclass(frozen=True)
class RegularizationFigure:
    """What the figure shows.

    Attributes:
        title: One line.
        loss: Per phase, ``[points, 2]`` (iteration, mean loss).
        layers: The layers drawn.
        ceiling: The coefficient ceiling.
    """

    title: str
    loss: Mapping[str, np.ndarray]
    layers: tuple[LayerTrace, ...]
    ceiling: float


def figure_data(record: Mapping[str, Any]) -> RegularizationFigure:
    """The figure's numbers from a run's record."""
    history = record["history"]
    snapshots = history["snapshots"]
    iterations = np.array([s["iteration"] for s in snapshots], dtype=np.float64)
    layers = []
    for index, (entry, removal) in enumerate(
        zip(record["allocation"]["layers"], record["removals"])
    ):
        traced = history["traced_groups"][index]
        norms = np.array([s["norms"][index] for s in snapshots], dtype=np.float64)
        first = norms[0] if norms.size else np.ones(len(traced))
        relative = norms / np.where(first > 0, first, 1.0)
        coefficients = np.array([s["coefficients"][index] for s in snapshots], dtype=np.float64)
        gone = set(removal["groups"])
        layers.append(
            LayerTrace(
                name=entry["name"],
                iterations=iterations,
                norms=relative.reshape(len(snapshots), len(traced)),
                coefficients=coefficients.reshape(len(snapshots), len(traced)),
                removed=np.array([g in gone for g in traced], dtype=bool),
                due=int(entry["due"]),
                size=int(entry["groups"]),
            )
        )
    chosen = sorted(layers, key=lambda layer: -layer.due)[:MAX_LAYERS]
    order = {id(layer): i for i, layer in enumerate(layers)}
    chosen.sort(key=lambda layer: order[id(layer)])
    settings = record["settings"]
    title = (
        f"{record['model']}: --allocation {settings['allocation']} --granularity "
        f"{record['granularity']}, {record['removed']['groups']} of "
        f"{record['removed']['due']} due groups removed, {record['speedup']:.2f}x FLOPs"
    )
    loss = {
        phase: np.array(points, dtype=np.float64).reshape(-1, 2)
        for phase, points in history["loss"].items()
    }
    return RegularizationFigure(title, loss, tuple(chosen), float(settings["ceiling"]))


def render(figure: RegularizationFigure, path: str | os.PathLike[str]) -> Path:
    """Draw the figure into a PNG at ``path`` (written atomically)."""
    pyplot = import_pyplot()
    rows = 1 + len(figure.layers)
    canvas, axes = pyplot.subplots(rows, 2, figsize=(12, 2.4 * rows), squeeze=False)
    try:
        _draw_loss(axes[0, 0], figure)
        axes[0, 1].axis("off")
        axes[0, 1].text(0.0, 0.5, _legend_text(figure), va="center", fontsize=9)
        for row, layer in enumerate(figure.layers, start=1):
            _draw_layer(axes[row, 0], axes[row, 1], layer, figure.ceiling)
        canvas.suptitle(figure.title, fontsize=10)
        canvas.tight_layout()
        target = Path(path)
        with atomic_path(target) as temporary:
            canvas.savefig(temporary, format="png", dpi=DPI)
    finally:
        pyplot.close(canvas)
    return target


def _legend_text(figure: RegularizationFigure) -> str:
    return (
        "Left: each layer's traced groups, L1 norm over its first value (log scale);\n"
        "red: removed (its parameters set to 0 then), grey: kept.\n"
        f"Right: their coefficients; a group is removed at the ceiling {figure.ceiling:g}\n"
        "or once its norm is far below the kept groups'."
    )


def _draw_loss(axis: Any, figure: RegularizationFigure) -> None:
    colours = {"regularize": "tab:blue", "finetune": "tab:green"}
    for phase, points in figure.loss.items():
        if points.size:
            axis.plot(points[:, 0], points[:, 1], color=colours.get(phase), label=phase)
    axis.set_xlabel("iteration")
    axis.set_ylabel("training loss")
    axis.set_yscale("log")
    axis.legend(fontsize=8)


def _draw_layer(left: Any, right: Any, layer: LayerTrace, ceiling: float) -> None:
    for column in range(layer.norms.shape[1]):
        colour = "tab:red" if layer.removed[column] else "0.55"
        norms = np.maximum(layer.norms[:, column], 1e-6)
        left.plot(layer.iterations, norms, color=colour, linewidth=0.9)
        right.plot(layer.iterations, layer.coefficients[:, column], color=colour, linewidth=0.9)
    left.set_yscale("log")
    left.set_ylabel("L1 / first")
    left.set_title(f"{layer.name}: {layer.due} of {layer.size} groups due", fontsize=8)
    right.axhline(ceiling, color="black", linestyle=":", linewidth=0.8)
    right.set_ylabel("coefficient")
    for axis in (left, right):
        axis.set_xlabel("iteration", fontsize=8)
        axis.tick_params(labelsize=7)
