"""The paper's figures for any model, as one PNG.

:func:`plot_data` gathers what the figures show, as plain numbers (so tests can check
them): per-layer neuron importance with each layer's mean for vanilla, weighted and RANP
scores (the paper's Fig. 3), the channels each layer keeps against its full width
(Fig. 11), and each weighted layer's FLOPs and output memory before and after pruning.
:func:`render_plots` draws them with matplotlib, which is imported only there: the package
and the CLI work without it (``pip install 'ranp-onnx[plots]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.costs import CostReport, LayerCost
from ..errors import RanpError
from ..ir.units import MB
from ..ops import rule_for
from ..selection.criteria import criterion
from ..selection.options import SelectionOptions
from ..selection.plan import PrunePlan

if TYPE_CHECKING:
    from ..scoring.statistics import Scoring

#: The methods of the paper's Fig. 3, left to right.
IMPORTANCE_METHODS = ("vanilla", "weighted", "ranp-f")
#: Pixels per inch of the PNG.
DPI = 100


@dataclass(frozen=True)
class ImportanceSeries:
    """One method's neuron scores, layer by layer (one panel of Fig. 3).

    Attributes:
        method: The criterion.
        layers: Scored layer names, in topological order.
        scores: The layer's neuron scores, one array per layer.
    """

    method: str
    layers: tuple[str, ...]
    scores: tuple[np.ndarray, ...]

    @property
    def means(self) -> np.ndarray:
        """The mean score of every layer."""
        return np.array([float(np.mean(s)) if s.size else 0.0 for s in self.scores])


@dataclass(frozen=True)
class ChannelCounts:
    """Output channels per weighted layer, full and kept (Fig. 11)."""

    layers: tuple[str, ...]
    full: tuple[int, ...]
    kept: tuple[int, ...]


@dataclass(frozen=True)
class LayerResources:
    """FLOPs and output memory (MB) of each weighted layer; ``after`` is None without one."""

    layers: tuple[str, ...]
    flops_before: tuple[int, ...]
    memory_before: tuple[float, ...]
    flops_after: tuple[int, ...] | None
    memory_after: tuple[float, ...] | None


@dataclass(frozen=True)
class PlotData:
    """Everything the figure shows.

    Attributes:
        title: The figure's title.
        importance: One series per method (empty: no importance panels).
        channels: Full vs kept channels (None without a pruned model).
        resources: Per-layer FLOPs and memory.
        convention: The counting convention of the costs.
        totals: Whole-model (GFLOPs, memory MB) before, and after where there is an after.
    """

    title: str
    importance: tuple[ImportanceSeries, ...]
    channels: ChannelCounts | None
    resources: LayerResources
    convention: str
    totals: tuple[tuple[float, float], ...]


def importance_series(
    scoring: Scoring,
    methods: Sequence[str] = IMPORTANCE_METHODS,
    options: SelectionOptions | None = None,
) -> tuple[ImportanceSeries, ...]:
    """Neuron scores of every scored layer under each method, from one scoring pass.

    Empty if the scoring has no gradient statistics (a method such as ``l1`` scored it).
    ``options`` give the importance variant and RANP's lambda (defaults: the paper's).
    """
    options = options or SelectionOptions()
    if scoring.stats.batches == 0:
        return ()
    layers = tuple(layer.node for layer in scoring.channels.layers)
    return tuple(
        ImportanceSeries(
            method=method,
            layers=layers,
            scores=tuple(criterion(method).layer_scores(scoring, options)),
        )
        for method in methods
    )


def channels_from_plan(plan: PrunePlan) -> ChannelCounts:
    """Full and kept output channels of every scored layer of a plan."""
    return ChannelCounts(
        layers=tuple(str(entry["node"]) for entry in plan.layers),
        full=tuple(int(entry["channels"]) for entry in plan.layers),
        kept=tuple(len(entry["kept"]) for entry in plan.layers),
    )


def _weighted_layers(report: CostReport) -> list[LayerCost]:
    """The nodes whose op rule has a weight input (Conv, ConvTranspose, Gemm, MatMul)."""
    return [layer for layer in report.layers if layer.params and has_weight(layer.op_type)]


def has_weight(op_type: str, domain: str = "") -> bool:
    """True if the op's rule gives it a weight input (its output channels are neurons)."""
    rule = rule_for(op_type, domain)
    return rule is not None and rule.weight_input is not None


