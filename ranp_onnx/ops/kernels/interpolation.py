"""Resize and Upsample in torch, following the ONNX specification as onnxruntime computes it.

Every resized axis is handled on its own: the output positions are mapped to input
coordinates (``coordinate_transformation_mode``), in float32 as onnxruntime does, and then
to input indices (nearest) or to taps and weights (linear, cubic). The gathers are
``index_select``, so the result is differentiable; no torch ``interpolate`` mode matches
all of ONNX's coordinate and rounding modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ...errors import UnsupportedModelError
from .evaluation import floats, index_along, ints, normalize_axis, optional

if TYPE_CHECKING:
    import torch

    from ...ir.graph import NodeInfo

_F = np.float32
_HALF = _F(0.5)

#: Input position as a float32 function of (output positions, scale, output length,
#: input length).
CoordinateTransform = Callable[[np.ndarray, np.float32, int, int], np.ndarray]

_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "trilinear": "linear"}
_MODES["cubic"] = "cubic"
_SUPPORTED_COORDINATES = frozenset(
    {
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_half_pixel_for_nn",
    }
)


@dataclass(frozen=True)
class ResizeMode:
    """How a Resize or Upsample node interpolates.

    Attributes:
        mode: "nearest", "linear" or "cubic".
        coordinates: The ``coordinate_transformation_mode`` ("asymmetric" before opset 11).
        nearest: The ``nearest_mode`` ("simple" before opset 11: floor when enlarging,
            ceil when shrinking).
        cubic_a: The cubic coefficient ``A``.
        exclude_outside: Cubic taps outside the input get weight 0 (renormalised).
        antialias: Resize-18's antialiasing flag.
    """

    mode: str
    coordinates: str
    nearest: str
    cubic_a: float
    exclude_outside: bool
    antialias: bool

    @classmethod
    def of(cls, node: NodeInfo, opset: int) -> ResizeMode:
        """Read the node's attributes; Upsample and Resize-10 use asymmetric coordinates."""
        mode = _MODES.get(str(node.attribute("mode", "nearest")), "")
        modern = node.op_type == "Resize" and opset >= 11
        return cls(
            mode=mode,
            coordinates=str(node.attribute("coordinate_transformation_mode", "half_pixel"))
            if modern
            else "asymmetric",
            nearest=str(node.attribute("nearest_mode", "round_prefer_floor"))
            if modern
            else "simple",
            cubic_a=float(node.attribute("cubic_coeff_a", -0.75)),
            exclude_outside=bool(node.attribute("exclude_outside", 0)),
            antialias=bool(node.attribute("antialias", 0)),
        )

    def problem(self, node: NodeInfo) -> str | None:
        """Return why torch evaluation does not support this node, or None."""
        if not self.mode:
            return f"mode '{node.attribute('mode')}' is not supported"
        if self.coordinates not in _SUPPORTED_COORDINATES:
            return f"coordinate_transformation_mode '{self.coordinates}' is not supported"
        if node.attribute("keep_aspect_ratio_policy", "stretch") not in (
            "stretch",
            "not_larger",
            "not_smaller",
        ):
            return f"keep_aspect_ratio_policy '{node.attribute('keep_aspect_ratio_policy')}'"
        return None


def resize(
    x: torch.Tensor, node: NodeInfo, inputs: Sequence[torch.Tensor | None], opset: int
) -> torch.Tensor:
    """Evaluate a Resize or Upsample node on ``x``."""
    mode = ResizeMode.of(node, opset)
    scales, sizes = _targets(x, node, inputs, opset)
    for axis, (scale, size) in enumerate(zip(scales, sizes)):
        length = int(x.shape[axis])
        if size == length and scale == 1.0:
            continue
        if mode.antialias and mode.mode != "nearest" and size < length:
            raise UnsupportedModelError(
                f"node '{node.name}' (Resize): antialiased downsampling is not supported"
            )
        positions = _transform(mode.coordinates)(np.arange(size, dtype=_F), scale, size, length)
        if mode.mode == "nearest":
            x = index_along(x, axis, _nearest(positions, mode.nearest, scale, length))
        elif mode.mode == "linear":
            x = _blend(x, axis, *_linear_taps(positions, length))
        else:
            x = _blend(x, axis, *_cubic_taps(positions, length, mode))
    return x


def _targets(
    x: torch.Tensor, node: NodeInfo, inputs: Sequence[torch.Tensor | None], opset: int
) -> tuple[list[np.float32], list[int]]:
    """Return the float32 scale and output size of every axis."""
    rank = x.dim()
    lengths = [int(d) for d in x.shape]
    if node.op_type == "Upsample" and opset < 9:
        given_scales = [float(s) for s in node.attribute("scales")]
        given_sizes: list[int] = []
    elif node.op_type == "Upsample" or opset < 11:
        given_scales, given_sizes = floats(optional(inputs, 1)), []
    else:
        given_scales, given_sizes = floats(optional(inputs, 2)), ints(optional(inputs, 3))
    axes = [normalize_axis(int(a), rank) for a in node.attribute("axes", range(rank))]
    scales = [_F(1.0)] * rank
    sizes = list(lengths)
    if given_scales:
        for axis, scale in zip(axes, given_scales):
            scales[axis] = _F(scale)
            sizes[axis] = int(_F(scale) * _F(lengths[axis]))
        return scales, sizes
    if not given_sizes:
        raise UnsupportedModelError(f"node '{node.name}' (Resize): neither scales nor sizes")
    ratios = [_F(size) / _F(lengths[axis]) for axis, size in zip(axes, given_sizes)]
    policy = str(node.attribute("keep_aspect_ratio_policy", "stretch"))
    if policy != "stretch":
        common = min(ratios) if policy == "not_larger" else max(ratios)
        for axis in axes:
            scales[axis] = common
            sizes[axis] = int(np.round(np.float64(common * _F(lengths[axis]))))
        return scales, sizes
    for axis, size, ratio in zip(axes, given_sizes, ratios):
        scales[axis], sizes[axis] = ratio, int(size)
    return scales, sizes


