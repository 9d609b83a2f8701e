"""The pruning pipeline: load -> analyse -> score -> select -> rewrite -> validate -> report.

Only wiring lives here; every step is a stage module. :func:`prune` prunes at a sparsity or
a resource budget; it is :func:`score_model` (the gradient passes) followed by
:func:`prune_scored` (select, rewrite, validate), so that sweeps over methods and sparsities
score once. :func:`search_max_sparsity` is the paper's Algorithm 2 and :func:`apply_plan`
re-applies a saved plan. The bisections live in :mod:`ranp_onnx.selection.search`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .analysis.channels import ChannelAnalysis, analyse_channels, pruned_shapes
from .analysis.costs import Convention, CostReport, count_costs
from .analysis.shapes import analyse, require_convolution
from .errors import PlanError
from .ir.graph import GraphAnalysis
from .ir.load import LoadedModel
from .options import PruneOptions, check_options
from .rewrite.oracle import ValidationResult, validate
from .rewrite.surgery import rewrite
from .scoring.data import Batch
from .scoring.statistics import GradientStatistics, Progress, accumulate_gradients, layer_weights
from .selection.constraints import Selection, apply_constraints
from .selection.criteria import CriterionSettings, criterion
from .selection.plan import PrunePlan, build_plan, keep_from_plan
from .selection.search import highest_accepted, lowest_accepted


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` produced.

    Attributes:
        model: The pruned model.
        plan: The plan (also what ``--plan`` writes).
        before: Costs of the original.
        after: Costs of the pruned model.
        selection: The kept units and feasibility.
        validation: The oracle's result, or None if validation was off.
    """

    model: onnx.ModelProto
    plan: PrunePlan
    before: CostReport
    after: CostReport
    selection: Selection
    validation: ValidationResult | None


@dataclass(frozen=True)
class Scoring:
    """A model's channel groups and scoring statistics: all a selection needs."""

    channels: ChannelAnalysis
    stats: GradientStatistics
    settings: CriterionSettings
    excluded: np.ndarray
    fixed: np.ndarray


def score_model(
    graph: GraphAnalysis,
    data: Iterable[Batch] | None,
    options: PruneOptions,
    *,
    total_batches: int | None = None,
    progress: Progress | None = None,
) -> Scoring:
    """Analyse the channels and run the scoring passes the method needs.

    Raises:
        UnsupportedModelError: The graph has no convolution.
        PlanError: Nothing can be pruned, an unknown method or layer name, or the method
            needs data and none was given.
        DataError: The scoring data does not fit the model.
    """
    require_convolution(graph)
    channels = analyse_channels(graph)
    _require_prunable(channels)
    method = criterion(options.method)
    ignored = _layer_flags(channels, options.ignore, "--ignore")
    kept_whole = _layer_flags(channels, options.keep, "--keep")
    if method.needs_gradients:
        if data is None:
            raise PlanError(f"--method {options.method} needs --data")
        stats = accumulate_gradients(
            channels,
            data,
            options.loss,
            ignore_index=options.ignore_index,
            device=options.device,
            batchnorm=options.batchnorm,
            total=total_batches,
            progress=progress,
            memory_check=options.memory_check,
        )
    else:
        weights = layer_weights(channels)
        empty = tuple(np.zeros_like(w) for w in weights)
        stats = GradientStatistics(
            0, empty, empty, tuple(np.zeros(w.shape[0]) for w in weights), weights, 0.0
        )
    settings = CriterionSettings(
        importance=options.importance,
        lam=options.lam,
        group_reduction=options.group_reduction,
        seed=options.seed,
        ignored=tuple(bool(flag) for flag in ignored),
    )
    return Scoring(
        channels=channels,
        stats=stats,
        settings=settings,
        excluded=_units_of(channels, ignored),
        fixed=_fixed_units(channels) | _units_of(channels, ignored | kept_whole),
    )


def select_at(scoring: Scoring, method: str, sparsity: float, options: PruneOptions) -> Selection:
    """Select at one sparsity and apply the constraints.

    The criterion settings (importance, lambda, group reduction, seed) come from
    ``options``; the layers kept whole or ignored from the scoring.
    """
    settings = dataclasses.replace(
        scoring.settings,
        importance=options.importance,
        lam=options.lam,
        group_reduction=options.group_reduction,
        seed=options.seed,
    )
    raw, scores, threshold = criterion(method).select(
        scoring.channels, scoring.stats, settings, sparsity, scoring.excluded
    )
    keep, emptied = apply_constraints(
        scoring.channels,
        raw,
        scores,
        fixed=scoring.fixed,
        min_channels=options.min_channels,
        round_to=options.round_to,
    )
    return Selection(keep=keep, emptied_groups=emptied, threshold=threshold, scores=scores)


