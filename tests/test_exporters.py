"""The model zoo: small versions of every model export with both exporters, pass the checker,
run in onnxruntime like the torch module, and are read by analyse and count_costs; the
export command's exit codes and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from ranp_onnx import analyse, count_costs
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import InputShapeError, OutputExistsError
from ranp_onnx.selection.criteria import PRESET_KEY
from ranp_onnx.zoo import (
    EXPORTERS,
    ZOO,
    ZooError,
    build_model,
    export_built,
    export_model,
    parse_volume_shape,
)
from ranp_onnx.zoo.export import METADATA_KEY

#: (width multiplier, input C, D, H, W) of each model's small test version.
SMALL: dict[str, tuple[float, tuple[int, int, int, int]]] = {
    "unet3d-15": (0.125, (1, 16, 16, 16)),
    "unet3d-23": (1 / 16, (1, 32, 32, 32)),
    "mobilenetv2-3d": (0.25, (3, 8, 32, 32)),
    "i3d": (0.125, (3, 9, 33, 33)),  # odd sizes: uneven SAME padding
    "c3d": (0.125, (3, 9, 16, 16)),
    "resnet3d-18": (0.125, (3, 8, 32, 32)),
}
LAYERS = (torch.nn.Conv3d, torch.nn.Linear)


def test_every_zoo_model_has_a_small_version() -> None:
    assert set(SMALL) == set(ZOO)


def torch_macs(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the module's convs and linear layers, from forward hooks."""
    total = 0

    def hook(layer: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        weight = layer.weight  # type: ignore[union-attr]
        total += output.numel() * int(np.prod(weight.shape[1:]))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, LAYERS)]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_model_matches_torch(name: str, exporter: str, tmp_path: Path) -> None:
    width, shape = SMALL[name]
    result = export_model(
        name, tmp_path / "model.onnx", width_mult=width, input_shape=shape, exporter=exporter
    )  # type: ignore[arg-type]
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)

    built = build_model(name, width_mult=width, input_shape=shape)  # the same seed
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = built.module(x).numpy()
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": x.numpy()})
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)

    graph = analyse(result.path)
    for convention in ("standard", "ranp-paper"):
        report = count_costs(graph, convention)  # type: ignore[arg-type]
        assert not report.uncounted
        assert report.totals.macs == torch_macs(built.module, x)
    layers = [m for m in built.module.modules() if isinstance(m, LAYERS)]
    counted = [n for n in graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert len(counted) == len(layers)


def test_torchscript_export_keeps_parameter_names_and_values() -> None:
    width, shape = SMALL["unet3d-15"]
    built = build_model("unet3d-15", width_mult=width, input_shape=shape)
    proto = export_built(built)
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for name, parameter in built.module.named_parameters():
        np.testing.assert_array_equal(initializers[name], parameter.detach().numpy())
    assert not [n for n in proto.graph.node if n.op_type == "Identity"]
    assert [n.op_type for n in proto.graph.node].count("BatchNormalization") == 14
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata[PRESET_KEY] == "shapenet"
    assert json.loads(metadata[METADATA_KEY])["width_mult"] == width


def test_dynamic_export_runs_at_another_size() -> None:
    built = build_model("unet3d-15", width_mult=0.125, input_shape=(1, 8, 8, 8))
    proto = export_built(built, dynamic=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 1, 16, 24, 8)
    with torch.no_grad():
        expected = built.module(x).numpy()
    (actual,) = session.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert count_costs(analyse(proto, {"": (2, 1, 16, 24, 8)})).totals.flops > 0


def test_initialization_is_the_papers_and_seeded() -> None:
    module = build_model("unet3d-15", width_mult=0.5, input_shape=(1, 8, 8, 8)).module
    conv = module.decoders[0].conv1.conv  # 384 -> 128 at half width: 331,776 weights
    fan_in, fan_out = conv.in_channels * 27, conv.out_channels * 27
    std = float(conv.weight.detach().std())
    assert std == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.02)
    bn = module.decoders[0].conv1.bn
    assert float(bn.weight.detach().mean()) == pytest.approx(1.0, abs=0.01)
    assert float(bn.weight.detach().std()) == pytest.approx(0.02, rel=0.3)
    assert not bn.bias.any()
    assert float(module.head.bias.detach().std()) > 0.5  # N(0, 1)
    again = build_model("unet3d-15", width_mult=0.5, input_shape=(1, 8, 8, 8)).module
    other = build_model("unet3d-15", width_mult=0.5, input_shape=(1, 8, 8, 8), seed=1).module
    assert torch.equal(conv.weight, again.decoders[0].conv1.conv.weight)
    assert not torch.equal(conv.weight, other.decoders[0].conv1.conv.weight)


