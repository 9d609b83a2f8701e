"""``ranp-onnx report`` through click's CliRunner: output, JSON, comparison, errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from builders import export_module, make_model
from click.testing import CliRunner, Result
from onnx import helper

from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli import report as report_command
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import InputShapeError

MB = float(1 << 20)


def network(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, width, 3, padding=1),
        torch.nn.BatchNorm3d(width),
        torch.nn.ReLU(),
        torch.nn.MaxPool3d(2),
        torch.nn.Conv3d(width, 2, 1),
        torch.nn.Softmax(dim=1),
    ).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """full (4 channels), half (2 channels), dynamic (batch, channels, depth), mlp."""
    folder = tmp_path_factory.mktemp("models")
    x = torch.randn(1, 1, 8, 8, 8)
    paths = {name: folder / f"{name}.onnx" for name in ("full", "half", "dynamic", "mlp")}
    onnx.save_model(export_module(network(4), x, input_names=["volume"]), str(paths["full"]))
    onnx.save_model(export_module(network(2), x, input_names=["volume"]), str(paths["half"]))
    dynamic = export_module(
        network(4),
        x,
        input_names=["volume"],
        dynamic_axes={"volume": {0: "batch", 1: "channels", 2: "depth"}},
    )
    onnx.save_model(dynamic, str(paths["dynamic"]))
    mlp = make_model(
        [helper.make_node("Gemm", ["x", "w"], ["y"])],
        [("x", [2, 3])],
        [("y", None)],
        {"w": np.ones((3, 4), np.float32)},
    )
    onnx.save_model(mlp, str(paths["mlp"]))
    return paths


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(args: Sequence[str]) -> Result:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert result.stderr == ""
    return result


# The full model at 1x1x8x8x8, counted by hand:
# conv1 2048 outputs x 27 (+ bias): 55296 MACs; conv2 128 outputs x 4: 512 MACs.
FULL_MACS = 55296 + 512
# standard FLOPs: conv1 2*55296 + 2048, BN 2*2048, ReLU 2048, MaxPool 256*7,
# conv2 2*512 + 128, Softmax 3*128.
FULL_FLOPS = 112640 + 4096 + 2048 + 1792 + 1152 + 384
# ranp-paper FLOPs: conv1 2048*28, BN 4*2048, conv2 128*5, Softmax 1*(3*2 - 1).
FULL_PAPER_FLOPS = 57344 + 8192 + 640 + 5
# Parameters: conv1 4*27 + 4, BN 4 + 4, conv2 2*4 + 2.
FULL_PARAMS = 112 + 8 + 10
# Memory (both conventions here): outputs of conv1, BN, ReLU (2048 each), MaxPool (256),
# conv2 and Softmax (128 each), 4 bytes each. Peak: conv1 and BN outputs live together.
FULL_MEMORY_MB = (3 * 2048 + 256 + 2 * 128) * 4 / MB
FULL_PEAK_MB = 2 * 2048 * 4 / MB


def test_table_lists_every_layer_and_the_totals(models: dict[str, Path]) -> None:
    result = ok(["report", str(models["full"])])
    lines = result.stdout.splitlines()
    assert lines[0] == "model: full.onnx   convention: standard   inputs: volume=1x1x8x8x8"
    header = lines[2].split()
    assert header[:4] == ["#", "node", "op", "output"]
    rows = [line.split() for line in lines[4:10]]
    assert [row[2] for row in rows] == [
        "Conv",
        "BatchNormalization",
        "Relu",
        "MaxPool",
        "Conv",
        "Softmax",
    ]
    assert rows[0][1:8] == ["/0/Conv", "Conv", "1x4x8x8x8", "1->4", "3x3x3", "1x1x1", "1"]
    assert rows[0][8] == "112"
    assert f"params        {FULL_PARAMS:,} (0.00 MB)" in lines
    assert "memory        0.03 MB   (peak live 0.02 MB)" in lines


def test_json_has_the_documented_keys_and_exact_totals(models: dict[str, Path]) -> None:
    document = json.loads(ok(["report", str(models["full"]), "--json"]).stdout)
    assert {"model", "convention", "totals", "layers"} <= set(document)
    assert document["model"] == "full.onnx"
    assert document["convention"] == "standard"
    totals = document["totals"]
    assert {"params", "params_mb", "macs", "gflops", "memory_mb", "peak_memory_mb"} <= set(totals)
    assert totals["params"] == FULL_PARAMS
    assert totals["params_mb"] == FULL_PARAMS * 4 / MB
    assert totals["macs"] == FULL_MACS
    assert totals["gflops"] == FULL_FLOPS / 1e9
    assert totals["memory_mb"] == FULL_MEMORY_MB
    assert totals["peak_memory_mb"] == FULL_PEAK_MB
    conv = document["layers"][0]
    assert conv["name"] == "/0/Conv"
    assert conv["output_shapes"] == [[1, 4, 8, 8, 8]]
    assert (conv["channels_in"], conv["channels_out"], conv["groups"]) == (1, 4, 1)
    assert conv["kernel"] == [3, 3, 3] and conv["strides"] == [1, 1, 1]
    assert conv["macs"] == 55296


def test_ranp_paper_convention(models: dict[str, Path]) -> None:
    document = json.loads(
        ok(["report", str(models["full"]), "--convention", "ranp-paper", "--json"]).stdout
    )
    assert document["convention"] == "ranp-paper"
    assert document["totals"]["gflops"] == FULL_PAPER_FLOPS / 1e9
    assert document["totals"]["macs"] == FULL_MACS
    assert document["totals"]["memory_mb"] == FULL_MEMORY_MB
    table = ok(["report", str(models["full"]), "--convention", "ranp-paper"]).stdout
    assert "convention: ranp-paper" in table.splitlines()[0]


def test_dynamic_input_with_input_shape(models: dict[str, Path]) -> None:
    document = json.loads(
        ok(["report", str(models["dynamic"]), "--input-shape", "volume=2x1x4x8x8", "--json"]).stdout
    )
    assert document["input_shapes"] == {"volume": [2, 1, 4, 8, 8]}
    # Half the voxels of the full model, twice the batch: the same MACs.
    assert document["totals"]["macs"] == FULL_MACS
    unnamed = ok(["report", str(models["dynamic"]), "--input-shape", "2x1x4x8x8", "--json"])
    assert json.loads(unnamed.stdout)["totals"] == document["totals"]


def test_graph_without_convolution_is_counted_by_the_library(models: dict[str, Path]) -> None:
    report = count_costs(analyse(str(models["mlp"])))
    assert report.totals.macs == 2 * 3 * 4
    assert report.totals.params == 12


def test_ops_without_a_cost_rule_are_named(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Reshape", ["c", "shape"], ["m"]),
        helper.make_node("Det", ["m"], ["y"]),
    ]
    initializers = {
        "w": np.ones((4, 1, 1, 1, 1), np.float32),
        "shape": np.array([1, 2, 2], np.int64),
    }
    model = make_model(nodes, [("x", [1, 1, 1, 1, 1])], [("y", None)], initializers)
    onnx.save_model(model, str(tmp_path / "det.onnx"))
    lines = ok(["report", str(tmp_path / "det.onnx")]).stdout.splitlines()
    assert lines[-1] == (
        "not counted   Det x1: no cost rule, their FLOPs are missing from the totals"
    )
    document = json.loads(ok(["report", str(tmp_path / "det.onnx"), "--json"]).stdout)
    assert document["uncounted_ops"] == {"Det": 1}
    assert [layer["counted"] for layer in document["layers"]] == [True, True, False]


def test_compare_shows_reductions(models: dict[str, Path]) -> None:
    args = ["report", str(models["half"]), "--compare", str(models["full"])]
    lines = ok(args).stdout.splitlines()
    assert lines[0] == "convention: standard"
    assert lines[2].split() == ["full.onnx", "half.onnx", "reduction"]
    rows = {line[:16].strip(): line[16:].split() for line in lines[4:9]}
    # half: conv1 1024 x 27 = 27648 MACs, conv2 128 x 2 = 256: exactly half.
    assert rows["GMACs"][-1] == "50.0%"
    # params 66 of 130.
    assert rows["params (MB)"][-1] == f"{(1 - 66 / 130) * 100:.1f}%"
    assert any(line.split()[:4] == ["/0/Conv", "Conv", "1->4", "1->2"] for line in lines)

    document = json.loads(ok([*args, "--json"]).stdout)
    assert document["model"] == "half.onnx"
    assert document["compare"]["model"] == "full.onnx"
    reductions = document["reduction_percent"]
    assert reductions["gmacs"] == pytest.approx(50.0)
    assert reductions["params_mb"] == pytest.approx((1 - 66 / 130) * 100)
    assert reductions["peak_memory_mb"] == pytest.approx(50.0)


def test_measure_names_the_execution_provider(models: dict[str, Path]) -> None:
    table = ok(["report", str(models["full"]), "--measure", "--runs", "2", "--device", "cpu"])
    measured = [line for line in table.stdout.splitlines() if line.startswith("measured")]
    assert len(measured) == 1
    assert "median of 2 runs" in measured[0]
    assert measured[0].endswith("(CPUExecutionProvider)")
    document = json.loads(
        ok(["report", str(models["full"]), "--measure", "--runs", "3", "--json"]).stdout
    )
    assert document["measured"]["provider"] == "CPUExecutionProvider"
    assert document["measured"]["runs"] == 3
    assert document["measured"]["median_ms"] > 0
    assert document["measured"]["arena_peak_mb"] > 0
    # The model's ops as onnxruntime runs them (BatchNormalization folded into the Conv,
    # the ReLU fused with it).
    assert set(document["measured"]["op_ms"]) == {"FusedConv", "MaxPool", "Conv", "Softmax"}
    assert all(ms > 0 for ms in document["measured"]["op_ms"].values())
    (by_op,) = [line for line in table.stdout.splitlines() if line.startswith("time by op")]
    listed = by_op.removeprefix("time by op").removesuffix(" (of the kernel time)").strip()
    shares = dict(item.rsplit(" ", 1) for item in listed.split(", "))
    assert set(shares) == {"FusedConv", "MaxPool", "Conv", "Softmax"}
    assert sum(int(share.rstrip("%")) for share in shares.values()) in range(98, 103)


def test_compare_with_measure(models: dict[str, Path]) -> None:
    args = ["report", str(models["half"]), "--compare", str(models["full"]), "--measure"]
    lines = ok([*args, "--runs", "1"]).stdout.splitlines()
    assert any(line.startswith("latency (ms)") for line in lines)
    start = lines.index("kernel time by op (ms per run, median of profiled runs)")
    assert lines[start + 1].split() == ["op", "before", "after", "speedup"]
    ops = set()
    for line in lines[start + 3 :]:
        if not line or line.startswith("not faster"):
            break
        ops.add(line.split()[0])
    assert ops == {"FusedConv", "MaxPool", "Conv", "Softmax"}


# --- Errors: one line on stderr, exit status 1, no traceback, nothing written --------------


def bad_inputs(folder: Path, models: dict[str, Path]) -> dict[str, list[str]]:
    """Command lines that must be refused, keyed by what is wrong."""
    (folder / "text.onnx").write_text("this is not a model\n")
    data = models["full"].read_bytes()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])

    model = onnx.load_model(str(models["full"]))
    inside = folder / "external"
    inside.mkdir()
    onnx.save_model(
        model,
        str(inside / "escaping.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    escaping = onnx.load_model(str(inside / "escaping.onnx"), load_external_data=False)
    for tensor in escaping.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save_model(escaping, str(inside / "escaping.onnx"))
    (inside / "weights.bin").rename(folder / "weights.bin")

    onnx.save_model(
        onnx.load_model(str(models["full"])),
        str(inside / "missing.onnx"),
        save_as_external_data=True,
        location="missing.bin",
        size_threshold=0,
    )
    (inside / "missing.bin").unlink()

    custom = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1])], [("y", [1])])
    custom.graph.node.append(helper.make_node("Frob", ["y"], ["z"], domain="com.example"))
    custom.graph.output[0].name = "z"
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save_model(custom, str(folder / "custom.onnx"))

    newer = onnx.load_model(str(models["full"]))
    newer.opset_import[0].version = 99
    onnx.save_model(newer, str(folder / "newer.onnx"))

    full, dynamic = str(models["full"]), str(models["dynamic"])
    return {
        "not onnx": ["report", str(folder / "text.onnx")],
        "truncated": ["report", str(folder / "truncated.onnx")],
        "missing file": ["report", str(folder / "nothing.onnx")],
        "escaping external data": ["report", str(inside / "escaping.onnx")],
        "missing external data": ["report", str(inside / "missing.onnx")],
        "unknown domain": ["report", str(folder / "custom.onnx")],
        "opset too new": ["report", str(folder / "newer.onnx")],
        "dynamic without shape": ["report", dynamic],
        "malformed shape": ["report", dynamic, "--input-shape", "volume=1xbig"],
        "shape names no input": ["report", dynamic, "--input-shape", "image=1x1x8x8x8"],
        "shape does not fit": ["report", dynamic, "--input-shape", "volume=1x3x8x8x8"],
        "shape too small": ["report", dynamic, "--input-shape", "volume=1x1x1x8x8"],
        "fixed dimension": ["report", full, "--input-shape", "volume=1x1x8x8x9"],
        "bad compare": ["report", full, "--compare", str(folder / "text.onnx")],
        "bad convention": ["report", full, "--convention", "thop"],
        "unknown option": ["report", full, "--frobnicate"],
        "no convolution": ["report", str(models["mlp"])],
    }


EXPECTED_MESSAGES = {
    "not onnx": "not a readable ONNX model",
    "truncated": "not a readable ONNX model",
    "missing file": "no such file",
    "escaping external data": "outside the model's folder; refusing to read it",
    "missing external data": "external data file 'missing.bin' for initializer",
    "unknown domain": "uses op 'Frob' from domain 'com.example', which onnxruntime does not know",
    "opset too new": "the model uses opset 99",
    "dynamic without shape": (
        "input 'volume' has dynamic dimensions 1 ('channels'), 2 ('depth'): pass "
        "--input-shape volume=1x<channels>x<depth>x8x8"
    ),
    "malformed shape": "expected NAME=1x1x64x64x64",
    "shape names no input": "names 'image', which is not an input of the model",
    "shape does not fit": "reads 3 input channels from 'volume' but its weight expects 1",
    "shape too small": "the input is too small for the graph",
    "fixed dimension": "dimension 4 is fixed at 8 in the model, got 9",
    "bad compare": "text.onnx: not a readable ONNX model",
    "bad convention": "Invalid value for '--convention'",
    "unknown option": "No such option '--frobnicate'",
    "no convolution": "the graph has no convolution (Conv or ConvTranspose)",
}


def test_bad_inputs_are_refused_cleanly(tmp_path: Path, models: dict[str, Path]) -> None:
    cases = bad_inputs(tmp_path, models)
    assert set(cases) == set(EXPECTED_MESSAGES)
    before = sorted(p for p in tmp_path.rglob("*"))
    models_before = sorted(p for p in models["full"].parent.iterdir())
    for case, args in cases.items():
        result = invoke(args)
        usage = case in ("bad convention", "unknown option")
        assert result.exit_code == (2 if usage else 1), (case, result.output)
        assert isinstance(result.exception, SystemExit), case
        assert result.stdout == "", case
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (case, result.stderr)
        assert lines[0].startswith("error: "), case
        assert EXPECTED_MESSAGES[case] in lines[0], (case, lines[0])
        assert "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written
    assert sorted(p for p in models["full"].parent.iterdir()) == models_before


def test_multi_line_messages_become_one_line(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise InputShapeError("first part\n  second part\n")

    monkeypatch.setattr(report_command, "analyse", refuse)
    result = invoke(["report", str(models["full"])])
    assert result.exit_code == 1
    assert result.stderr == "error: first part second part\n"


def test_internal_errors_are_not_disguised(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(report_command, "analyse", bug)
    result = invoke(["report", str(models["full"])])
    assert isinstance(result.exception, ZeroDivisionError)
    assert result.exit_code == 1


def test_help_exits_zero() -> None:
    result = ok(["report", "--help"])
    assert "--input-shape" in result.stdout
    assert "ranp-onnx report unet.onnx --convention ranp-paper --json" in result.stdout