def predicted_costs(scoring: Scoring, keep: np.ndarray, convention: Convention) -> CostReport:
    """Costs of the model the selection would produce, counted from shapes alone."""
    return count_costs(pruned_shapes(scoring.channels, keep), convention)


def select_for_budget(
    scoring: Scoring,
    options: PruneOptions,
    full: CostReport,
    *,
    progress: Progress | None = None,
) -> tuple[float, Selection]:
    """Find the lowest sparsity that meets ``target_flops`` / ``target_memory`` (bisection).

    Achieved costs never increase with the sparsity (see :mod:`ranp_onnx.selection.constraints`), so
    bisection finds the least pruning that fits the budget.

    Args:
        scoring: The scored model.
        options: The budget and the selection options.
        full: The full model's costs.
        progress: Called after each bisection step with (steps done, steps in total).

    Raises:
        PlanError: Even the highest sparsity misses the budget.
    """
    metric, target, option = (
        ("flops", options.target_flops, "--target-flops")
        if options.target_flops is not None
        else ("memory_mb", options.target_memory, "--target-memory")
    )
    assert target is not None
    full_value = float(getattr(full.totals, metric))

    def cost(selection: Selection) -> float:
        totals = predicted_costs(scoring, selection.keep, options.convention).totals
        return float(getattr(totals, metric))

    found = lowest_accepted(
        lambda sparsity: select_at(scoring, options.method, sparsity, options),
        lambda selection: cost(selection) <= target * full_value * (1 + 1e-12),
        progress=progress,
    )
    if found is None:
        smallest = cost(select_at(scoring, options.method, 1.0, options))
        raise PlanError(
            f"{option} {target}: not reachable with --method {options.method}; the smallest "
            f"model it can make keeps {smallest / full_value:.4f} of the full model"
        )
    return found


def search_max_sparsity(
    scoring: Scoring, options: PruneOptions, *, progress: Progress | None = None
) -> tuple[float, Selection]:
    """The paper's Algorithm 2: the largest sparsity at which the ranking empties no layer.

    Bisects [0, 1] until the interval is below :data:`~ranp_onnx.selection.search.SEARCH_TOLERANCE`.

    Args:
        scoring: The scored model.
        options: The method and the selection options.
        progress: Called after each bisection step with (steps done, steps in total).

    Returns:
        The largest feasible sparsity found and its selection.
    """
    return highest_accepted(
        lambda sparsity: select_at(scoring, options.method, sparsity, options),
        lambda selection: selection.feasible,
        progress=progress,
    )


def _analysed(
    model: str | onnx.ModelProto | LoadedModel | GraphAnalysis,
    input_shapes: Mapping[str, Sequence[int]] | None,
) -> GraphAnalysis:
    return model if isinstance(model, GraphAnalysis) else analyse(model, input_shapes)


def prune(
    model: str | onnx.ModelProto | LoadedModel | GraphAnalysis,
    data: Iterable[Batch] | None,
    options: PruneOptions,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    total_batches: int | None = None,
    progress: Progress | None = None,
) -> PruneResult:
    """Prune a model at a sparsity or a resource budget.

    Args:
        model: A path, ModelProto, loaded or analysed model (never modified).
        data: Scoring batches (None for methods that need no gradients).
        options: Exactly one of ``sparsity``, ``target_flops``, ``target_memory``, and the
            rest of the settings.
        input_shapes: Shapes of dynamic inputs.
        total_batches: Number of batches, for progress reports.
        progress: Called after every scoring batch.

    Raises:
        RanpError: Bad input; ValidationError if the rewrite fails the oracle.
    """
    check_options(options)
    graph = _analysed(model, input_shapes)
    scoring = score_model(graph, data, options, total_batches=total_batches, progress=progress)
    return prune_scored(graph, scoring, options)