def test_orthogonal_initialization() -> None:
    built = build_model(
        "unet3d-15", width_mult=0.125, input_shape=(1, 8, 8, 8), initialization="orthogonal"
    )
    weight = built.module.decoders[0].conv1.conv.weight.detach().reshape(32, -1)  # 32 x 2592
    np.testing.assert_allclose((weight @ weight.T).numpy(), np.eye(32), atol=1e-4)


def test_library_refusals(tmp_path: Path) -> None:
    with pytest.raises(ZooError, match="unet3d-15, unet3d-23"):
        build_model("unet3d-99")
    with pytest.raises(ZooError, match="presets: ucf101"):
        build_model("i3d", preset="brats")
    with pytest.raises(ZooError, match="`width_mult`"):
        build_model("c3d", width_mult=-1)
    with pytest.raises(InputShapeError, match="at least 32x32x32"):
        build_model("unet3d-23", input_shape=(1, 16, 64, 64))
    with pytest.raises(InputShapeError):
        parse_volume_shape("1,64,64")
    assert parse_volume_shape("4x8x8x8") == (4, 8, 8, 8)
    existing = tmp_path / "taken.onnx"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        export_model("c3d", existing)
    with pytest.raises(ZooError, match="torchscript"):
        export_model("c3d", tmp_path / "new.onnx", exporter="dynamo", dynamic=True)
    assert existing.read_bytes() == b"keep" and not (tmp_path / "new.onnx").exists()


SMALL_UNET = ["unet3d-15", "--width-mult", "0.125", "--input-shape", "1,8,8,8"]


def test_cli_export_writes_once_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "unet.onnx"
    result = runner.invoke(cli, ["export", *SMALL_UNET, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}") and result.stdout.count("\n") == 1
    before = out.read_bytes()
    onnx.checker.check_model(onnx.load_from_string(before))

    again = runner.invoke(cli, ["export", *SMALL_UNET, "--seed", "3", "-o", str(out)])
    assert again.exit_code == 1
    assert "exists" in again.stderr and "Traceback" not in again.output
    assert out.read_bytes() == before

    forced = runner.invoke(cli, ["export", *SMALL_UNET, "--seed", "3", "-o", str(out), "--force"])
    assert forced.exit_code == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nope"], "no model 'nope' in the zoo (models: unet3d-15"),
        (["i3d", "--preset", "shapenet"], "i3d has no preset 'shapenet'"),
        (["unet3d-15", "--input-shape", "1,8,8"], "expected C,D,H,W"),
        (["unet3d-15", "--input-shape", "1,a,8,8"], "expected C,D,H,W"),
        (["unet3d-15", "--input-shape", "1,4,4,4"], "at least 8x8x8"),
        (["unet3d-15", "--classes", "0"], "--classes"),
        (["unet3d-15", "--exporter", "dynamo", "--dynamic"], "torchscript"),
        (["unet3d-15", "--exporter", "onnxscript"], "onnxscript"),
        (["unet3d-15", "--opset", "5"], "opsets 13 to 20"),
    ],
)
def test_cli_export_errors(arguments: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(cli, ["export", *arguments, "-o", str(out)])
    # An option value click itself rejects is a usage error (2); the rest are user errors.
    assert result.exit_code == (2 if "onnxscript" in arguments else 1)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_cli_export_list() -> None:
    result = CliRunner().invoke(cli, ["export", "--list"])
    assert result.exit_code == 0
    for name in ZOO:
        assert name in result.stdout
    assert "shapenet (1x64x64x64, 50 classes)" in result.stdout