def channels_from_reports(before: CostReport, after: CostReport) -> ChannelCounts:
    """Full and kept output channels of the weighted layers both models have (by node name)."""
    remaining = {layer.name: layer for layer in _weighted_layers(after)}
    pairs = [(a, remaining[a.name]) for a in _weighted_layers(before) if a.name in remaining]
    return ChannelCounts(
        layers=tuple(a.name for a, _ in pairs),
        full=tuple(_channels_out(a) for a, _ in pairs),
        kept=tuple(_channels_out(b) for _, b in pairs),
    )


def _channels_out(layer: LayerCost) -> int:
    return int(layer.geometry.channels_out or 0) if layer.geometry is not None else 0


def layer_resources(before: CostReport, after: CostReport | None) -> LayerResources:
    """FLOPs and output memory of every weighted layer, before and (by node name) after."""
    layers = _weighted_layers(before)
    remaining = {layer.name: layer for layer in after.layers} if after is not None else {}
    after_layers = [remaining.get(layer.name) for layer in layers]
    return LayerResources(
        layers=tuple(layer.name for layer in layers),
        flops_before=tuple(layer.flops for layer in layers),
        memory_before=tuple(layer.memory_bytes / MB for layer in layers),
        flops_after=tuple(b.flops if b else 0 for b in after_layers) if after else None,
        memory_after=tuple(b.memory_bytes / MB if b else 0.0 for b in after_layers)
        if after
        else None,
    )


def plot_data(
    before: CostReport,
    *,
    after: CostReport | None = None,
    scoring: Scoring | None = None,
    plan: PrunePlan | None = None,
    title: str = "",
    methods: Sequence[str] = IMPORTANCE_METHODS,
    options: SelectionOptions | None = None,
) -> PlotData:
    """Gather the figures' numbers.

    Args:
        before: Costs of the full model.
        after: Costs of the pruned model, if there is one.
        scoring: The scoring pass, for the importance panels (None: no such panels).
        plan: The plan, for the retained channels (else they come from the two reports).
        title: The figure's title. Defaults to the model's name.
        methods: The importance panels' methods. Defaults to vanilla, weighted, RANP-f.
        options: The importance variant and lambda they use. Defaults to the paper's.
    """
    channels = None
    if plan is not None:
        channels = channels_from_plan(plan)
    elif after is not None:
        channels = channels_from_reports(before, after)
    totals = [(before.totals.gflops, before.totals.memory_mb)]
    if after is not None:
        totals.append((after.totals.gflops, after.totals.memory_mb))
    return PlotData(
        title=title or before.model,
        importance=importance_series(scoring, methods, options) if scoring is not None else (),
        channels=channels,
        resources=layer_resources(before, after),
        convention=before.convention,
        totals=tuple(totals),
    )


def import_pyplot() -> Any:
    """Import matplotlib's pyplot on the file-only Agg backend, or explain how to install it.

    Raises:
        RanpError: matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise RanpError("`plot` needs matplotlib: pip install 'ranp-onnx[plots]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def render_plots(data: PlotData, path: str | os.PathLike[str]) -> Path:
    """Draw the figures into one PNG at ``path`` (written atomically; the caller checks it).

    Returns:
        The path written.
    """
    from ..ir.save import atomic_path
    from .plot_panels import draw_figure

    pyplot = import_pyplot()
    figure = draw_figure(pyplot, data)
    target = Path(path)
    try:
        with atomic_path(target) as temporary:
            figure.savefig(temporary, format="png", dpi=DPI)
    finally:
        pyplot.close(figure)
    return target
