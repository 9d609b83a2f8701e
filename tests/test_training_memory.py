"""The training-memory model: its breakdown, its definitions, and real steps measured."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from builders import export_module
from torch import nn

from ranp_onnx.analysis.channels import analyse_channels, pruned_shapes
from ranp_onnx.analysis.training_memory import (
    TrainingSetup,
    predict_training_memory,
    training_graph,
)
from ranp_onnx.analysis.training_memory.loss import SCALARS
from ranp_onnx.analysis.training_memory.timeline import CATEGORIES
from ranp_onnx.errors import InputShapeError, PlanError
from ranp_onnx.ir.units import parse_size
from ranp_onnx.reporting.training_step import measure_graph_step
from ranp_onnx.rewrite.surgery import rewrite
from ranp_onnx.zoo import build_model, export_built

SHAPE = (1, 16, 16, 16)
#: The model's promise: within this fraction of the measured peak.
TOLERANCE = 0.1

#: oneDNN's per-thread scratch follows the thread count (``tests/conftest.py``).
pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def unet() -> onnx.ModelProto:
    return export_built(build_model("unet3d-15", width_mult=0.125, input_shape=SHAPE, classes=4))


@pytest.fixture(scope="module")
def resnet() -> onnx.ModelProto:
    built = build_model("resnet3d-18", width_mult=0.125, input_shape=(3, 8, 32, 32), classes=5)
    return export_built(built)


@pytest.fixture(scope="module")
def clips() -> onnx.ModelProto:
    built = build_model("resnet3d-18", width_mult=0.25, input_shape=(3, 16, 32, 32), classes=5)
    return export_built(built)


def measured_peak(model: onnx.ModelProto, batch: int, setup: TrainingSetup) -> int:
    return measure_graph_step(training_graph(model, batch=batch), setup).peak_bytes


@pytest.mark.parametrize(
    ("network", "batch", "optimizer", "precision"),
    [
        ("unet", 1, "sgd", "float32"),
        ("unet", 2, "adam", "float32"),
        ("unet", 2, "momentum", "float32"),
        ("resnet", 2, "adamw", "float32"),
        ("clips", 2, "sgd", "bfloat16"),
    ],
)
@pytest.mark.usefixtures("verified_cpu")
def test_prediction_is_within_ten_percent_of_a_real_step(
    network: str, batch: int, optimizer: str, precision: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(network)
    setup = TrainingSetup(optimizer=optimizer, precision=precision)  # type: ignore[arg-type]
    predicted = predict_training_memory(training_graph(model, batch=batch), setup).peak_bytes
    measured = measured_peak(model, batch, setup)
    assert abs(predicted / measured - 1) <= TOLERANCE, (predicted, measured)


@pytest.mark.parametrize(
    ("kernel", "depth", "channels"),
    [(5, 3, 64), (5, 4, 64), (5, 6, 64), (3, 2, 128), (3, 3, 128)],
)
@pytest.mark.usefixtures("verified_cpu")
def test_a_wide_convolution_on_a_thin_volume_is_within_ten_percent(
    kernel: int, depth: int, channels: int
) -> None:
    """oneDNN's weight gradient on volumes about as deep as the kernel (VNet's last stages).

    A 5x5x5 kernel reduces over threads on inputs up to 3 deep, where every output slice's
    window spans the whole depth, not at 4 (the rule "depth under the kernel" predicted
    3.4 times the peak there); deeper, each further thread holds one weight-sized buffer.
    Not held here: a 3x3x3 kernel on 8^3 x 128 channels, where oneDNN holds part of such a
    buffer (the model says 1.15 times the peak; benchmarks/RESULTS.md, section g).
    """
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv3d(8, channels, 1),
        nn.Conv3d(channels, channels, kernel, padding=kernel // 2),
        nn.Conv3d(channels, 3, 1),
    )
    model = export_module(module.eval(), torch.randn(2, 8, depth, depth, depth))
    setup = TrainingSetup()
    predicted = predict_training_memory(training_graph(model, batch=2), setup).peak_bytes
    measured = measured_peak(model, 2, setup)
    assert abs(predicted / measured - 1) <= TOLERANCE, (predicted, measured)


def test_breakdown_adds_up_and_optimizer_state_is_its_definition(unet: onnx.ModelProto) -> None:
    graph = training_graph(unet, batch=2)
    parameters = {
        name: graph.tensors[name].nbytes
        for name in graph.initializer_names
        if graph.tensors[name].elem_type == onnx.TensorProto.FLOAT and "running" not in name
    }
    weights, count = sum(parameters.values()), len(parameters)
    results = {
        optimizer: predict_training_memory(graph, TrainingSetup(optimizer=optimizer))
        for optimizer in ("sgd", "momentum", "adam", "adamw")
    }
    for result in results.values():
        assert sum(result.breakdown[c] for c in CATEGORIES) == result.peak_bytes
        assert result.parameter_count == sum(parameters.values()) // 4
    assert results["sgd"].breakdown["optimizer state"] == 0
    assert results["momentum"].breakdown["optimizer state"] == weights
    assert results["adam"].breakdown["optimizer state"] == 2 * weights + 4 * count
    # The peak is in the backward, where the state simply adds to everything else.
    assert results["adam"].phase == results["sgd"].phase == "backward"
    assert results["adam"].peak_bytes - results["sgd"].peak_bytes == 2 * weights + 4 * count


def test_saved_activations_grow_linearly_with_the_batch(unet: onnx.ModelProto) -> None:
    one, two, three = (
        predict_training_memory(training_graph(unet, batch=b)).saved_after_forward
        for b in (1, 2, 3)
    )
    # Per sample: every activation; once: the Resize indices and the loss's scalars.
    assert three - two == two - one > 0
    once = 2 * one - two
    assert SCALARS < once < (two - one) / 100


def test_pruned_shapes_predict_what_the_rewritten_model_does(unet: onnx.ModelProto) -> None:
    graph = training_graph(unet, batch=2)
    channels = analyse_channels(graph)
    keep = np.random.default_rng(0).random(channels.unit_count) < 0.6
    keep |= np.array([bool(reason) for reason in channels.unit_fixed_reason])
    from_shapes = predict_training_memory(pruned_shapes(channels, keep))
    rewritten = predict_training_memory(training_graph(rewrite(channels, keep), batch=2))
    assert from_shapes.peak_bytes == rewritten.peak_bytes
    assert from_shapes.peak_bytes < predict_training_memory(graph).peak_bytes


def test_training_graph_frees_a_fixed_batch(unet: onnx.ModelProto) -> None:
    assert unet.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    graph = training_graph(unet, batch=3)
    assert graph.input_shapes[graph.input_names[0]] == (3, *SHAPE)
    with pytest.raises(InputShapeError, match=r"dimension 2 is fixed at 16 in the model, got 24$"):
        training_graph(unet, {"": (1, 1, 24, 24, 24)}, batch=2)
    built = build_model("unet3d-15", width_mult=0.125, input_shape=SHAPE, classes=4)
    dynamic = export_built(built, dynamic=True)
    patch = training_graph(dynamic, {"": (1, 1, 24, 24, 24)}, batch=2)
    assert patch.input_shapes["input"] == (2, 1, 24, 24, 24)
    assert patch.shape(patch.output_names[0]) == (2, 4, 24, 24, 24)


def test_a_graph_that_fixes_its_batch_is_refused_in_one_line() -> None:
    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.linear = torch.nn.Conv3d(1, 2, 3), torch.nn.Linear(2 * 216, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.conv(x).reshape(1, -1))

    model = export_module(Flat().eval(), torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(InputShapeError, match=r"exported at batch 1 .* dynamic batch axis"):
        training_graph(model, batch=2)


@pytest.mark.parametrize(
    ("text", "size"),
    [("11GB", 11 << 30), ("500 MB", 500 << 20), ("1.5GiB", 3 << 29), ("2048", 2048), ("4k", 4096)],
)
def test_sizes_are_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "11 GBs", "-1GB", "0MB", "eleven"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(PlanError):
        parse_size(text)
