"""The panels of :mod:`ranp_onnx.reporting.plots`, drawn with matplotlib.

Imported only by :func:`ranp_onnx.reporting.plots.render_plots`, after matplotlib was found.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .plots import ChannelCounts, ImportanceSeries, LayerResources, PlotData

#: Colours: the full model, the pruned one, the layer means, alternate layers' neurons.
FULL, PRUNED, MEAN = "#c8c8c8", "#1f77b4", "#d62728"
NEURONS = ("#1f77b4", "#7fb2d9")
WIDTH = 16.0
#: Characters per line of the figure's title.
TITLE_WIDTH = 120
#: Layers above which tick labels are indices only.
NAMED_TICKS = 40
TITLES = {
    "vanilla": "vanilla NP",
    "weighted": "weighted NP",
    "ranp-f": "RANP-f",
    "ranp-m": "RANP-m",
}


#: Longest tick label: deeper names keep their last characters, so the panels keep their height.
LABEL_CHARACTERS = 32


def short_name(node: str) -> str:
    """``/encoders.0/conv1/conv/Conv`` -> ``encoders.0/conv1/conv`` (torch exports' names).

    Names longer than :data:`LABEL_CHARACTERS` keep their end, after an ellipsis.
    """
    parts = node.strip("/").split("/")
    if len(parts) > 1 and parts[-1][:1].isupper():
        parts = parts[:-1]
    name = "/".join(parts) or node
    if len(name) > LABEL_CHARACTERS:
        name = "\u2026" + name[-(LABEL_CHARACTERS - 1) :]
    return name


def draw_figure(pyplot: Any, data: PlotData) -> Any:
    """Return a matplotlib figure with every panel ``data`` has."""
    rows = [("importance", 3.4)] if data.importance else []
    rows += [("channels", 4.2)] if data.channels is not None else []
    rows += [("resources", 4.2)]
    height = sum(h for _, h in rows) + 0.6
    figure = pyplot.figure(figsize=(WIDTH, height), layout="constrained")
    title = "\n".join(textwrap.fill(line, TITLE_WIDTH) for line in data.title.splitlines())
    figure.suptitle(title, fontsize=15, fontweight="bold")
    subfigures = figure.subfigures(len(rows), 1, height_ratios=[h for _, h in rows])
    for (kind, _), subfigure in zip(rows, np.atleast_1d(subfigures)):
        if kind == "importance":
            axes = subfigure.subplots(1, len(data.importance))
            for axis, series in zip(np.atleast_1d(axes), data.importance):
                _importance(axis, series)
        elif kind == "channels" and data.channels is not None:
            _channels(subfigure.subplots(1, 1), data.channels)
        else:
            _resources(subfigure.subplots(1, 2), data)
    return figure


def _importance(axis: Any, series: ImportanceSeries) -> None:
    """Fig. 3: every neuron's score, layer by layer, with the layer mean in red."""
    start = 0
    for index, scores in enumerate(series.scores):
        x = np.arange(start, start + scores.size)
        axis.scatter(x, scores, s=4, color=NEURONS[index % 2], linewidths=0)
        if scores.size:
            axis.hlines(float(scores.mean()), x[0], x[-1] + 1, colors=MEAN, linewidth=2)
        start += scores.size
    axis.plot([], [], color=MEAN, linewidth=2, label="layer mean")
    axis.set_title(f"{TITLES.get(series.method, series.method)}: neuron importance")
    axis.set_xlabel(f"neuron ({len(series.scores)} layers, input to output)")
    axis.set_xlim(0, max(start, 1))
    axis.set_ylim(bottom=0)
    axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axis.legend(loc="upper left", fontsize=9)
    axis.grid(axis="y", alpha=0.3)


def _ticks(axis: Any, names: Sequence[str]) -> None:
    positions = np.arange(len(names))
    if len(names) <= NAMED_TICKS:
        axis.set_xticks(positions, [short_name(n) for n in names], rotation=90, fontsize=7)
    else:
        step = int(np.ceil(len(names) / NAMED_TICKS))
        axis.set_xticks(positions[::step], [str(i) for i in positions[::step]], fontsize=8)
        axis.set_xlabel("layer (index, input to output)")
    axis.set_xlim(-0.6, len(names) - 0.4)


def _overlaid_bars(
    axis: Any,
    names: Sequence[str],
    before: Sequence[float],
    after: Sequence[float] | None,
    labels: tuple[str, str],
) -> None:
    """The full value as a grey bar, the pruned value as a narrower blue bar inside it."""
    positions = np.arange(len(names))
    axis.bar(positions, before, width=0.8, color=FULL, label=labels[0])
    if after is not None:
        axis.bar(positions, after, width=0.5, color=PRUNED, label=labels[1])
    _ticks(axis, names)
    axis.margins(y=0.18)  # headroom for the legend
    axis.legend(loc="upper left", fontsize=9)
    axis.grid(axis="y", alpha=0.3)


def _channels(axis: Any, counts: ChannelCounts) -> None:
    """Fig. 11: output channels per layer, full and kept."""
    full, kept = sum(counts.full), sum(counts.kept)
    _overlaid_bars(axis, counts.layers, counts.full, counts.kept, ("full", "kept"))
    axis.set_title(
        f"retained channels per layer: {kept} of {full} neurons kept "
        f"({100 * (1 - kept / full):.1f}% removed)"
        if full
        else "retained channels per layer"
    )
    axis.set_ylabel("output channels")


def _resources(axes: Any, data: PlotData) -> None:
    resources: LayerResources = data.resources
    before, after = data.totals[0], data.totals[1] if len(data.totals) > 1 else None
    labels = ("full", "pruned")
    flops_after = (
        [f / 1e9 for f in resources.flops_after] if resources.flops_after is not None else None
    )
    _overlaid_bars(
        axes[0], resources.layers, [f / 1e9 for f in resources.flops_before], flops_after, labels
    )
    _overlaid_bars(
        axes[1], resources.layers, resources.memory_before, resources.memory_after, labels
    )
    for axis, index, unit, what in ((axes[0], 0, "GFLOPs", "FLOPs"), (axes[1], 1, "MB", "memory")):
        total = _amount(before[index]) + (f" -> {_amount(after[index])}" if after else "")
        axis.set_title(f"{what} per weighted layer (model total {total} {unit}, {data.convention})")
        axis.set_ylabel(f"{unit} (log scale)" if _log_scale(axis) else unit)


def _log_scale(axis: Any) -> bool:
    """Log y axis where the bars span a decade or more; linear (returns False) otherwise.

    On a log axis, labels sit at 1, 2, 5 x 10^k over a narrow range, at decades otherwise.
    """
    heights = [patch.get_height() for patch in axis.patches if patch.get_height() > 0]
    if not heights or max(heights) < 10 * min(heights):
        return False
    axis.set_yscale("log")
    low, high = axis.get_ylim()
    if high / max(low, 1e-300) < 300:
        axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    axis.yaxis.set_minor_formatter(NullFormatter())
    return True


def _amount(value: float) -> str:
    """Two decimals, as the reports print them; three significant digits below 0.1."""
    return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.3g}"
