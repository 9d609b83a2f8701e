"""From a scored model to a selection: at a sparsity, for a budget, or Algorithm 2.

:func:`select_at` runs a criterion at one sparsity and applies the constraints;
:func:`select_for_budget` finds the least sparsity that meets a FLOPs or memory budget;
:func:`search_max_sparsity` is the paper's Algorithm 2.


Both rest on the selection's monotonicity (:mod:`ranp_onnx.selection.constraints`): a higher
sparsity keeps a subset of the units a lower one keeps, so costs never increase with the
sparsity and a layer the ranking empties stays empty. :func:`lowest_accepted` finds the
least sparsity whose selection is accepted (a budget met); :func:`highest_accepted` the
largest one (Algorithm 2: no layer emptied). Both stop when the interval is below
:data:`SEARCH_TOLERANCE`, the paper's delta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from ..analysis.channels import pruned_shapes
from ..analysis.costs import Convention, CostReport, count_costs
from ..errors import PlanError
from ..progress import Progress
from ..scoring.statistics import Scoring
from .constraints import Selection, apply_constraints
from .criteria import criterion
from .options import SelectionOptions

#: Bisection stops when the sparsity interval is narrower than this (Algorithm 2's delta).
SEARCH_TOLERANCE = 1e-4
#: Bisection steps from [0, 1] down to SEARCH_TOLERANCE.
SEARCH_STEPS = math.ceil(math.log2(1 / SEARCH_TOLERANCE))


T = TypeVar("T")


def lowest_accepted(
    select: Callable[[float], T],
    accept: Callable[[T], bool],
    *,
    progress: Progress | None = None,
) -> tuple[float, T] | None:
    """Return the lowest sparsity whose selection is accepted, and that selection.

    Args:
        select: The selection at a sparsity.
        accept: True for selections that qualify; once true, true at every higher sparsity.
        progress: Called after each bisection step.

    Returns:
        The sparsity (0 if the full selection qualifies) and its selection, or None if
        not even the highest sparsity qualifies.
    """
    best = select(1.0)
    if not accept(best):
        return None
    first = select(0.0)
    if accept(first):
        return 0.0, first
    low, high = 0.0, 1.0
    for step in range(SEARCH_STEPS):
        middle = 0.5 * (low + high)
        selection = select(middle)
        if accept(selection):
            high, best = middle, selection
        else:
            low = middle
        if progress is not None:
            progress(step + 1, SEARCH_STEPS)
    return high, best


def highest_accepted(
    select: Callable[[float], T],
    accept: Callable[[T], bool],
    *,
    progress: Progress | None = None,
) -> tuple[float, T]:
    """Return the highest sparsity whose selection is accepted, and that selection.

    Args:
        select: The selection at a sparsity.
        accept: True for selections that qualify; once false, false at every higher
            sparsity. Sparsity 0 is taken to qualify.
        progress: Called after each bisection step.
    """
    low, high = 0.0, 1.0
    best = select(0.0)
    for step in range(SEARCH_STEPS):
        middle = 0.5 * (low + high)
        selection = select(middle)
        if accept(selection):
            low, best = middle, selection
        else:
            high = middle
        if progress is not None:
            progress(step + 1, SEARCH_STEPS)
    return low, best


def check_selection(options: SelectionOptions) -> None:
    """Refuse selection options out of range or naming an unknown method.

    Raises:
        PlanError: See :meth:`SelectionOptions.check`; or no criterion has that name.
    """
    options.check()
    criterion(options.method)


def select_at(
    scoring: Scoring, method: str, sparsity: float, options: SelectionOptions
) -> Selection:
    """Select with ``method`` at one sparsity and apply the constraints.

    The other settings (importance, lambda, group reduction, seed, min_channels,
    round_to) come from ``options``; the layers kept whole or ignored from the scoring.
    """
    raw, scores, threshold = criterion(method).select(scoring, options, sparsity)
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
    options: SelectionOptions,
    full: CostReport,
    *,
    progress: Progress | None = None,
) -> tuple[float, Selection]:
    """Find the lowest sparsity that meets ``target_flops`` / ``target_memory`` (bisection).

    Achieved costs never increase with the sparsity (see
    :mod:`ranp_onnx.selection.constraints`), so bisection finds the least pruning that
    fits the budget.

    Args:
        scoring: The scored model.
        options: The budget and the selection options.
        full: The full model's costs.
        progress: Called after each bisection step with (steps done, steps in total).

    Raises:
        PlanError: Even the highest sparsity misses the budget.
    """
    metric, target, name = (
        ("flops", options.target_flops, "target_flops")
        if options.target_flops is not None
        else ("memory_mb", options.target_memory, "target_memory")
    )
    if target is None:
        raise PlanError("give `target_flops` or `target_memory`")
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
            f"`{name}` {target}: not reachable with `method` {options.method}; the smallest "
            f"model it can make keeps {smallest / full_value:.4f} of the full model"
        )
    return found


def search_max_sparsity(
    scoring: Scoring, options: SelectionOptions, *, progress: Progress | None = None
) -> tuple[float, Selection]:
    """The paper's Algorithm 2: the largest sparsity at which the ranking empties no layer.

    Bisects [0, 1] until the interval is below :data:`SEARCH_TOLERANCE`.

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
