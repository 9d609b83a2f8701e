"""Single ops in the torch evaluator against onnxruntime: windows, tensors, math.

Convolution and pooling attributes are drawn by hypothesis (1D to 3D, asymmetric pads,
auto_pad, dilations, ceil mode); the other ops are checked case by case, opset forms
included (attributes that became inputs, axis semantics that changed).
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from torch_graph_oracle import check_node, constant_inputs, random

onnxruntime.set_default_logger_severity(3)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def windows(draw: st.DrawFn, transpose: bool = False) -> dict[str, object]:
    """Spatial rank, kernel, strides, dilations, pads or auto_pad and an input size."""
    rank = draw(st.integers(1, 3))
    kernel = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilations = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    sizes = draw(st.lists(st.integers(5, 7), min_size=rank, max_size=rank))
    attributes: dict[str, object] = {"kernel_shape": kernel, "strides": strides}
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        limit = [k - 1 for k in kernel]
        attributes["pads"] = [draw(st.integers(0, m)) for m in limit + limit]
    else:
        attributes["auto_pad"] = auto_pad
        if auto_pad != "VALID":  # onnxruntime refuses the negative pads of stride > kernel
            attributes["strides"] = [min(s, k) for s, k in zip(strides, kernel)]
    if (draw(st.booleans()) or transpose) and auto_pad in ("NOTSET", "VALID"):
        attributes["dilations"] = dilations  # onnxruntime refuses dilated SAME padding
    return {"rank": rank, "sizes": sizes, "attributes": attributes}


@FAST
@given(window=windows(), groups=st.sampled_from([1, 2]), bias=st.booleans())
def test_conv(window: dict, groups: int, bias: bool) -> None:
    attributes = dict(window["attributes"])  # type: ignore[arg-type]
    kernel = attributes["kernel_shape"]
    x = random(2, 4, *window["sizes"])
    weights = {"w": random(6, 4 // groups, *kernel, seed=1)}
    names = ["x", "w"]
    if bias:
        weights["b"] = random(6, seed=2)
        names.append("b")
    node = helper.make_node("Conv", names, ["y"], group=groups, **attributes)
    check_node(node, {"x": x}, initializers=weights)


@FAST
@given(
    window=windows(transpose=True),
    groups=st.sampled_from([1, 2]),
    extra=st.integers(0, 2),
    form=st.sampled_from(["pads", "output_shape", "auto_pad"]),
)
def test_conv_transpose(window: dict, groups: int, extra: int, form: str) -> None:
    attributes = dict(window["attributes"])  # type: ignore[arg-type]
    kernel, strides = attributes["kernel_shape"], attributes["strides"]
    attributes["output_padding"] = [min(extra, s - 1) for s in strides]
    sizes = window["sizes"]
    if form == "output_shape":
        attributes.pop("pads", None)
        attributes.pop("auto_pad", None)
        attributes["output_shape"] = [n * s for n, s in zip(sizes, strides)]
    elif form == "auto_pad" and "auto_pad" not in attributes:
        attributes.pop("pads")
        attributes["auto_pad"] = "SAME_UPPER"
    x = random(1, 4, *sizes)
    weights = {"w": random(4, 6 // groups, *kernel, seed=1), "b": random(6, seed=2)}
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], group=groups, **attributes)
    check_node(node, {"x": x}, initializers=weights)


@FAST
@given(window=windows(), ceil=st.booleans(), include_pad=st.booleans())
def test_pools(window: dict, ceil: bool, include_pad: bool) -> None:
    attributes = dict(window["attributes"])  # type: ignore[arg-type]
    attributes["ceil_mode"] = int(ceil)
    x = random(2, 3, *window["sizes"])
    check_node(helper.make_node("MaxPool", ["x"], ["y"], **attributes), {"x": x})
    attributes["count_include_pad"] = int(include_pad)
    check_node(helper.make_node("AveragePool", ["x"], ["y"], **attributes), {"x": x}, opset=19)
    attributes.pop("dilations", None)
    attributes.pop("count_include_pad")
    attributes["p"] = 2
    check_node(helper.make_node("LpPool", ["x"], ["y"], **attributes), {"x": x}, opset=18)


def test_max_pool_indices_and_global_pools() -> None:
    x = random(2, 3, 5, 6)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])
    check_node(node, {"x": x})
    for op_type in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        check_node(helper.make_node(op_type, ["x"], ["y"]), {"x": random(2, 3, 4, 5, 3)})


@pytest.mark.parametrize("opset", [2, 11, 13, 18, 19])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad(opset: int, mode: str) -> None:
    if mode == "wrap" and opset < 19:
        return
    x = random(2, 3, 5, 6)
    pads = [0, 1, 2, -1, 1, 0, 1, 3] if mode == "constant" else [0, 0, 2, 1, 0, 0, 3, 4]
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=pads, value=1.5)
        check_node(node, {"x": x}, opset=opset)
        return
    values = constant_inputs(pads=pads, value=np.float32(1.5))
    names = ["x", "pads", "value" if mode == "constant" else ""]
    if opset >= 18:
        values = constant_inputs(pads=pads[2:4] + pads[6:8], value=np.float32(1.5), axes=[-2, 3])
        names.append("axes")
    node = helper.make_node("Pad", names, ["y"], mode=mode)
    check_node(node, {"x": x}, initializers=values, opset=opset)


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([1, 0], [4, 100], [2, 3], [1, 2]),
        ([-1, 5], [-100, 0], [2, 3], [-1, -2]),
        ([0], [-1], [-1], [3]),
        ([10], [2], [1], [-1]),
        ([2, 1], [2, 9223372036854775807], [2, 1], [1, 1]),
    ],
)
def test_slice(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> None:
    x = random(2, 3, 5, 7)
    values = constant_inputs(starts=starts, ends=ends, axes=axes, steps=steps)
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    check_node(node, {"x": x}, initializers=values)
    if all(s == 1 for s in steps):
        node = helper.make_node("Slice", ["x"], ["y"], starts=starts, ends=ends, axes=axes)
        check_node(node, {"x": x}, opset=9)


def test_split() -> None:
    x = random(2, 6, 5)
    check_node(helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1), {"x": x}, opset=11)
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=-1, split=[2, 3])
    check_node(node, {"x": x}, opset=11)
    node = helper.make_node("Split", ["x", "split"], ["a", "b", "c"], axis=1)
    check_node(node, {"x": x}, initializers=constant_inputs(split=[1, 2, 3]), opset=13)
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3)
    check_node(node, {"x": x}, opset=18)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax_axis_semantics(opset: int, op_type: str) -> None:
    x = random(2, 3, 4, 5)
    for axis in (1, 2, -1):
        check_node(helper.make_node(op_type, ["x"], ["y"], axis=axis), {"x": x}, opset=opset)
    check_node(helper.make_node(op_type, ["x"], ["y"]), {"x": x}, opset=opset)


@pytest.mark.parametrize("opset", [9, 14, 15])
def test_batch_normalization_forms(opset: int) -> None:
    x = random(4, 3, 5, 2)
    stats = {
        "s": random(3, seed=1),
        "b": random(3, seed=2),
        "m": random(3, seed=3),
        "v": np.abs(random(3, seed=4)) + 0.5,
    }
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    check_node(node, {"x": x}, initializers=stats, opset=opset)
    if opset >= 14:
        node = helper.make_node(
            "BatchNormalization",
            ["x", "s", "b", "m", "v"],
            ["y", "running_mean", "running_var"],
            training_mode=1,
            momentum=0.8,
        )
        check_node(node, {"x": x}, initializers=stats, opset=opset, outputs=[0])


def test_normalizations() -> None:
    x = random(2, 4, 3, 5)
    affine = {"s": random(4, seed=1), "b": random(4, seed=2)}
    check_node(
        helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"]),
        {"x": x},
        initializers=affine,
    )
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
    check_node(node, {"x": x}, initializers=affine, opset=21)
    layer = {"s": random(3, 5, seed=1), "b": random(5, seed=2)}
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=-2)
    check_node(node, {"x": x}, initializers=layer, opset=17)


UNARY = [
    ("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 1 / 6}), ("HardSwish", {}), ("Tanh", {}), ("Elu", {"alpha": 0.5}),
    ("Selu", {}), ("Celu", {"alpha": 2.0}), ("Softplus", {}), ("Softsign", {}), ("Mish", {}),
    ("ThresholdedRelu", {"alpha": 0.3}), ("Abs", {}), ("Neg", {}), ("Exp", {}), ("Erf", {}),
    ("Sin", {}), ("Cos", {}), ("Atan", {}), ("Floor", {}), ("Ceil", {}), ("Round", {}),
    ("Sign", {}), ("Sinh", {}), ("Asinh", {}),
]  # fmt: skip


@pytest.mark.parametrize(("op_type", "attributes"), UNARY)
def test_unary(op_type: str, attributes: dict[str, float]) -> None:
    x = random(2, 3, 4) * 3
    check_node(helper.make_node(op_type, ["x"], ["y"], **attributes), {"x": x}, opset=18)


def test_positive_domain_and_gelu() -> None:
    x = np.abs(random(2, 3, 4)) + 0.1
    for op_type in ("Log", "Sqrt", "Reciprocal"):
        check_node(helper.make_node(op_type, ["x"], ["y"]), {"x": x})
    for approximate in ("none", "tanh"):
        node = helper.make_node("Gelu", ["x"], ["y"], approximate=approximate)
        check_node(node, {"x": random(3, 4)}, opset=20)


def test_clip_and_prelu() -> None:
    x = random(2, 3, 4, 5) * 4
    check_node(helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=2.0), {"x": x}, opset=6)
    bounds = constant_inputs(lo=np.float32(0.0), hi=np.float32(6.0))
    check_node(helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), {"x": x}, initializers=bounds)
    check_node(helper.make_node("Clip", ["x", "", "hi"], ["y"]), {"x": x}, initializers=bounds)
    for slope in (random(3, 1, 1, seed=1), random(5, seed=1), random(1, seed=1)):
        node = helper.make_node("PRelu", ["x", "slope"], ["y"])
        check_node(node, {"x": x}, initializers={"slope": slope})


def test_arithmetic_broadcasting() -> None:
    a, b, c = random(2, 3, 4), random(3, 1, seed=1), np.abs(random(4, seed=2)) + 0.5
    inputs = {"a": a, "b": b}
    for op_type in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
        check_node(helper.make_node(op_type, ["a", "b"], ["y"]), inputs)
    for op_type in ("Sum", "Mean", "Max"):
        node = helper.make_node(op_type, ["a", "b", "c"], ["y"])
        check_node(node, {"a": a, "b": b, "c": c})
    check_node(helper.make_node("Pow", ["c", "b"], ["y"]), {"c": c, "b": b})
    for fmod in (0, 1):
        node = helper.make_node("Mod", ["a", "c"], ["y"], fmod=1) if fmod else None
        if node is not None:
            check_node(node, {"a": a, "c": c})
    ints = {"i": np.array([7, -7, 5], np.int64), "j": np.array([2, 2, -3], np.int64)}
    check_node(helper.make_node("Div", ["i", "j"], ["y"]), ints)
    check_node(helper.make_node("Mod", ["i", "j"], ["y"]), ints)


def test_comparisons_and_where() -> None:
    a, b = random(2, 3), random(3, seed=1)
    for op_type in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"):
        check_node(helper.make_node(op_type, ["a", "b"], ["y"]), {"a": a, "b": b})
    nodes = [
        helper.make_node("Greater", ["a", "b"], ["c"]),
        helper.make_node("Where", ["c", "a", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "where",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    from torch_graph_oracle import check_against_onnxruntime

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    check_against_onnxruntime(model, {"a": a, "b": b})


def test_gemm_and_matmul() -> None:
    a, b, c = random(3, 4), random(5, 4, seed=1), random(5, seed=2)
    check_node(helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1), {"a": a, "b": b, "c": c})
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)
    check_node(node, {"a": random(4, 3), "b": random(4, 5), "c": random(3, 1)})
    check_node(helper.make_node("Gemm", ["a", "b"], ["y"]), {"a": a, "b": random(4, 2)})
    inputs = {"a": random(2, 1, 3, 4), "b": random(5, 4, 6, seed=1)}
    check_node(helper.make_node("MatMul", ["a", "b"], ["y"]), inputs)


@pytest.mark.parametrize("opset", [13, 18])
def test_reductions(opset: int) -> None:
    x = random(2, 3, 4, 5)
    for op_type in (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare",
    ):  # fmt: skip
        for axes, keepdims in (([1, -1], 1), ([2], 0), (None, 1)):
            axes_as_input = opset >= 18 or op_type == "ReduceSum"
            attributes = {"keepdims": keepdims}
            names, values = ["x"], {}
            if axes is not None and axes_as_input:
                names, values = ["x", "axes"], constant_inputs(axes=axes)
            elif axes is not None:
                attributes["axes"] = axes
            node = helper.make_node(op_type, names, ["y"], **attributes)
            check_node(node, {"x": x}, initializers=values, opset=opset)
    node = helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)
    check_node(node, {"x": x}, opset=opset)


def test_arg_extremes() -> None:
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
    for op_type in ("ArgMax", "ArgMin"):
        for last in (0, 1):
            for keepdims in (0, 1):
                node = helper.make_node(
                    op_type, ["x"], ["y"], axis=-1, keepdims=keepdims, select_last_index=last
                )
                check_node(node, {"x": x})


#: (equation, operand shapes): attention, matrix forms, a diagonal, sums within one operand,
#: ellipses, implicit outputs (in alphabetical order), three operands, spaces.
EINSUMS = [
    ("blxd,blyd->blxy", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhxy,bhyd->bhxd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ijk->ki", [(3, 4, 5)]),
    ("abc,cd->a", [(2, 3, 4), (4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (2, 3, 5, 6)]),
    ("n...,n...->n...", [(2, 3, 4), (2, 3, 4)]),
    ("cb,ba", [(2, 3), (3, 4)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ("nc, c -> nc", [(2, 3), (3,)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum(equation: str, shapes: list[tuple[int, ...]]) -> None:
    names = [f"x{i}" for i in range(len(shapes))]
    inputs = {name: random(*shape, seed=i) for i, (name, shape) in enumerate(zip(names, shapes))}
    check_node(helper.make_node("Einsum", names, ["y"], equation=equation), inputs)
