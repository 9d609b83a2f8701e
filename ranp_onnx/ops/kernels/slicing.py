"""Slice and Pad in torch, with ONNX's index clamping, negative steps and padding modes.

Positions are computed with numpy and applied with ``index_select``, so every mode is
differentiable and exact; ``F.pad`` handles constant padding (and cropping) directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import UnsupportedModelError
from .evaluation import index_along, normalize_axis, torch_pads

if TYPE_CHECKING:
    import torch


def slice_tensor(
    x: torch.Tensor,
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> torch.Tensor:
    """ONNX Slice: clamp each (start, end) to the axis and take every ``step``-th element."""
    axes = list(axes) if axes else list(range(len(starts)))
    steps = list(steps) if steps else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = normalize_axis(int(axis), x.dim())
        size = int(x.shape[axis])
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
            if (start, end, step) == (0, size, 1):
                continue
            index: list[Any] = [slice(None)] * x.dim()
            index[axis] = slice(start, max(start, end), step)
            x = x[tuple(index)]
        elif step < 0:
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
            x = index_along(x, axis, np.arange(start, end, step, dtype=np.int64))
        else:
            raise UnsupportedModelError("Slice with step 0")
    return x


def pad_tensor(
    x: torch.Tensor,
    pads: Sequence[int],
    axes: Sequence[int] | None,
    mode: str,
    value: float | int | bool,
) -> torch.Tensor:
    """ONNX Pad: ``pads`` is [begin per axis..., end per axis...]; negative pads crop."""
    import torch.nn.functional as F

    rank = x.dim()
    axes = [normalize_axis(int(a), rank) for a in axes] if axes else list(range(rank))
    begins, ends = [0] * rank, [0] * rank
    for position, axis in enumerate(axes):
        begins[axis], ends[axis] = int(pads[position]), int(pads[position + len(axes)])
    if mode == "constant":
        if not any(begins) and not any(ends):
            return x
        return F.pad(x, torch_pads(begins, ends), value=value)
    for axis in range(rank):
        begin, end = begins[axis], ends[axis]
        if begin == 0 and end == 0:
            continue
        size = int(x.shape[axis])
        positions = np.arange(-begin, size + end, dtype=np.int64)
        x = index_along(x, axis, _fold_positions(positions, size, mode))
    return x


def _fold_positions(positions: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map positions outside ``[0, size)`` back inside for reflect / edge / wrap padding."""
    if mode == "edge":
        return np.clip(positions, 0, size - 1)
    if mode == "wrap":
        return np.mod(positions, size)
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(positions)
        period = 2 * (size - 1)
        folded = np.mod(positions, period)
        return np.where(folded >= size, period - folded, folded)
    raise UnsupportedModelError(f"Pad mode '{mode}' is not supported")


def split_sizes(size: int, parts: int, sizes: Sequence[int] | None) -> list[int]:
    """Split sizes: the given ones, or ``parts`` chunks of ceil(size / parts), last smaller."""
    if sizes:
        return [int(s) for s in sizes]
    chunk = -(-size // parts)
    return [chunk] * (parts - 1) + [size - chunk * (parts - 1)]
