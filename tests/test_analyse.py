"""Shape analysis: concrete shapes for every tensor, geometry, input shapes and their errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from builders import export_module, make_model, random_weights
from onnx import helper

from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse, parse_input_shapes, require_convolution
from ranp_onnx.errors import InputShapeError, UnsupportedModelError


def small_cnn(spatial: tuple[int | str, ...] = (16, 16, 16)) -> onnx.ModelProto:
    """conv (stride 2) -> relu -> maxpool -> convtranspose -> flatten -> gemm."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c"], name="conv1", strides=[2, 2, 2], pads=[1] * 6
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        helper.make_node("ConvTranspose", ["p", "w2"], ["u"], name="up", strides=[2, 2, 2]),
        helper.make_node("Flatten", ["u"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1),
    ]
    weights = random_weights(0, w1=(4, 2, 3, 3, 3), b1=(4,), w2=(4, 3, 2, 2, 2), w3=(5, 3 * 512))
    return make_model(nodes, [("x", ["N", 2, *spatial])], [("y", None)], weights)


def test_every_tensor_gets_a_concrete_shape() -> None:
    graph = analyse(small_cnn(), {"x": (1, 2, 16, 16, 16)})
    assert [node.op_type for node in graph.nodes] == [
        "Conv",
        "Relu",
        "MaxPool",
        "ConvTranspose",
        "Flatten",
        "Gemm",
    ]
    # Nodes keep their names; unnamed ones get <op_type>_<index>.
    assert [node.name for node in graph.nodes] == [
        "conv1",
        "relu1",
        "MaxPool_2",
        "up",
        "flatten",
        "fc",
    ]
    assert graph.input_names == ("x",)
    assert graph.output_names == ("y",)
    assert graph.input_shapes == {"x": (1, 2, 16, 16, 16)}
    expected = {
        "c": (1, 4, 8, 8, 8),
        "r": (1, 4, 8, 8, 8),
        "p": (1, 4, 4, 4, 4),
        "u": (1, 3, 8, 8, 8),
        "f": (1, 1536),
        "y": (1, 5),
        "w1": (4, 2, 3, 3, 3),
    }
    assert {name: graph.shape(name) for name in expected} == expected
    assert graph.tensors["w1"].static and not graph.tensors["c"].static
    assert graph.tensors["c"].nbytes == 4 * 8**3 * 4
    assert graph.producer("p") is graph.node("MaxPool_2")
    assert graph.consumers("r") == (graph.node("MaxPool_2"),)
    assert graph.node("conv1").attribute("strides") == [2, 2, 2]
    assert graph.node("conv1").attribute("group", 1) == 1
    assert graph.is_initializer("w3") and not graph.is_initializer("f")
    np.testing.assert_array_equal(
        graph.initializer("b1"), random_weights(0, w1=(4, 2, 3, 3, 3), b1=(4,))["b1"]
    )


def test_layer_geometry_in_the_cost_report() -> None:
    report = count_costs(analyse(small_cnn(), {"": (2, 2, 16, 16, 16)}))
    rows = {
        layer.name: (
            layer.geometry.channels_in,
            layer.geometry.channels_out,
            layer.geometry.kernel,
            layer.geometry.strides,
            layer.geometry.groups,
        )
        for layer in report.layers
        if layer.geometry is not None
    }
    assert rows == {
        "conv1": (2, 4, (3, 3, 3), (2, 2, 2), 1),
        "MaxPool_2": (4, 4, (2, 2, 2), (2, 2, 2), None),
        "up": (4, 3, (2, 2, 2), (2, 2, 2), 1),
        "fc": (1536, 5, None, None, None),
    }
    conv = report.layers[0]
    assert conv.input_shapes == ((2, 2, 16, 16, 16), (4, 2, 3, 3, 3), (4,))
    assert conv.output_shapes == ((2, 4, 8, 8, 8),)


