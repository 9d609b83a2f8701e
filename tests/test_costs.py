"""Cost rules per op family, in both conventions, with hand-computed exact numbers.

Each test builds a one- or few-node graph with onnx.helper, so every number below can be
checked with pencil and paper; the derivation is in the comment next to it. The torch
cross-checks at the end compare MACs with ``torch.utils.flop_counter.FlopCounterMode`` on
modules exported by both torch exporters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
import torch
from builders import export_module, make_model
from onnx import TensorProto, helper
from torch.utils.flop_counter import FlopCounterMode

from ranp_onnx.analysis.costs import (
    CostReport,
    LayerCost,
    count_costs,
    parameter_source,
    peak_live_bytes,
)
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ir import runtime
from ranp_onnx.ops.einsum import einsum_cost, parse_equation

MB = float(1 << 20)


def reports(
    model: onnx.ModelProto, shapes: dict[str, Sequence[int]] | None = None
) -> tuple[CostReport, CostReport]:
    """The standard and the ranp-paper report of a model."""
    graph = analyse(model, shapes)
    return count_costs(graph, "standard"), count_costs(graph, "ranp-paper")


def only(report: CostReport) -> LayerCost:
    """The single layer of a one-node report."""
    assert len(report.layers) == 1, [layer.op_type for layer in report.layers]
    return report.layers[0]


def one_node(
    node: onnx.NodeProto,
    inputs: Sequence[tuple[str, Sequence[int]]],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
) -> tuple[LayerCost, LayerCost]:
    """Build ``node`` into a model and return its standard and ranp-paper costs."""
    model = make_model([node], inputs, [(node.output[0], None)], initializers, opset=opset)
    standard, paper = reports(model)
    return only(standard), only(paper)


def ones(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


# --- Conv ----------------------------------------------------------------------------------


def test_conv3d_with_bias() -> None:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1] * 6)
    standard, paper = one_node(
        node, [("x", [1, 2, 6, 6, 6])], {"w": ones(4, 2, 3, 3, 3), "b": ones(4)}
    )
    # out 1x4x6x6x6 = 864 elements, each reads C_in * 27 = 54 weights.
    assert standard.output_shapes == ((1, 4, 6, 6, 6),)
    assert standard.macs == paper.macs == 864 * 54 == 46656
    assert standard.flops == 2 * 46656 + 864  # bias add per output
    assert paper.flops == 864 * (54 + 1) == 47520
    assert standard.memory_bytes == paper.memory_bytes == 864 * 4
    assert standard.params == paper.params == 4 * 2 * 27 + 4
    assert standard.geometry is not None
    assert (standard.geometry.channels_in, standard.geometry.channels_out) == (2, 4)
    assert standard.geometry.kernel == (3, 3, 3)
    assert standard.geometry.strides == (1, 1, 1)
    assert standard.geometry.groups == 1


def test_conv1d_strided() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2])
    standard, paper = one_node(node, [("x", [2, 3, 10])], {"w": ones(5, 3, 3)})
    # out length (10 - 3) // 2 + 1 = 4: out 2x5x4 = 40 elements x (3 * 3) weights.
    assert standard.output_shapes == ((2, 5, 4),)
    assert standard.macs == 360
    assert standard.flops == 720
    assert paper.flops == 360
    assert standard.params == 45


def test_conv2d_dilated_padded() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], pads=[1, 0, 1, 0])
    standard, paper = one_node(node, [("x", [1, 4, 9, 9])], {"w": ones(6, 4, 3, 3)})
    # Effective kernel 5: H = 9 + 2 - 5 + 1 = 7, W = 9 - 5 + 1 = 5; 6*7*5 = 210 outputs x 36.
    assert standard.output_shapes == ((1, 6, 7, 5),)
    assert standard.macs == 210 * 36 == 7560
    assert paper.flops == 7560


def test_conv3d_grouped() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1] * 6)
    standard, paper = one_node(node, [("x", [1, 8, 4, 4, 4])], {"w": ones(12, 2, 3, 3, 3)})
    # out 1x12x4x4x4 = 768 elements, each reads C_in / groups * 27 = 54 weights.
    assert standard.macs == 768 * 54 == 41472
    assert paper.flops == 41472
    assert standard.geometry is not None and standard.geometry.groups == 4
    assert (standard.geometry.channels_in, standard.geometry.channels_out) == (8, 12)


def test_conv3d_depthwise() -> None:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=6)
    standard, paper = one_node(
        node, [("x", [1, 6, 5, 5, 5])], {"w": ones(6, 1, 3, 3, 3), "b": ones(6)}
    )
    # out 1x6x3x3x3 = 162 elements, each reads 1 * 27 weights.
    assert standard.macs == 162 * 27 == 4374
    assert standard.flops == 2 * 4374 + 162
    assert paper.flops == 162 * 28
    assert standard.params == 6 * 27 + 6


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_conv3d_auto_pad_same(auto_pad: str) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2, 1], auto_pad=auto_pad)
    model = make_model([node], [("x", [1, 2, 7, 7, 6])], [("y", None)], {"w": ones(3, 2, 3, 2, 3)})
    standard, paper = (only(r) for r in reports(model))
    # SAME: out = ceil(in / stride) = 4, 4, 6 whatever the kernel: 3*4*4*6 = 288 outputs,
    # each reads 2 * 3*2*3 = 36 weights (padding zeros are multiplied too, as torch counts).
    assert standard.output_shapes == ((1, 3, 4, 4, 6),)
    assert standard.macs == paper.flops == 288 * 36 == 10368
    # onnxruntime agrees on the output shape.
    session = runtime.make_session(model)
    (y,) = session.run(None, {"x": np.zeros((1, 2, 7, 7, 6), np.float32)})
    assert y.shape == (1, 3, 4, 4, 6)


# --- ConvTranspose ------------------------------------------------------------------------


def test_conv_transpose3d_stride2() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2, 2])
    standard, paper = one_node(
        node, [("x", [1, 4, 3, 3, 3])], {"w": ones(4, 2, 2, 2, 2), "b": ones(2)}
    )
    # Input 1x4x3x3x3 = 108 elements, each scattered into C_out * 8 = 16 outputs.
    assert standard.output_shapes == ((1, 2, 6, 6, 6),)
    assert standard.macs == paper.macs == 108 * 16 == 1728
    assert standard.flops == 2 * 1728 + 432  # out 1x2x6x6x6 = 432 bias adds
    # The reference counter: out_numel * (C_in * prod(k) + bias), stride^3 = 8 times more.
    assert paper.flops == 432 * (4 * 8 + 1) == 14256
    assert 8 * standard.macs == 432 * 4 * 8
    assert standard.params == 4 * 2 * 8 + 2
    assert standard.geometry is not None
    assert (standard.geometry.channels_in, standard.geometry.channels_out) == (4, 2)
    assert standard.geometry.strides == (2, 2, 2)


def test_conv_transpose3d_groups_output_padding() -> None:
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w"],
        ["y"],
        group=2,
        strides=[2, 2, 2],
        pads=[1] * 6,
        output_padding=[1, 1, 1],
    )
    standard, paper = one_node(node, [("x", [1, 4, 3, 3, 3])], {"w": ones(4, 3, 3, 3, 3)})
    # C_out = 3 * 2 = 6; out = (3 - 1) * 2 - 2 + 3 + 1 = 6 per axis.
    assert standard.output_shapes == ((1, 6, 6, 6, 6),)
    # 108 inputs, each into C_out / groups * 27 = 81 outputs.
    assert standard.macs == 108 * 81 == 8748
    # Reference: 1296 outputs x C_in / groups * 27.
    assert paper.flops == 1296 * 2 * 27 == 69984
    assert standard.geometry is not None and standard.geometry.groups == 2
    assert standard.geometry.channels_out == 6


# --- Gemm / MatMul ------------------------------------------------------------------------


def test_gemm_trans_b_alpha_beta() -> None:
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)
    standard, paper = one_node(node, [("a", [3, 5])], {"w": ones(4, 5), "c": ones(4)})
    # M=3, K=5, N=4: 60 MACs; per output: bias add, alpha scale, beta scale.
    assert standard.macs == 60
    assert standard.flops == 120 + 3 * 12 == 156
    assert paper.flops == 120  # Linear: 2 x in x out per row
    assert standard.params == 24
    assert standard.memory_bytes == paper.memory_bytes == 12 * 4
    assert standard.geometry is not None
    assert (standard.geometry.channels_in, standard.geometry.channels_out) == (5, 4)


def test_gemm_trans_a_without_bias() -> None:
    node = helper.make_node("Gemm", ["a", "w"], ["y"], transA=1)
    standard, paper = one_node(node, [("a", [5, 3])], {"w": ones(5, 4)})
    assert standard.output_shapes == ((3, 4),)
    assert standard.macs == 60
    assert standard.flops == paper.flops == 120


def test_matmul_batched_between_activations() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    standard, paper = one_node(node, [("a", [2, 3, 4, 5]), ("b", [2, 3, 5, 6])])
    # out 2x3x4x6 = 144 elements, K = 5.
    assert standard.macs == 720
    assert standard.flops == 1440
    # The reference counter only counts Linear layers (a weight operand).
    assert paper.flops == 0
    assert paper.memory_bytes == 0
    assert standard.params == 0


def test_matmul_broadcast() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    standard, _ = one_node(node, [("a", [2, 1, 4, 5]), ("b", [3, 5, 6])])
    assert standard.output_shapes == ((2, 3, 4, 6),)
    assert standard.macs == 144 * 5


def test_matmul_with_weight_is_linear() -> None:
    node = helper.make_node("MatMul", ["a", "w"], ["y"])
    standard, paper = one_node(node, [("a", [2, 4, 5])], {"w": ones(5, 6)})
    # out 2x4x6 = 48 elements, K = 5.
    assert standard.macs == 240
    assert paper.flops == 480
    assert paper.memory_bytes == 48 * 4
    assert standard.params == 30


# --- Einsum -------------------------------------------------------------------------------


def einsum_node(equation: str, count: int) -> onnx.NodeProto:
    return helper.make_node("Einsum", [f"x{i}" for i in range(count)], ["y"], equation=equation)


def test_einsum_attention_scores() -> None:
    node = einsum_node("blxd,blyd->blxy", 2)
    standard, paper = one_node(node, [("x0", [2, 3, 4, 5]), ("x1", [2, 3, 6, 5])])
    # One batched product: batch b x l = 6, M = x = 4, N = y = 6, K = d = 5.
    assert standard.output_shapes == ((2, 3, 4, 6),)
    assert standard.macs == 6 * 4 * 6 * 5 == 720
    assert standard.flops == 1440
    assert paper.flops == 0 and paper.memory_bytes == 0  # a function, not a module
    assert standard.params == 0


def test_einsum_sums_within_an_operand_then_multiplies() -> None:
    # b only in x0 and d only in x1 are summed first (24 and 20 adds), then a 2 x 4 @ 4 x 1.
    standard, _ = one_node(einsum_node("abc,cd->a", 2), [("x0", [2, 3, 4]), ("x1", [4, 5])])
    assert standard.macs == 8
    assert standard.flops == 2 * 8 + 24 + 20


def test_einsum_without_a_shared_label_is_an_elementwise_product() -> None:
    standard, _ = one_node(einsum_node("i,j->ij", 2), [("x0", [3]), ("x1", [4])])
    assert standard.macs == 0 and standard.flops == 12


def test_einsum_weight_operand_is_a_parameter() -> None:
    node = helper.make_node("Einsum", ["x", "w"], ["y"], equation="nc,ck->nk")
    standard, _ = one_node(node, [("x", [2, 3])], {"w": ones(3, 4)})
    assert standard.params == 12
    assert standard.macs == 2 * 3 * 4


#: (equation, operand shapes), torch's lowering cases: batch-like and free labels, labels
#: summed within one operand, broadcasting (a size-1 label, ellipses of different widths),
#: diagonals, implicit outputs, elementwise products, 3 and 4 operands.
TORCH_EINSUMS = [
    ("blxd,blyd->blxy", [(2, 4, 8, 12), (2, 4, 8, 12)]),
    ("bhxy,bhyd->bhxd", [(2, 4, 8, 8), (2, 4, 8, 12)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij,jk->ijk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(1, 3, 4), (5, 4, 6)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)]),
    ("...ij,...jk->...ik", [(2, 1, 4, 5), (3, 5, 6)]),
    ("ii", [(4, 4)]),
    ("iij,jk->ik", [(3, 3, 4), (4, 5)]),
    ("abc,cd->a", [(2, 3, 4), (4, 5)]),
    ("bcx,cx->bc", [(2, 3, 1), (3, 5)]),
    ("ab,ab->", [(2, 3), (2, 3)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ("ab,bc,cd,de->ae", [(2, 3), (3, 4), (4, 5), (5, 6)]),
    ("abc,abd,ae->cde", [(2, 3, 4), (2, 3, 5), (2, 6)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("Ab,bA->A", [(3, 4), (4, 3)]),
    ("aB,BC", [(2, 3), (3, 4)]),
]


@pytest.mark.parametrize(("equation", "shapes"), TORCH_EINSUMS)
def test_einsum_macs_agree_with_torch_flop_counter(
    equation: str, shapes: list[tuple[int, ...]]
) -> None:
    operands = [torch.randn(shape) for shape in shapes]
    with torch.backends.opt_einsum.flags(enabled=False), FlopCounterMode(display=False) as counter:
        expected = torch.einsum(equation, *operands)
    parsed = parse_equation(equation, [len(shape) for shape in shapes])
    assert 2 * einsum_cost(parsed, shapes).macs == counter.get_total_flops()
    sizes = parsed.sizes(shapes)
    assert tuple(sizes[label] for label in parsed.output) == tuple(expected.shape)


# --- Normalisation ------------------------------------------------------------------------


def test_batch_norm_inference() -> None:
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    stats = {name: ones(3) for name in ("s", "b", "m", "v")}
    standard, paper = one_node(node, [("x", [1, 3, 4, 4, 4])], stats)
    # 192 elements: scale and shift (2) / the reference's 4 per element.
    assert standard.flops == 384
    assert paper.flops == 768
    assert standard.macs == 0
    assert standard.params == 6  # gamma and beta; running statistics are buffers
    assert paper.memory_bytes == 192 * 4


def test_batch_norm_training_mode() -> None:
    node = helper.make_node(
        "BatchNormalization",
        ["x", "s", "b", "m", "v"],
        ["y", "running_mean", "running_var"],
        training_mode=1,
    )
    stats = {name: ones(3) for name in ("s", "b", "m", "v")}
    standard, paper = one_node(node, [("x", [2, 3, 4, 4, 4])], stats, opset=15)
    # 384 elements: batch statistics (8 per element); the reference still counts 4.
    assert standard.flops == 8 * 384
    assert paper.flops == 4 * 384
    assert standard.params == 6
    # Standard memory: every output (y and the two updated statistics); the reference: y.
    assert standard.memory_bytes == (384 + 3 + 3) * 4
    assert paper.memory_bytes == 384 * 4


def test_instance_norm() -> None:
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])
    standard, paper = one_node(node, [("x", [2, 3, 4, 4, 4])], {"s": ones(3), "b": ones(3)})
    assert standard.flops == 8 * 384
    assert paper.flops == 4 * 384
    assert standard.params == 6


# --- Pooling ------------------------------------------------------------------------------


def test_max_pool() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    standard, paper = one_node(node, [("x", [1, 2, 4, 4, 4])])
    # 16 outputs, 7 comparisons each; free in the reference, but its output memory counts.
    assert standard.flops == 16 * 7
    assert paper.flops == 0
    assert paper.memory_bytes == 16 * 4
    assert standard.geometry is not None and standard.geometry.kernel == (2, 2, 2)


def test_average_pool() -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3, 3], pads=[1] * 6)
    standard, paper = one_node(node, [("x", [1, 2, 4, 4, 4])])
    # 128 outputs over a 27 window: 26 adds + 1 divide / the reference's 27 + 1.
    assert standard.flops == 128 * 27
    assert paper.flops == 128 * 28


def test_global_average_pool() -> None:
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    standard, paper = one_node(node, [("x", [1, 2, 4, 4, 4])])
    # One add per input element (128); the reference: 2 outputs x (64 + 1).
    assert standard.output_shapes == ((1, 2, 1, 1, 1),)
    assert standard.flops == 128
    assert paper.flops == 130
    assert standard.geometry is not None and standard.geometry.kernel == (4, 4, 4)


def test_global_max_pool() -> None:
    node = helper.make_node("GlobalMaxPool", ["x"], ["y"])
    standard, paper = one_node(node, [("x", [1, 2, 4, 4, 4])])
    assert standard.flops == 128 - 2
    assert paper.flops == 0


# --- Resize -------------------------------------------------------------------------------


def test_resize_nearest_is_free() -> None:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    scales = np.array([1, 1, 2, 2, 2], dtype=np.float32)
    standard, paper = one_node(node, [("x", [1, 2, 2, 2, 2])], {"scales": scales})
    assert standard.output_shapes == ((1, 2, 4, 4, 4),)
    assert standard.flops == paper.flops == 0
    assert standard.memory_bytes == 128 * 4
    assert paper.memory_bytes == 0  # interpolation is not counted by the reference
    assert standard.params == 0  # scales are not parameters


def test_resize_linear_3d() -> None:
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    scales = np.array([1, 1, 2, 2, 2], dtype=np.float32)
    standard, paper = one_node(node, [("x", [1, 2, 2, 2, 2])], {"scales": scales})
    # 128 outputs, 3 resized axes: 8 taps, 8 multiplies and 7 adds each.
    assert standard.flops == 128 * 15
    assert paper.flops == 0


def test_resize_linear_2d_by_sizes() -> None:
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")
    sizes = np.array([1, 1, 6, 6], dtype=np.int64)
    model = make_model([node], [("x", [1, 1, 3, 3])], [("y", None)], {"sizes": sizes})
    standard, _ = (only(r) for r in reports(model))
    # 36 outputs, 2 resized axes: 4 taps -> 4 multiplies and 3 adds.
    assert standard.output_shapes == ((1, 1, 6, 6),)
    assert standard.flops == 36 * 7


# --- Elementwise, activations, Softmax ----------------------------------------------------


def test_add_with_broadcasting() -> None:
    node = helper.make_node("Add", ["x", "c"], ["y"])
    standard, paper = one_node(node, [("x", [1, 4, 3, 3, 3])], {"c": ones(1, 4, 1, 1, 1)})
    assert standard.output_shapes == ((1, 4, 3, 3, 3),)
    assert standard.flops == 108
    assert paper.flops == 0
    assert paper.memory_bytes == 0  # functional in the reference's models
    assert standard.params == 0  # not a layer's bias: x comes from the input


def test_mul_broadcast_both_sides() -> None:
    node = helper.make_node("Mul", ["a", "b"], ["y"])
    standard, _ = one_node(node, [("a", [2, 1, 3]), ("b", [4, 1])])
    assert standard.output_shapes == ((2, 4, 3),)
    assert standard.flops == 24


def test_sum_of_three() -> None:
    node = helper.make_node("Sum", ["a", "b", "c"], ["y"])
    standard, _ = one_node(node, [("a", [2, 5]), ("b", [2, 5]), ("c", [5])])
    assert standard.flops == 2 * 10


def test_relu() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    standard, paper = one_node(node, [("x", [1, 2, 3, 3, 3])])
    assert standard.flops == 54
    assert paper.flops == 0
    assert standard.memory_bytes == paper.memory_bytes == 54 * 4


def test_softmax_over_channels() -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    standard, paper = one_node(node, [("x", [2, 5, 3])])
    # 30 elements x (exp, sum, divide); the reference: B * (3 C - 1), C = 5.
    assert standard.flops == 90
    assert paper.flops == 2 * (3 * 5 - 1)
    assert paper.memory_bytes == 30 * 4


def test_softmax_default_axis_opset13() -> None:
    node = helper.make_node("Softmax", ["x"], ["y"])
    _, paper = one_node(node, [("x", [2, 5, 3])], opset=13)
    assert paper.flops == 2 * (3 * 3 - 1)  # axis -1


# --- Totals, memory, parameters -----------------------------------------------------------


def liveness_model() -> onnx.ModelProto:
    """x -> a=Relu -> b=Neg(a) -> c=Concat(a,b) -> d=MaxPool(c) -> y=Relu(d), z=Sigmoid(b)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["z"]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        helper.make_node("Shape", ["d"], ["s"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    return make_model(nodes, [("x", [1, 1, 4, 4, 4])], [("y", None)])


def test_peak_live_memory_hand_computed() -> None:
    graph = analyse(liveness_model())
    # Bytes: a 256, b 256, z 256 (never read), c 512, d 64, y 64; x (input) and s (static,
    # a shape) are not activations. Live ranges over node steps 0..6:
    # a [0, 3], b [1, 3], z [2, 2], c [3, 4], d [4, 6], y [6, end].
    # step 0: 256; 1: 512; 2: 768; 3: a + b + c = 1024; 4: c + d = 576; 5: 64; 6: 128.
    assert peak_live_bytes(graph) == 1024
    standard = count_costs(graph)
    assert standard.totals.peak_memory_mb == 1024 / MB
    assert standard.totals.memory_mb == (256 * 3 + 512 + 64 + 64) / MB
    assert [layer.op_type for layer in standard.layers] == [
        "Relu",
        "Neg",
        "Sigmoid",
        "Concat",
        "MaxPool",
        "Relu",
    ]
    # The reference counts Relu, Sigmoid (activation layers) and MaxPool, not Neg or Concat.
    paper = count_costs(graph, "ranp-paper")
    assert paper.totals.memory_mb == (64 + 64 + 16 + 16) * 4 / MB
    assert paper.totals.peak_memory_mb == standard.totals.peak_memory_mb


def test_totals_are_sums_in_both_conventions() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 6),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    weights = {"w": ones(4, 2, 3, 3, 3), "b": ones(4)}
    weights.update({name: ones(4) for name in ("s", "t", "m", "v")})
    model = make_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)], weights)
    standard, paper = reports(model)
    # Conv: 256 outputs x 54 = 13824 MACs; BN and ReLU over 256 elements.
    assert standard.totals.macs == paper.totals.macs == 13824
    assert standard.totals.flops == (2 * 13824 + 256) + 2 * 256 + 256
    assert paper.totals.flops == 256 * 55 + 4 * 256
    assert paper.totals.gflops == paper.totals.flops / 1e9
    assert standard.totals.params == paper.totals.params == 216 + 4 + 8
    assert standard.totals.params_mb == 228 * 4 / MB
    assert paper.totals.memory_mb == 3 * 256 * 4 / MB
    # c and n are live together, then n and y.
    assert standard.totals.peak_memory_mb == 2 * 1024 / MB
    document = standard.to_json()
    assert document["totals"]["macs"] == 13824
    assert [layer["name"] for layer in document["layers"]] == [
        "Conv_0",
        "BatchNormalization_1",
        "Relu_2",
    ]


