"""``--plot`` on ``report`` and ``prune``: the path checks and the scoring pass of report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ..analysis.costs import CostReport
from ..errors import PlanError, RanpError
from ..ir.graph import GraphAnalysis
from ..ir.save import check_output_path
from ..pipeline import PruneOptions, PruneResult, Scoring, score_model
from ..reporting.plots import PlotData, import_pyplot, plot_data, render_plots
from ..selection.criteria import default_lambda


def check_plot_path(
    plot: str | None, *, force: bool, inputs: Sequence[str], taken: Sequence[Path] = ()
) -> Path | None:
    """Check the ``--plot`` path (and that matplotlib imports) before any work is done.

    Raises:
        OutputExistsError: The file exists and ``--force`` was not given.
        RanpError: It is an input or another output of the command, or matplotlib is
            missing.
    """
    if plot is None:
        return None
    target = check_output_path(plot, force=force, inputs=inputs)
    if target.resolve() in {path.resolve() for path in taken}:
        raise RanpError(f"--plot {plot}: the same file as another output")
    import_pyplot()
    return target


def score_for_plot(
    graph: GraphAnalysis, source: str | None, ignore_index: int | None
) -> tuple[Scoring, str]:
    """One scoring pass for the importance panels of ``report --plot``; and its description.

    Args:
        graph: The full model.
        source: ``--data`` (None: one batch of random inputs).
        ignore_index: ``--ignore-index``.
    """
    from ..scoring.data import open_data

    data = open_data(source or "random", graph, ignore_index=ignore_index)
    options = PruneOptions(method="vanilla", lam=default_lambda(graph), ignore_index=ignore_index)
    scoring = score_model(graph, data, options, total_batches=len(data))
    described = "random data (--data random)" if source in (None, "random") else data.describe()
    return scoring, described


def write_plot(data: PlotData, path: Path | None, *, quiet: bool) -> None:
    """Render the figure and say where it went (unless ``quiet``: JSON on stdout)."""
    if path is None:
        return
    render_plots(data, path)
    if not quiet:
        click.echo(f"plotted       {path}")


def prune_figure(
    graph: GraphAnalysis, scoring: Scoring, result: PruneResult, options: PruneOptions
) -> PlotData:
    """The figure of ``prune --plot``: this run's scores, plan and costs."""
    method = options.method
    third = method if method in ("ranp-f", "ranp-m") else "ranp-f"
    achieved = result.plan.achieved
    title = (
        f"{graph.model.name}: --method {method}, {achieved['neurons_kept']} of "
        f"{achieved['neurons']} neurons kept (sparsity {100 * achieved['neuron_sparsity']:.2f}%)"
    )
    return plot_data(
        result.before,
        after=result.after,
        scoring=scoring,
        plan=result.plan,
        title=title,
        methods=("vanilla", "weighted", third),
        options=options.selection,
    )


def report_figure(
    graph: GraphAnalysis,
    before: CostReport,
    after: CostReport | None,
    *,
    source: str | None,
    ignore_index: int | None,
) -> PlotData:
    """The figure of ``report --plot``: importance scored on ``source`` (default random).

    Args:
        graph: The full model (the ``--compare`` model where there is one).
        before: Its costs.
        after: The pruned model's costs (``report PRUNED --compare FULL``), else None.
        source: ``--data``.
        ignore_index: ``--ignore-index``.
    """
    scoring: Scoring | None = None
    try:
        scoring, described = score_for_plot(graph, source, ignore_index)
        lam = default_lambda(graph)
        title = f"{graph.model.name}: neuron importance scored on {described}, RANP lambda {lam:g}"
    except PlanError as error:  # every layer is kept whole: nothing to score
        title = f"{graph.model.name}: no neuron importance ({error})"
    if after is not None:
        title = f"{after.model} against {before.model}\n{title}"
    return plot_data(before, after=after, scoring=scoring, title=title)