def test_duplicate_node_names_are_made_unique() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="same"),
        helper.make_node("Relu", ["a"], ["y"], name="same"),
    ]
    graph = analyse(make_model(nodes, [("x", [1, 2])], [("y", None)]))
    assert [node.name for node in graph.nodes] == ["Relu_0", "Relu_1"]


# --- Input shapes -------------------------------------------------------------------------


def test_parse_input_shapes() -> None:
    assert parse_input_shapes(["x=1x1x64x64x64"]) == {"x": (1, 1, 64, 64, 64)}
    assert parse_input_shapes(["1,2,3"]) == {"": (1, 2, 3)}
    assert parse_input_shapes([" a = 2x3 ", "b=4"]) == {"a": (2, 3), "b": (4,)}
    assert parse_input_shapes([]) == {}


@pytest.mark.parametrize("spec", ["x=", "x=1x0x3", "x=1x-2", "x=1xax3", "x=1X2", ""])
def test_parse_input_shapes_refuses_malformed(spec: str) -> None:
    with pytest.raises(InputShapeError, match="expected NAME=1x1x64x64x64"):
        parse_input_shapes([spec])


def test_a_dynamic_batch_is_filled_in_and_other_dynamic_dimensions_are_asked_for() -> None:
    assert analyse(small_cnn()).input_shapes == {"x": (1, 2, 16, 16, 16)}
    graph = analyse(small_cnn(), batch_size=3)
    assert graph.input_shapes == {"x": (3, 2, 16, 16, 16)}
    assert graph.shape("y") == (3, 5)
    with pytest.raises(InputShapeError) as raised:
        analyse(small_cnn(("D", 16, 16)), batch_size=3)
    assert str(raised.value) == (
        "input 'x' has dynamic dimension 2 ('D'): pass `input_shapes` x=3x2x<D>x16x16"
    )
    with pytest.raises(InputShapeError, match="`batch_size` must be at least 1, got 0"):
        analyse(small_cnn(), batch_size=0)


def test_torchscript_dynamic_axes_are_all_named() -> None:
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.ReLU())
    model = export_module(
        module,
        torch.randn(1, 1, 5, 5, 5),
        input_names=["volume"],
        dynamic_axes={"volume": {0: "batch", 2: "depth"}},
    )
    with pytest.raises(InputShapeError) as raised:
        analyse(model)
    assert str(raised.value) == (
        "input 'volume' has dynamic dimension 2 ('depth'): pass "
        "`input_shapes` volume=1x1x<depth>x5x5"
    )
    graph = analyse(model, parse_input_shapes(["volume=2x1x7x5x5"]))
    relu = graph.nodes[-1]
    assert graph.shape(relu.outputs[0]) == (2, 2, 5, 3, 3)


def test_shape_computations_are_folded() -> None:
    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)
            self.fc = torch.nn.Linear(2 * 4 * 4 * 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.fc(y.view(y.size(0), -1))

    model = export_module(
        Flat(), torch.randn(1, 1, 4, 4, 4), input_names=["x"], dynamic_axes={"x": {0: "n"}}
    )
    assert {"Shape", "Gather", "Concat", "Reshape"} <= {node.op_type for node in model.graph.node}
    graph = analyse(model, {"x": (3, 1, 4, 4, 4)})
    reshape = next(node for node in graph.nodes if node.op_type == "Reshape")
    np.testing.assert_array_equal(graph.constant(reshape.inputs[1]), [3, -1])
    assert graph.shape(reshape.outputs[0]) == (3, 128)
    assert graph.shape(graph.output_names[0]) == (3, 3)
    # The shape chain is static: the costs list only the data path.
    report = count_costs(graph)
    assert [layer.op_type for layer in report.layers] == ["Conv", "Reshape", "Gemm"]


def test_dynamo_export_is_analysable() -> None:
    module = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1),
        torch.nn.BatchNorm3d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool3d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    model = export_module(module, torch.randn(1, 2, 6, 6, 6), exporter="dynamo")
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops  # folded into the Conv
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    graph = analyse(model)
    # The exporter hard-codes the flatten's target shape as an initializer.
    reshape = next(node for node in graph.nodes if node.op_type == "Reshape")
    assert graph.is_initializer(reshape.inputs[1])
    np.testing.assert_array_equal(graph.constant(reshape.inputs[1]), [1, 4])
    report = count_costs(graph)
    assert report.uncounted == {}
    assert report.totals.macs == 216 * 54 * 4 + 12
    assert graph.shape(graph.output_names[0]) == (1, 3)