def test_float16_parameters_and_memory_use_their_size() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    model = make_model(
        [node],
        [("x", [1, 2, 3, 3, 3])],
        [("y", None)],
        {"w": np.ones((4, 2, 3, 3, 3), np.float16)},
        elem_type=TensorProto.FLOAT16,
    )
    standard, paper = reports(model)
    assert standard.totals.params == 216
    assert standard.totals.params_mb == 216 * 2 / MB  # stored size
    assert paper.totals.params_mb == 216 * 4 / MB  # the reference's 4 bytes each
    assert only(standard).memory_bytes == 4 * 2
    assert only(paper).memory_bytes == 4 * 4


def test_shared_initializer_counts_once() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1] * 6),
        helper.make_node("Conv", ["a", "w"], ["y"], pads=[1] * 6),
    ]
    model = make_model(nodes, [("x", [1, 2, 3, 3, 3])], [("y", None)], {"w": ones(2, 2, 3, 3, 3)})
    standard, _ = reports(model)
    assert [layer.params for layer in standard.layers] == [108, 0]
    assert standard.totals.params == 108


def test_parameters_through_views_count_once() -> None:
    # MatMul(x, Transpose(W)) twice, through two Transpose nodes, plus a Cast'ed bias.
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt1"], perm=[1, 0]),
        helper.make_node("Transpose", ["w"], ["wt2"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt1"], ["a"]),
        helper.make_node("MatMul", ["a", "wt2"], ["m"]),
        helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    initializers = {"w": ones(4, 4), "b16": np.ones(4, np.float16)}
    model = make_model(nodes, [("x", [2, 4])], [("y", None)], initializers)
    graph = analyse(model)
    assert parameter_source(graph, "wt1") == parameter_source(graph, "wt2") == "w"
    assert parameter_source(graph, "b") == "b16"
    assert parameter_source(graph, "a") is None  # computed from the input
    standard, paper = reports(model)
    assert [(layer.op_type, layer.params) for layer in standard.layers] == [
        ("MatMul", 16),
        ("MatMul", 0),
        ("Add", 4),
    ]
    assert standard.totals.params_mb == (16 * 4 + 4 * 2) / MB
    # Both MatMuls read a static weight: Linear layers for the reference counter.
    assert paper.totals.flops == 2 * (2 * 2 * 4 * 4)


def test_identity_aliases_are_parameters_of_their_own() -> None:
    # torch's exporter de-duplicates equal-valued initializers: layer 2 reads layer 1's
    # gamma through an Identity named after its own parameter.
    nodes = [
        helper.make_node("Identity", ["bn1.weight"], ["bn2.weight"]),
        helper.make_node("Identity", ["bn1.bias"], ["bn2.bias"]),
        helper.make_node("Identity", ["bn1.weight"], ["bn1.running_var"]),
        helper.make_node("Identity", ["bn1.bias"], ["bn1.running_mean"]),
        helper.make_node(
            "BatchNormalization",
            ["x", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"],
            ["a"],
        ),
        helper.make_node(
            "BatchNormalization",
            ["a", "bn2.weight", "bn2.bias", "bn1.running_mean", "bn1.running_var"],
            ["y"],
        ),
    ]
    initializers = {"bn1.weight": ones(3), "bn1.bias": np.zeros(3, np.float32)}
    model = make_model(nodes, [("x", [1, 3, 2, 2, 2])], [("y", None)], initializers)
    standard, _ = reports(model)
    assert [layer.params for layer in standard.layers] == [6, 6]
    assert standard.totals.params == 12


def test_uncounted_op_is_reported() -> None:
    node = helper.make_node("Det", ["x"], ["y"])
    model = make_model([node], [("x", [2, 3, 3])], [("y", [2])], opset=17)
    standard, _ = reports(model)
    assert standard.uncounted == {"Det": 1}
    assert only(standard).counted is False
    assert only(standard).flops == 0


def test_unknown_convention_is_refused() -> None:
    graph = analyse(liveness_model())
    with pytest.raises(ValueError, match="convention"):
        count_costs(graph, "thop")  # type: ignore[arg-type]


# --- Cross-checks against torch's flop counter --------------------------------------------


def torch_macs(module: torch.nn.Module, inputs: torch.Tensor) -> int:
    """MACs by torch's FlopCounterMode (which counts 2 FLOPs per MAC)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(inputs)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


class ResidualBlock(torch.nn.Module):
    """Conv-BN-ReLU-Conv-BN plus the input, then ReLU; a strided 1x1 projection branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv3d(3, 6, 3, stride=2, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm3d(6)
        self.conv2 = torch.nn.Conv3d(6, 6, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm3d(6)
        self.project = torch.nn.Conv3d(3, 6, 1, stride=2)
        self.head = torch.nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)) + self.project(x))
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool3d(y, 1), 1))


