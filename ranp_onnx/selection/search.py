"""Bisection over the sparsity: the budget search and the paper's Algorithm 2.

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

#: Bisection stops when the sparsity interval is narrower than this (Algorithm 2's delta).
SEARCH_TOLERANCE = 1e-4
#: Bisection steps from [0, 1] down to SEARCH_TOLERANCE.
SEARCH_STEPS = math.ceil(math.log2(1 / SEARCH_TOLERANCE))

#: Called after each bisection step with (steps done, steps in total).
Progress = Callable[[int, int | None], None]

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