def _transform(name: str) -> CoordinateTransform:
    def half_pixel(out: np.ndarray, scale: np.float32, size: int, length: int) -> np.ndarray:
        return (out + _HALF) / scale - _HALF

    def half_pixel_symmetric(
        out: np.ndarray, scale: np.float32, size: int, length: int
    ) -> np.ndarray:
        adjustment = _F(size) / (scale * _F(length))
        offset = _F(length) / _F(2) * (_F(1) - adjustment)
        # onnxruntime adds the float offset to a double expression, then rounds to float.
        return (
            np.float64(offset) + (out.astype(np.float64) + 0.5) / np.float64(scale) - 0.5
        ).astype(_F)

    def pytorch_half_pixel(
        out: np.ndarray, scale: np.float32, size: int, length: int
    ) -> np.ndarray:
        return half_pixel(out, scale, size, length) if size > 1 else np.zeros_like(out)

    def align_corners(out: np.ndarray, scale: np.float32, size: int, length: int) -> np.ndarray:
        if size == 1:
            return np.zeros_like(out)
        return out * _F(length - 1) / _F(size - 1)

    transforms: dict[str, CoordinateTransform] = {
        "half_pixel": half_pixel,
        "half_pixel_symmetric": half_pixel_symmetric,
        "pytorch_half_pixel": pytorch_half_pixel,
        "align_corners": align_corners,
        "asymmetric": lambda out, scale, size, length: out / scale,
        "tf_half_pixel_for_nn": lambda out, scale, size, length: (out + _HALF) / scale,
    }
    return transforms[name]


def _nearest(positions: np.ndarray, rounding: str, scale: np.float32, length: int) -> np.ndarray:
    """Input index of each output position by ``nearest_mode``, clamped to the input."""
    away = np.sign(positions) * np.floor(np.abs(positions) + _HALF)
    if rounding == "round_prefer_floor":
        index = np.where(positions == np.trunc(positions) + _HALF, np.floor(positions), away)
    elif rounding == "round_prefer_ceil":
        index = away
    elif rounding == "floor":
        index = np.floor(positions)
    elif rounding == "ceil":
        index = np.ceil(positions)
    elif rounding == "simple":
        index = np.ceil(positions) if scale < 1 else np.trunc(positions)
    else:
        raise UnsupportedModelError(f"nearest_mode '{rounding}' is not supported")
    return np.clip(index, 0, length - 1).astype(np.int64)


def _linear_taps(positions: np.ndarray, length: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two taps per output: the coordinate is clamped to the input, as onnxruntime does."""
    clamped = np.clip(positions, _F(0), _F(length - 1))
    low = np.minimum(clamped.astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    weight_low = np.abs(clamped - high.astype(_F))
    weight_high = np.abs(clamped - low.astype(_F))
    same = low == high
    weight_low[same], weight_high[same] = _HALF, _HALF
    return [low, high], [weight_low, weight_high]


def _cubic_taps(
    positions: np.ndarray, length: int, mode: ResizeMode
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Four taps per output with Keys' cubic weights; edge taps clamp or are excluded."""
    a = _F(mode.cubic_a)
    base = np.floor(positions)
    s = (positions - base).astype(_F)
    distances = [s + _F(1), s, _F(1) - s, _F(2) - s]
    weights = [
        ((a * d - _F(5) * a) * d + _F(8) * a) * d - _F(4) * a
        if outer
        else ((a + _F(2)) * d - (a + _F(3))) * d * d + _F(1)
        for d, outer in zip(distances, (True, False, False, True))
    ]
    taps = [base.astype(np.int64) + offset for offset in (-1, 0, 1, 2)]
    if mode.exclude_outside:
        weights = [np.where((t >= 0) & (t < length), w, _F(0)) for t, w in zip(taps, weights)]
        total = np.sum(weights, axis=0)
        weights = [w / total for w in weights]
    return [np.clip(t, 0, length - 1) for t in taps], weights


def _blend(
    x: torch.Tensor, axis: int, taps: list[np.ndarray], weights: list[np.ndarray]
) -> torch.Tensor:
    """Sum of the gathered taps times their weights along ``axis``."""
    import torch

    shape = [1] * x.dim()
    shape[axis] = -1
    result = None
    for tap, weight in zip(taps, weights):
        factor = torch.as_tensor(weight.astype(_F), device=x.device).to(x.dtype).reshape(shape)
        term = index_along(x, axis, tap) * factor
        result = term if result is None else result + term
    assert result is not None
    return result
