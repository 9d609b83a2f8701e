"""Shape, index and data-movement ops in the torch evaluator against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from torch_graph_oracle import check_node, constant_inputs, random

onnxruntime.set_default_logger_severity(3)


def test_reshape_flatten_transpose() -> None:
    x = random(2, 3, 4, 5)
    for shape in ([0, -1], [2, 0, 0, 5], [-1, 5], [6, 2, 10]):
        node = helper.make_node("Reshape", ["x", "shape"], ["y"])
        check_node(node, {"x": x}, initializers=constant_inputs(shape=shape))
    empty = np.zeros((0, 3), np.float32)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)
    check_node(node, {"x": empty}, initializers=constant_inputs(shape=[3, 0]), opset=14)
    for axis in (0, 1, 3, -1, 4):
        check_node(helper.make_node("Flatten", ["x"], ["y"], axis=axis), {"x": x})
    check_node(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1]), {"x": x})
    check_node(helper.make_node("Transpose", ["x"], ["y"]), {"x": x})


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset: int) -> None:
    x = random(1, 3, 1, 4)
    for axes in ([0], [-2, 0], None):
        if axes is None:
            node = helper.make_node("Squeeze", ["x"], ["y"])
            check_node(node, {"x": x}, opset=opset)
        elif opset < 13:
            check_node(helper.make_node("Squeeze", ["x"], ["y"], axes=axes), {"x": x}, opset=opset)
            node = helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes)
            check_node(node, {"x": x}, opset=opset)
        else:
            values = constant_inputs(axes=axes)
            for op_type in ("Squeeze", "Unsqueeze"):
                node = helper.make_node(op_type, ["x", "axes"], ["y"])
                check_node(node, {"x": x}, initializers=values, opset=opset)


def test_expand_tile_concat_split_identity() -> None:
    x = random(3, 1, 4)
    for shape in ([2, 3, 5, 4], [1, 1], [3, 1, 1]):
        node = helper.make_node("Expand", ["x", "shape"], ["y"])
        check_node(node, {"x": x}, initializers=constant_inputs(shape=shape))
    node = helper.make_node("Tile", ["x", "repeats"], ["y"])
    check_node(node, {"x": x}, initializers=constant_inputs(repeats=[2, 3, 1]))
    inputs = {"a": random(2, 3, 4), "b": random(2, 1, 4, seed=1)}
    check_node(helper.make_node("Concat", ["a", "b"], ["y"], axis=-2), inputs)
    check_node(helper.make_node("Identity", ["a"], ["y"]), {"a": inputs["a"]})


def test_gather_and_shape_ops() -> None:
    x = random(4, 5, 6)
    for indices, axis in (([0, -1, 2], 1), (np.array([[1, -2], [0, 3]]), 0), (np.array(2), -1)):
        node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
        check_node(node, {"x": x}, initializers={"i": np.asarray(indices, np.int64)})
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)
    index = np.random.default_rng(0).integers(-5, 5, size=(4, 2, 6)).astype(np.int64)
    check_node(node, {"x": x}, initializers={"i": index})
    check_node(helper.make_node("Shape", ["x"], ["y"]), {"x": x})
    check_node(helper.make_node("Shape", ["x"], ["y"], start=1, end=-1), {"x": x}, opset=15)
    check_node(helper.make_node("Size", ["x"], ["y"]), {"x": x})
    check_node(helper.make_node("NonZero", ["x"], ["y"]), {"x": np.maximum(x, 0)})


def test_constants() -> None:
    x = random(2, 2)
    value = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))
    nodes = [
        helper.make_node("Constant", [], ["c"], value=value),
        helper.make_node("Constant", [], ["f"], value_floats=[1.5, 2.5]),
        helper.make_node("Constant", [], ["n"], value_int=4),
        helper.make_node("Reshape", ["n", "one"], ["n1"]),
        helper.make_node(
            "ConstantOfShape", ["n1"], ["z"], value=numpy_helper.from_array(np.array([7], np.int64))
        ),
        helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [
            helper.make_tensor_value_info(name, elem, shape)
            for name, elem, shape in (("c", 1, [2, 3]), ("f", 1, [2]), ("z", 7, [4]), ("r", 1, [4]))
        ],
        [
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.float32(0.5), "start"),
            numpy_helper.from_array(np.float32(3.0), "limit"),
            numpy_helper.from_array(np.float32(0.7), "delta"),
        ],
    )
    graph.node.insert(0, helper.make_node("Identity", ["x"], ["unused"]))
    from torch_graph_oracle import check_against_onnxruntime

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    check_against_onnxruntime(model, {"x": x})


def test_cast_and_logic() -> None:
    x = random(3, 4) * 3
    for to in (TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL, TensorProto.DOUBLE):
        check_node(helper.make_node("Cast", ["x"], ["y"], to=to), {"x": x})
    like = {"x": x, "t": np.zeros(2, np.int64)}
    check_node(helper.make_node("CastLike", ["x", "t"], ["y"]), like, opset=15)
    flags = {"a": random(3, 4) > 0, "b": random(4, seed=1) > 0}
    for op_type in ("And", "Or", "Xor"):
        check_node(helper.make_node(op_type, ["a", "b"], ["y"]), flags)
    check_node(helper.make_node("Not", ["a"], ["y"]), {"a": flags["a"]})


def test_dropout_is_identity_in_eval_mode() -> None:
    x = random(2, 3, 4)
    for opset in (7, 11):
        node = helper.make_node("Dropout", ["x"], ["y", "mask"], ratio=0.5)
        check_node(node, {"x": x}, opset=opset)
    ratio = {"r": np.array(0.3, np.float32)}
    check_node(helper.make_node("Dropout", ["x", "r"], ["y", "mask"]), {"x": x}, initializers=ratio)


def test_depth_to_space_and_back() -> None:
    x = random(2, 8, 3, 4)
    for mode in ("DCR", "CRD"):
        node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)
        check_node(node, {"x": x})
    check_node(helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=1), {"x": x})
    check_node(
        helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), {"x": random(1, 2, 4, 6)}
    )
