"""The paper's "Full" rows (shared reference, section 3) from the zoo's ONNX exports.

Counting needs only shapes, so the fully convolutional UNets are exported small with dynamic
spatial axes and analysed at the paper's size; MobileNetV2 and I3D (whose graphs fix their
padding and pooling at trace time) are exported at full size with the default options,
which also proves that a full-size default export works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from ranp_onnx import analyse, count_costs
from ranp_onnx.analysis.costs import CostReport
from ranp_onnx.cli.main import cli
from ranp_onnx.ir.save import save_model
from ranp_onnx.zoo import build_model, export_built, export_model

MB = float(1 << 20)
NEURON_OPS = ("Conv", "ConvTranspose", "Gemm")
#: RANP-f's resource vector: conv FLOPs of the ShapeNet 15-layer 3D-UNet, in layer order.
SHAPENET_15_CONV_FLOPS = [
    226492416, 14495514624, 3623878656, 7247757312, 1811939328, 3623878656, 905969664,
    1811939328, 21743271936, 7247757312, 43486543872, 14495514624, 86973087744, 28991029248,
    851968000,
]  # fmt: skip


def paper_costs(
    name: str, preset: str, traced: Sequence[int], full: Sequence[int], **kwargs: object
) -> CostReport:
    """Export ``name`` at ``traced`` (C, D, H, W) with dynamic axes, count at ``full``."""
    built = build_model(name, preset=preset, input_shape=traced)
    proto = export_built(built, dynamic=True)
    return count_costs(analyse(proto, {"": tuple(full)}), "ranp-paper")


def printed(report: CostReport) -> tuple[str, str, str]:
    """Params MB, GFLOPs and memory MB as the paper prints them."""
    totals = report.totals
    return f"{totals.params_mb:.2f}", f"{totals.gflops:.2f}", f"{totals.memory_mb:.2f}"


def neurons(report: CostReport) -> tuple[int, int]:
    """N (output channels of every Conv/ConvTranspose/Gemm) and the number of such layers."""
    layers = [layer for layer in report.layers if layer.op_type in NEURON_OPS]
    return sum(layer.geometry.channels_out or 0 for layer in layers if layer.geometry), len(layers)


def flops_of(report: CostReport, op_type: str) -> list[int]:
    return [layer.flops for layer in report.layers if layer.op_type == op_type]


@pytest.fixture(scope="module")
def shapenet_15() -> CostReport:
    return paper_costs("unet3d-15", "shapenet", (1, 8, 8, 8), (1, 1, 64, 64, 64))


@pytest.fixture(scope="module")
def full_size(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MobileNetV2-3D and I3D exported at their UCF101 size with every default."""
    folder = tmp_path_factory.mktemp("full")
    return {
        name: export_model(name, folder / f"{name}.onnx").path for name in ("mobilenetv2-3d", "i3d")
    }


def test_unet15_shapenet(shapenet_15: CostReport) -> None:
    assert printed(shapenet_15) == ("62.26", "237.85", "997.00")
    assert neurons(shapenet_15) == (2386, 15)
    assert flops_of(shapenet_15, "Conv") == SHAPENET_15_CONV_FLOPS
    assert sum(flops_of(shapenet_15, "Conv")) == 237_536_542_720
    assert sum(flops_of(shapenet_15, "BatchNormalization")) == 309_854_208
    # The memory figure includes the softmax's output: 50 x 64^3 floats = 50 MB.
    (softmax,) = [layer for layer in shapenet_15.layers if layer.op_type == "Softmax"]
    assert softmax.memory_bytes / MB == 50.0


def test_unet15_brats() -> None:
    report = paper_costs("unet3d-15", "brats", (4, 8, 8, 8), (1, 4, 128, 128, 128))
    assert printed(report) == ("15.57", "478.13", "3628.00")
    assert neurons(report) == (1173, 15)
    assert not [layer for layer in report.layers if layer.op_type == "Softmax"]


@pytest.mark.slow
def test_unet23_shapenet() -> None:
    """800 MB of weights: about 30 s, spent in torch's exporter."""
    report = paper_costs("unet3d-23", "shapenet", (1, 32, 32, 32), (1, 1, 64, 64, 64))
    assert f"{report.totals.gflops:.2f}" == "259.59"
    assert f"{report.totals.memory_mb:.2f}" == "1005.97"  # printed as 1005.96 in the text
    assert neurons(report) == (9042, 23)


def test_mobilenetv2(full_size: dict[str, Path]) -> None:
    report = count_costs(analyse(full_size["mobilenetv2-3d"]), "ranp-paper")
    assert printed(report) == ("9.47", "0.58", "157.47")
    assert neurons(report) == (17157, 53)


def test_i3d(full_size: dict[str, Path]) -> None:
    report = count_costs(analyse(full_size["i3d"]), "ranp-paper")
    params, gflops, memory = printed(report)
    assert (params, gflops) == ("47.27", "27.88")
    assert neurons(report) == (7381, 58)
    # The paper's 201.28 MB leaves out the ReLU outputs (the reference calls F.relu, which
    # its module-hook counter never sees) and counts the Dropout output (1024 floats), which
    # an eval-mode export drops. An ONNX graph has a Relu node either way.
    assert memory == "286.21"
    relu_mb = sum(layer.memory_bytes for layer in report.layers if layer.op_type == "Relu") / MB
    dropout_mb = 1024 * 4 / MB
    assert f"{relu_mb:.2f}" == "84.93"
    assert f"{report.totals.memory_mb - relu_mb + dropout_mb:.2f}" == "201.28"


def test_report_json_through_the_cli(
    shapenet_15: CostReport, full_size: dict[str, Path], tmp_path: Path
) -> None:
    unet = tmp_path / "unet.onnx"
    built = build_model("unet3d-15", preset="shapenet", input_shape=(1, 8, 8, 8))
    save_model(export_built(built, dynamic=True), unet)
    runner = CliRunner()
    for path, shape, expected in (
        (unet, ["--input-shape", "input=1x1x64x64x64"], (62.26, 237.85, 997.00)),
        (full_size["mobilenetv2-3d"], [], (9.47, 0.58, 157.47)),
    ):
        result = runner.invoke(
            cli, ["report", str(path), *shape, "--convention", "ranp-paper", "--json"]
        )
        assert result.exit_code == 0, result.output
        totals = json.loads(result.stdout)["totals"]
        assert (
            round(totals["params_mb"], 2),
            round(totals["gflops"], 2),
            round(totals["memory_mb"], 2),
        ) == expected