class TinyUNet(torch.nn.Module):
    """Two levels, max-pool down, ConvTranspose up, skip concatenation, 1x1x1 head."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.Sequential(
            torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.BatchNorm3d(4), torch.nn.ReLU()
        )
        self.down = torch.nn.MaxPool3d(2)
        self.mid = torch.nn.Sequential(
            torch.nn.Conv3d(4, 8, 3, padding=1, groups=2), torch.nn.ReLU()
        )
        self.up = torch.nn.ConvTranspose3d(8, 4, 2, stride=2)
        self.dec = torch.nn.Conv3d(8, 4, 3, padding=1)
        self.head = torch.nn.Conv3d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        y = self.up(self.mid(self.down(skip)))
        y = torch.relu(self.dec(torch.cat([skip, y], dim=1)))
        return torch.softmax(self.head(y), dim=1)


class Attention(torch.nn.Module):
    """Self-attention over the voxels of a feature map, written with einsum as MONAI does."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(6, 3 * 6, bias=False)
        self.out = torch.nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # [N, voxels, 6]
        q, k, v = self.qkv(tokens).reshape(x.shape[0], -1, 3, 2, 3).permute(2, 0, 3, 1, 4)
        weights = torch.einsum("blxd,blyd->blxy", q, k).softmax(dim=-1)
        heads = torch.einsum("bhxy,bhyd->bhxd", weights, v)
        return self.out(heads.transpose(1, 2).flatten(2))