def test_single_unnamed_shape_needs_a_single_input() -> None:
    node = helper.make_node("Add", ["a", "b"], ["y"])
    model = make_model([node], [("a", ["n", 2]), ("b", ["n", 2])], [("y", None)])
    with pytest.raises(InputShapeError, match="needs a model with one input; this one has 2"):
        analyse(model, {"": (1, 2)})
    graph = analyse(model, {"a": (3, 2), "b": (3, 2)})
    assert graph.shape("y") == (3, 2)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"y": (1, 2, 16, 16, 16)}, "names 'y', which is not an input of the model"),
        ({"x": (1, 2, 16, 16)}, "the model's input has 5 dimensions, got 4"),
        ({"x": (1, 3, 16, 16, 16)}, "dimension 1 is fixed at 2 in the model, got 3"),
        ({"x": (1, 2, 16, 16, 8)}, "dimension 4 is fixed at 16 in the model, got 8"),
    ],
)
def test_input_shape_that_does_not_fit_the_declaration(
    shapes: dict[str, tuple[int, ...]], message: str
) -> None:
    with pytest.raises(InputShapeError, match=message):
        analyse(small_cnn(), shapes)


def spatially_dynamic_conv(weight: tuple[int, ...], op_type: str = "Conv") -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x", "w"], ["y"], name="layer")
    return make_model(
        [node],
        [("x", ["n", "c", "d", "h", "w"])],
        [("y", None)],
        {"w": np.ones(weight, np.float32)},
    )


def test_input_channels_that_do_not_fit_a_conv() -> None:
    model = spatially_dynamic_conv((4, 2, 3, 3, 3))
    with pytest.raises(InputShapeError) as raised:
        analyse(model, {"x": (1, 3, 8, 8, 8)})
    assert str(raised.value) == (
        "node 'layer' (Conv) reads 3 input channels from 'x' but its weight expects 2: "
        "the input shape does not fit the graph"
    )
    assert analyse(model, {"x": (1, 2, 8, 8, 8)}).shape("y") == (1, 4, 6, 6, 6)


def test_input_channels_that_do_not_fit_a_grouped_conv_or_conv_transpose() -> None:
    grouped = helper.make_node("Conv", ["x", "w"], ["y"], name="g", group=2)
    model = make_model(
        [grouped],
        [("x", ["n", "c", 4, 4, 4])],
        [("y", None)],
        {"w": np.ones((4, 2, 1, 1, 1), np.float32)},
    )
    assert analyse(model, {"x": (1, 4, 4, 4, 4)}).shape("y") == (1, 4, 4, 4, 4)
    with pytest.raises(InputShapeError, match=r"reads 2 input channels .* expects 4"):
        analyse(model, {"x": (1, 2, 4, 4, 4)})
    transposed = spatially_dynamic_conv((4, 2, 2, 2, 2), "ConvTranspose")
    with pytest.raises(InputShapeError, match=r"reads 2 input channels .* expects 4"):
        analyse(transposed, {"x": (1, 2, 3, 3, 3)})


def test_input_smaller_than_a_conv_window_is_refused() -> None:
    # ONNX shape inference would report one output voxel here; torch and onnxruntime refuse.
    model = spatially_dynamic_conv((4, 2, 3, 3, 3))
    with pytest.raises(InputShapeError) as raised:
        analyse(model, {"x": (1, 2, 2, 8, 8)})
    assert str(raised.value) == (
        "node 'layer' (Conv) has a window of 3 on spatial axis 0 but its padded input is 2 "
        "long: the input is too small for the graph"
    )


