"""The pruning pipeline, wiring only: analysis -> scoring -> selection -> rewrite.

:func:`prune` prunes at a sparsity or a resource budget; it is :func:`score_model` (the
gradient passes) followed by :func:`prune_scored` (select, rewrite, validate), so that
sweeps over methods and sparsities score once. :func:`apply_plan` re-applies a saved
plan. Every step is a function of a stage subpackage, and each stage gets only its own
group of the options (:class:`~ranp_onnx.options.PruneOptions`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .analysis.channels import ChannelAnalysis, analyse_channels
from .analysis.costs import CostReport, count_costs
from .analysis.shapes import analyse, dynamic_batch_inputs, require_convolution
from .errors import PlanError
from .ir.graph import GraphAnalysis
from .ir.load import LoadedModel, load_model
from .options import PruneOptions, check_options
from .progress import Progress
from .rewrite.options import RewriteOptions
from .rewrite.oracle import ValidationResult, validate
from .rewrite.surgery import rewrite
from .scoring.data import Batch
from .scoring.statistics import Scoring, accumulate_gradients, weight_statistics
from .selection.constraints import Selection
from .selection.criteria import criterion
from .selection.plan import PrunePlan, build_plan, keep_from_plan
from .selection.search import select_at, select_for_budget

__all__ = [
    "PruneOptions",
    "PruneResult",
    "Scoring",
    "apply_plan",
    "prune",
    "prune_scored",
    "score_model",
]


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
    channels.require_prunable()
    ignored = channels.layer_flags(options.ignore, "ignore")
    kept_whole = channels.layer_flags(options.keep, "keep")
    if criterion(options.method).needs_gradients:
        if data is None:
            raise PlanError(f"`method` {options.method} needs `data`")
        scoring = options.scoring
        stats = accumulate_gradients(
            channels,
            data,
            scoring.loss,
            ignore_index=scoring.ignore_index,
            device=scoring.device,
            batchnorm=scoring.batchnorm,
            total=total_batches,
            progress=progress,
            memory_check=scoring.memory_check,
        )
    else:
        stats = weight_statistics(channels)
    return Scoring(
        channels=channels,
        stats=stats,
        ignored=tuple(bool(flag) for flag in ignored),
        excluded=channels.units_of(ignored),
        fixed=channels.fixed_units() | channels.units_of(ignored | kept_whole),
    )


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
        input_shapes: Shapes of dynamic inputs; a dynamic batch not given here is the
            first batch's size.
        total_batches: Number of batches, for progress reports.
        progress: Called after every scoring batch.

    Raises:
        RanpError: Bad input; ValidationError if the rewrite fails the oracle.
    """
    check_options(options)
    batch_size = 1
    if not isinstance(model, GraphAnalysis):
        model = load_model(model)
        if data is not None and dynamic_batch_inputs(model):
            batch_size, data = _first_batch_size(data)
    graph = _analysed(model, input_shapes, batch_size)
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
    selecting = options.selection
    if criterion(selecting.method).needs_gradients and scoring.stats.batches == 0:
        raise PlanError(f"`method` {selecting.method} needs `data`")
    before = count_costs(graph, selecting.convention)
    if selecting.sparsity is not None:
        sparsity = selecting.sparsity
        selection = select_at(scoring, selecting.method, sparsity, selecting)
    else:
        sparsity, selection = select_for_budget(scoring, selecting, before, progress=progress)
    if not scoring.channels.kept_indices(selection.keep):
        raise PlanError(_nothing_removed(options, sparsity, scoring))
    settings = {**options.settings(), "sparsity": sparsity}
    if scoring.stats.device:
        settings["scored_on"] = scoring.stats.device
    return _finish(graph, scoring.channels, selection, options.rewrite, settings, before)


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
    return _finish(graph, channels, selection, options.rewrite, settings, before)


def _analysed(
    model: str | onnx.ModelProto | LoadedModel | GraphAnalysis,
    input_shapes: Mapping[str, Sequence[int]] | None,
    batch_size: int = 1,
) -> GraphAnalysis:
    if isinstance(model, GraphAnalysis):
        return model
    return analyse(model, input_shapes, batch_size=batch_size)


def _first_batch_size(data: Iterable[Batch]) -> tuple[int, Iterable[Batch]]:
    """The first batch's size (1 if there is none), and the data with that batch still in it."""
    iterator = iter(data)
    first = next(iterator, None)
    if first is None:
        return 1, ()
    inputs = [value for value in first.inputs.values() if np.ndim(value)]
    size = int(np.shape(inputs[0])[0]) if inputs else 1
    return max(size, 1), itertools.chain([first], iterator)


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
        f"nothing to remove: `method` {options.method} at `sparsity` {sparsity:g} (a fraction "
        f"of the {method.sparsity_of}) keeps every channel{why}; raise `sparsity`"
    )


def _finish(
    graph: GraphAnalysis,
    channels: ChannelAnalysis,
    selection: Selection,
    options: RewriteOptions,
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
    after = count_costs(analyse(pruned, graph.input_shapes), before.convention)
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