def cross_check_cases() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "conv3d": (torch.nn.Conv3d(3, 5, 3, padding=1), torch.randn(1, 3, 6, 6, 6)),
        "conv_transpose3d_stride2": (
            torch.nn.ConvTranspose3d(6, 4, 3, stride=2, padding=1, output_padding=1),
            torch.randn(1, 6, 3, 4, 5),
        ),
        "grouped_conv3d": (
            torch.nn.Conv3d(8, 12, 3, groups=4, padding=(0, 1, 1), stride=(1, 2, 2)),
            torch.randn(2, 8, 5, 6, 6),
        ),
        "depthwise_conv3d": (
            torch.nn.Conv3d(6, 6, 3, groups=6, padding=1, bias=False),
            torch.randn(1, 6, 4, 4, 4),
        ),
        "linear": (torch.nn.Linear(20, 7), torch.randn(3, 20)),
        "residual_block": (ResidualBlock(), torch.randn(1, 3, 8, 8, 8)),
        "tiny_unet": (TinyUNet(), torch.randn(1, 2, 8, 8, 8)),
        "einsum_attention": (Attention(), torch.randn(2, 6, 2, 3, 4)),
    }


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("case", list(cross_check_cases()))
def test_macs_agree_with_torch_flop_counter(case: str, exporter: str) -> None:
    module, inputs = cross_check_cases()[case]
    module.eval()
    model = export_module(module, inputs, exporter=exporter)
    report = count_costs(analyse(model))
    assert report.totals.macs == torch_macs(module, inputs)
    assert report.uncounted == {}
    if exporter == "torchscript":
        # Every torch parameter is counted once (the dynamo exporter folds BN away).
        assert report.totals.params == sum(p.numel() for p in module.parameters())