def prune_scored(
    graph: GraphAnalysis,
    scoring: Scoring,
    options: PruneOptions,
    *,
    progress: Progress | None = None,
) -> PruneResult:
    """Select, rewrite and validate a model already scored by :func:`score_model`.

    One scoring serves every method with the same data (sweeps over methods and
    sparsities score once).

    Args:
        graph: The analysed model ``scoring`` was made from.
        scoring: Its scoring.
        options: The target and the selection options (``options.method`` may differ
            from the method scored, as long as both need the same statistics).
        progress: Called after each step of a budget search.
    """
    check_options(options)
    if criterion(options.method).needs_gradients and scoring.stats.batches == 0:
        raise PlanError(f"--method {options.method} needs --data")
    before = count_costs(graph, options.convention)
    if options.sparsity is not None:
        sparsity = options.sparsity
        selection = select_at(scoring, options.method, sparsity, options)
    else:
        sparsity, selection = select_for_budget(scoring, options, before, progress=progress)
    if not scoring.channels.kept_indices(selection.keep):
        raise PlanError(_nothing_removed(options, sparsity, scoring))
    settings = {**options.settings(), "sparsity": sparsity}
    if scoring.stats.device:
        settings["scored_on"] = scoring.stats.device
    return _finish(graph, scoring.channels, selection, options, settings, before)


def _nothing_removed(options: PruneOptions, sparsity: float, scoring: Scoring) -> str:
    if options.sparsity is None:
        return "nothing to remove: the full model already meets the budget"
    method = criterion(options.method)
    neurons = scoring.channels.unit_neurons
    fixed = neurons[scoring.fixed].sum() / max(int(neurons.sum()), 1)
    why = (
        f"; {fixed:.0%} of the neurons are in layers kept whole (`ranp-onnx explain` says why), "
        "and the ranking put them lowest"
        if fixed > 0.05
        else ""
    )
    return (
        f"nothing to remove: --method {options.method} at --sparsity {sparsity:g} (a fraction "
        f"of the {method.sparsity_of}) keeps every channel{why}; raise --sparsity"
    )


def apply_plan(
    model: str | onnx.ModelProto | LoadedModel | GraphAnalysis,
    plan: PrunePlan,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    options: PruneOptions | None = None,
) -> PruneResult:
    """Re-apply a saved plan (also to an export of the same network at another size)."""
    options = options or PruneOptions()
    graph = _analysed(model, input_shapes)
    require_convolution(graph)
    channels = analyse_channels(graph)
    keep = keep_from_plan(channels, plan)
    selection = Selection(
        keep=keep, emptied_groups=(), threshold=None, scores=np.zeros(channels.unit_count)
    )
    before = count_costs(graph, options.convention)
    settings = {**plan.settings, "applied_from": plan.model}
    return _finish(graph, channels, selection, options, settings, before)


def _finish(
    graph: GraphAnalysis,
    channels: ChannelAnalysis,
    selection: Selection,
    options: PruneOptions,
    settings: Mapping[str, Any],
    before: CostReport,
) -> PruneResult:
    pruned = rewrite(channels, selection.keep)
    kept = channels.kept_indices(selection.keep)
    validation = (
        validate(graph, pruned, kept, tolerance=options.tolerance, device=options.device)
        if options.validate
        else None
    )
    if options.reinit:
        from .rewrite.reinit import reinitialize

        pruned = reinitialize(pruned, seed=options.seed)
    after = count_costs(analyse(pruned, graph.input_shapes), options.convention)
    plan = build_plan(
        channels, selection.keep, selection.scores, settings=settings, before=before, after=after
    )
    return PruneResult(
        model=pruned,
        plan=plan,
        before=before,
        after=after,
        selection=selection,
        validation=validation,
    )


def _layer_flags(channels: ChannelAnalysis, names: Sequence[str], option: str) -> np.ndarray:
    flags = np.zeros(len(channels.layers), dtype=bool)
    for name in names:
        matches = [
            i for i, layer in enumerate(channels.layers) if name in (layer.node, layer.weight)
        ]
        if not matches:
            raise PlanError(f"{option} {name}: no scored layer has that node or weight name")
        flags[matches] = True
    return flags


def _units_of(channels: ChannelAnalysis, layer_flags: np.ndarray) -> np.ndarray:
    units = np.zeros(channels.unit_count, dtype=bool)
    for layer, flag in zip(channels.layers, layer_flags):
        if flag:
            units[layer.units] = True
    return units


def _require_prunable(channels: ChannelAnalysis) -> None:
    """Refuse a model whose every channel group must be kept whole, with the reasons."""
    if any(group.prunable for group in channels.groups):
        return
    reasons = sorted({str(group.reason) for group in channels.groups})
    raise PlanError(f"nothing to prune: every layer must be kept whole ({'; '.join(reasons)})")


def _fixed_units(channels: ChannelAnalysis) -> np.ndarray:
    fixed = np.array([bool(reason) for reason in channels.unit_fixed_reason])
    for group in channels.groups:
        if not group.prunable:
            fixed[group.units] = True
    return fixed