def test_input_smaller_than_a_pooling_window_is_refused() -> None:
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2, 2], strides=[2, 2, 2]
    )
    model = make_model([node], [("x", [1, 1, "d", 4, 4])], [("y", None)])
    assert analyse(model, {"x": (1, 1, 2, 4, 4)}).shape("y") == (1, 1, 1, 2, 2)
    with pytest.raises(
        InputShapeError, match="'pool' \\(MaxPool\\) has a window of 2 on spatial axis 0"
    ):
        analyse(model, {"x": (1, 1, 1, 4, 4)})


def test_empty_tensor_is_refused() -> None:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="down")
    scales = np.array([1, 1, 0.25, 1, 1], dtype=np.float32)
    model = make_model([node], [("x", [1, 1, "d", 4, 4])], [("y", None)], {"scales": scales})
    assert analyse(model, {"x": (1, 1, 4, 4, 4)}).shape("y") == (1, 1, 1, 4, 4)
    with pytest.raises(InputShapeError) as raised:
        analyse(model, {"x": (1, 1, 2, 4, 4)})
    assert str(raised.value) == (
        "node 'down' (Resize) gives an empty tensor 'y' of shape 1x1x0x4x4 at input shapes "
        "x=1x1x2x4x4: the input is too small for the graph"
    )


def test_input_shape_that_breaks_a_hard_coded_linear() -> None:
    # The Gemm's weight fixes 1536 features: a bigger volume no longer fits.
    with pytest.raises(InputShapeError, match="node 'fc' \\(Gemm\\) does not fit its input shapes"):
        analyse(small_cnn(("d", "h", "w")), {"x": (1, 2, 32, 32, 32)})


def test_unknown_shape_names_the_tensor() -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Relu", ["x"], ["y"])]
    graph = analyse(make_model(nodes, [("x", [2, 3])], [("y", None)]))
    assert graph.tensors["nz"].shape is None
    with pytest.raises(InputShapeError, match="the shape of tensor 'nz'"):
        graph.shape("nz")


# --- Models the analysis refuses ----------------------------------------------------------


def test_control_flow_is_refused() -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["out"])],
        "branch",
        [],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2])],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
    ]
    model = make_model(nodes, [("x", [2])], [("y", [2])], {"zero": np.zeros((), np.float32)})
    with pytest.raises(UnsupportedModelError, match="sub-graphs: control flow is not supported"):
        analyse(model)


def test_require_convolution() -> None:
    require_convolution(analyse(small_cnn(), {"x": (1, 2, 16, 16, 16)}))
    transposed = spatially_dynamic_conv((2, 2, 2, 2, 2), "ConvTranspose")
    require_convolution(analyse(transposed, {"x": (1, 2, 3, 3, 3)}))
    mlp = make_model(
        [helper.make_node("Gemm", ["x", "w"], ["y"])],
        [("x", [1, 4])],
        [("y", None)],
        {"w": np.ones((4, 2), np.float32)},
    )
    with pytest.raises(UnsupportedModelError) as raised:
        require_convolution(analyse(mlp))
    assert str(raised.value) == (
        "test: the graph has no convolution (Conv or ConvTranspose) on its data path; "
        "ranp-onnx prunes the neurons of convolutional networks"
    )


def test_default_ir_version_model_is_analysed() -> None:
    graph_proto = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "ir14",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 3, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 1, 1, 1])],
        [onnx.numpy_helper.from_array(np.ones((1, 1, 3, 3, 3), np.float32), "w")],
    )
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 21)])
    assert model.ir_version == onnx.IR_VERSION
    graph = analyse(model)
    assert graph.opset == 21
    assert count_costs(graph).totals.macs == 27