def test_conv_transpose_macs_match_torch_not_output_based_count() -> None:
    module = torch.nn.ConvTranspose3d(4, 2, 2, stride=2)
    inputs = torch.randn(1, 4, 3, 3, 3)
    standard, paper = reports(export_module(module, inputs))
    assert standard.totals.macs == torch_macs(module, inputs) == 108 * 2 * 8
    # The reference convention keeps the stride^3 overcount (plus one per output for bias).
    assert paper.totals.flops == 432 * (4 * 8 + 1)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_linear_on_3d_input_counts_bias_once(exporter: str) -> None:
    # Exported as MatMul + Add: the Add's operand is the Linear's bias.
    module = torch.nn.Linear(5, 3)
    inputs = torch.randn(2, 4, 5)
    standard, paper = reports(export_module(module, inputs, exporter=exporter))
    assert standard.totals.macs == torch_macs(module, inputs) == 8 * 3 * 5
    assert standard.totals.params == 18
    assert paper.totals.flops == 2 * 8 * 3 * 5


def test_torchscript_deduplicated_batch_norms_count_like_torch() -> None:
    module = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1),
        torch.nn.BatchNorm3d(4),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 4, 3, padding=1),
        torch.nn.BatchNorm3d(4),
    ).eval()
    model = export_module(module, torch.randn(1, 2, 4, 4, 4))
    # The exporter shares the second BN's ones/zeros with the first through Identity nodes.
    assert any(node.op_type == "Identity" for node in model.graph.node)
    standard, paper = reports(model)
    expected = sum(p.numel() for p in module.parameters())
    assert standard.totals.params == paper.totals.params == expected == 672
    assert paper.totals.params_mb == expected * 4 / MB


def test_report_json_round_trip() -> None:
    module, inputs = cross_check_cases()["tiny_unet"]
    report = count_costs(analyse(export_module(module.eval(), inputs)), "ranp-paper")
    document = report.to_json()
    assert document["convention"] == "ranp-paper"
    assert sum(layer["macs"] for layer in document["layers"]) == document["totals"]["macs"]
    assert sum(layer["params"] for layer in document["layers"]) == document["totals"]["params"]
