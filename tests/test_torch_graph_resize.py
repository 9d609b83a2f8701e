"""Resize and Upsample in the torch evaluator against onnxruntime, every opset and mode.

The coordinate modes are checked at scales that shrink, enlarge by whole and by fractional
factors, and with ``sizes``. Cases where the exact input coordinate is a rounding tie
(x.5 within one float32 ulp) are avoided: onnxruntime's float rounding there is its own.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import helper
from torch_graph_oracle import check_node, random, single_node_model

from ranp_onnx.errors import UnsupportedModelError
from ranp_onnx.scoring.evaluator import TorchGraph

onnxruntime.set_default_logger_severity(3)

COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
SCALES = ([1, 1, 2, 2], [1, 1, 0.5, 0.6], [1, 1, 1.7, 2.3], [1, 1, 3, 0.3])
SIZES = ([1, 2, 9, 3], [1, 2, 10, 14], [1, 2, 1, 1])


def resize_node(
    opset: int, scales: list[float] | None = None, sizes: list[int] | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Input names and initializers of a Resize reading ``scales`` or ``sizes``."""
    initializers: dict[str, np.ndarray] = {}
    names = ["x", "roi" if opset < 13 else "", "scales", "sizes"]
    if opset < 13:
        initializers["roi"] = np.zeros(0, np.float32)
    if scales is not None:
        initializers["scales"] = np.array(scales, np.float32)
        names = names[:3]
    else:
        if opset < 13:
            initializers["scales"] = np.zeros(0, np.float32)
        else:
            names[2] = ""
        initializers["sizes"] = np.array(sizes, np.int64)
    return names, initializers


def check_resize(
    opset: int,
    shape: tuple[int, ...] = (1, 2, 5, 7),
    scales: list[float] | None = None,
    sizes: list[int] | None = None,
    **attributes: object,
) -> None:
    names, initializers = resize_node(opset, scales, sizes)
    node = helper.make_node("Resize", names, ["y"], **attributes)
    check_node(node, {"x": random(*shape)}, initializers=initializers, opset=opset)


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("nearest", NEAREST)
def test_nearest_modes(opset: int, coordinates: str, nearest: str) -> None:
    attributes = {"mode": "nearest", "coordinate_transformation_mode": coordinates}
    attributes["nearest_mode"] = nearest
    for scales in SCALES:
        check_resize(opset, scales=scales, **attributes)
    for sizes in SIZES:
        check_resize(opset, sizes=sizes, **attributes)


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinates", COORDINATES)
def test_linear_and_cubic(opset: int, mode: str, coordinates: str) -> None:
    for scales in SCALES[:3]:
        check_resize(opset, scales=scales, mode=mode, coordinate_transformation_mode=coordinates)
    for sizes in SIZES:
        check_resize(opset, sizes=sizes, mode=mode, coordinate_transformation_mode=coordinates)


def test_cubic_options() -> None:
    for exclude in (0, 1):
        check_resize(
            13, scales=[1, 1, 1.5, 2.5], mode="cubic", cubic_coeff_a=-0.5, exclude_outside=exclude
        )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_half_pixel_symmetric(mode: str) -> None:
    attributes = {"mode": mode, "coordinate_transformation_mode": "half_pixel_symmetric"}
    for scales in ([1, 1, 2, 2], [1, 1, 1.7, 2.3], [1, 1, 0.5, 0.8]):
        check_resize(19, scales=scales, **attributes)
    check_resize(19, sizes=[1, 2, 10, 14], **attributes)


def test_trilinear_5d() -> None:
    check_resize(13, (1, 2, 3, 4, 5), scales=[1, 1, 2, 1.5, 0.5], mode="linear")
    check_resize(13, (1, 2, 3, 4, 5), sizes=[1, 2, 6, 8, 10], mode="nearest")


def test_opset18_axes_and_aspect_ratio() -> None:
    check_resize(18, scales=[2.0, 0.5], axes=[2, 3], mode="nearest")
    check_resize(18, sizes=[9, 11], axes=[-2, -1], mode="linear")
    for policy in ("stretch", "not_larger", "not_smaller"):
        check_resize(18, sizes=[1, 2, 9, 20], mode="nearest", keep_aspect_ratio_policy=policy)
        check_resize(18, sizes=[10, 9], axes=[2, 3], mode="linear", keep_aspect_ratio_policy=policy)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10_and_upsample(mode: str) -> None:
    x = random(1, 2, 3, 5)
    for scales in ([1, 1, 2, 2], [1, 1, 2.5, 1.5], [1, 1, 1, 3]):
        initializers = {"scales": np.array(scales, np.float32)}
        for op_type, opset in (("Resize", 10), ("Upsample", 9)):
            node = helper.make_node(op_type, ["x", "scales"], ["y"], mode=mode)
            check_node(node, {"x": x}, initializers=initializers, opset=opset)
        node = helper.make_node(
            "Upsample", ["x"], ["y"], mode=mode, scales=[float(s) for s in scales]
        )
        check_node(node, {"x": x}, opset=7)


def test_resize_downsampling_opset10_rounds_up() -> None:
    node = helper.make_node("Resize", ["x", "scales"], ["y"], mode="nearest")
    scales = {"scales": np.array([1, 1, 0.6, 0.5], np.float32)}
    check_node(node, {"x": random(1, 2, 7, 9)}, initializers=scales, opset=10)


def test_unsupported_resize_modes_fail_at_construction() -> None:
    names, initializers = resize_node(13, [1, 1, 2, 2])
    node = helper.make_node(
        "Resize", names, ["y"], name="crop", coordinate_transformation_mode="tf_crop_and_resize"
    )
    model = single_node_model(node, {"x": random(1, 1, 2, 2)}, initializers=initializers, opset=13)
    with pytest.raises(UnsupportedModelError, match=r"'crop'.*tf_crop_and_resize"):
        TorchGraph(model)
