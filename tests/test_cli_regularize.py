"""``ranp-onnx regularize``: the issue's checks, Ctrl-C and --resume, one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner, Result
from pruning_models import zoo_model
from regularization_models import CLIP, FAST, clips, clips_npz, small_c3d
from test_regularization_groups import hand_dpr

from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.ir.save import save_model
from ranp_onnx.regularization.finish import column_norms
from ranp_onnx.regularization.groups import weight_groups

FAST_FLAGS = [
    "--lr", str(FAST["lr"]), "-A", str(FAST["a"]), "--ceiling", str(FAST["ceiling"]),
    "--batch-size", "8", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("regularize")
    inputs, _ = clips()
    np.savez(folder / "unlabelled.npz", inputs=inputs)
    return {
        "c3d": save_model(small_c3d(), folder / "c3d.onnx"),
        "resnet": save_model(zoo_model("resnet3d-18"), folder / "resnet.onnx"),
        "clips": clips_npz(folder / "clips.npz"),
        "unlabelled": folder / "unlabelled.npz",
    }


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, ["regularize", *map(str, arguments)])


def gflops(path: Path) -> float:
    return count_costs(analyse(str(path), {"input": (1, *CLIP)})).totals.flops


def test_speedup_2_halves_the_gflops_and_the_due_groups_fall_to_zero(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, record, plot = tmp_path / "slim.onnx", tmp_path / "run.json", tmp_path / "run.png"
    result = run(
        files["c3d"], "--data", files["clips"], "--speedup", "2", *FAST_FLAGS,
        "--finetune", "3", "--record", record, "--plot", plot, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert gflops(out) <= gflops(files["c3d"]) / 2
    session = ort.InferenceSession(str(out))
    (logits,) = session.run(None, {"input": np.zeros((3, *CLIP), np.float32)})
    assert logits.shape == (3, 4)
    document = json.loads(record.read_text())
    removed = document["removed"]
    assert removed["groups"] == removed["due"] > 0 and removed["forced"] == 0
    assert removed["max_ratio_to_kept_mean"] < 0.01
    assert document["iterations"]["finetune"] == 3
    assert plot.stat().st_size > 10_000
    assert not Path(f"{out}.ckpt").exists()
    assert (
        "speedup       2.0" in result.output and "tensors node by node, max error" in result.output
    )
    assert f"groups were at most {removed['max_ratio_to_kept_mean']:.3g}" in result.output


def test_shape_granularity_with_dpr_and_ratios_by_hand(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, record = tmp_path / "slim.onnx", tmp_path / "run.json"
    result = run(
        files["c3d"], "--data", files["clips"], "--speedup", "2", "--granularity", "shape",
        "--allocation", "dpr", *FAST_FLAGS, "--record", record, "-o", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(record.read_text())
    assert document["sparse_flops"] <= document["before"]["flops"] / 2
    assert json.loads(result.output)["record"]["speedup"] == document["speedup"]
    graph = analyse(str(files["c3d"]), {"input": (1, *CLIP)})
    layers = document["allocation"]["layers"]
    weights = [graph.initializer(graph.node(layer["name"]).inputs[1]) for layer in layers]
    flops = [layer["flops"] for layer in layers]
    expected = hand_dpr(weights, flops, document["allocation"]["prune_ratio"])
    np.testing.assert_allclose([layer["ratio"] for layer in layers], np.clip(expected, 0, 1))
    ort.InferenceSession(str(out))
    # Every removed column is zero in the written model, except those of channels freed
    # with all their columns (27 per channel of the consuming 3x3x3 convolution).
    pruned = analyse(str(out), {"input": (1, *CLIP)})
    groups = weight_groups(analyse_channels(pruned), "shape", pruned.initializer_names)
    zero = sum(int((column_norms(pruned, layer) == 0).sum()) for layer in groups.layers)
    removed = document["removed"]
    assert zero + 27 * removed["channels_removed"] >= removed["due"]
    assert removed["median_ratio_to_kept_mean"] < 0.01


def test_epochs_bound_the_regularization_then_the_rest_is_removed(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, record = tmp_path / "slim.onnx", tmp_path / "run.json"
    result = run(
        files["c3d"], "--data", files["clips"], "--speedup", "2", *FAST_FLAGS,
        "--epochs", "0.5", "--record", record, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(record.read_text())
    # 32 clips in batches of 8: half an epoch is 2 iterations, too few for any group to go.
    assert document["iterations"]["regularize"] == 2
    removed = document["removed"]
    assert removed["forced"] == removed["groups"] == removed["due"] > 0
    assert f"({removed['forced']} before they were gone)" in result.output
    assert gflops(out) <= gflops(files["c3d"]) / 2


def assert_one_line(result: Result, message: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        ("unlabelled", ["--speedup", "2"], "labels"),
        ("random", ["--speedup", "2"], "--data needs labelled samples"),
        ("clips", ["--speedup", "1"], "--speedup 1: the full model already meets it"),
        ("clips", ["--speedup", "40"], "--speedup 40 is not reachable at --granularity channel"),
        ("clips", ["--speedup", "2", "--target-flops", "0.5"], "exactly one of --speedup"),
        ("clips", [], "exactly one of --speedup"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    files: dict[str, Path], tmp_path: Path, data: str, extra: list[str], message: str
) -> None:
    source = files.get(data, data)
    out = tmp_path / "slim.onnx"
    assert_one_line(run(files["c3d"], "--data", source, *extra, *FAST_FLAGS, "-o", out), message)
    assert list(tmp_path.iterdir()) == []


def test_resnet_residual_streams_prune_with_channels(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # Shortcut A zero-pads the residual streams on the channel axis; they are pruned, so
    # channels reach 4x (one iteration, then every due group is removed as it ranks).
    out, data = tmp_path / "slim.onnx", tmp_path / "clips.npz"
    inputs = np.random.default_rng(0).standard_normal((8, 3, 8, 32, 32)).astype(np.float32)
    np.savez(data, inputs=inputs, labels=np.arange(8) % 4)
    common = ["--data", data, "--batch-size", "8", "--device", "cpu", "-o", out]
    result = run(files["resnet"], *common, "--speedup", "4", "--iterations", "1")
    assert result.exit_code == 0, result.output
    before = count_costs(analyse(str(files["resnet"]))).totals.flops
    assert count_costs(analyse(str(out))).totals.flops <= before / 4
    out.unlink()
    assert_one_line(
        run(files["resnet"], *common, "--speedup", "40"),
        "leaves 10.6% of the FLOPs (9.41x)",
    )


def test_an_earlier_runs_checkpoint_is_not_overwritten(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "slim.onnx"
    Path(f"{out}.ckpt").write_text("earlier")
    result = run(files["c3d"], "--data", files["clips"], "--speedup", "2", "-o", out)
    assert_one_line(result, f"--resume {out}.ckpt, or pass --force to start over")
    assert Path(f"{out}.ckpt").read_text() == "earlier"


def test_ctrl_c_leaves_a_checkpoint_that_resume_finishes(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "slim.onnx"
    checkpoint = Path(f"{out}.ckpt")
    arguments = [
        "regularize", str(files["c3d"]),
        "--data", str(files["clips"]), "--speedup", "2", *FAST_FLAGS,
        "--checkpoint-every", "1", "-o", str(out),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    entry = "from ranp_onnx.cli.main import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", entry, *arguments],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted after regularize")
    assert f"--resume {checkpoint}" in stderr
    assert checkpoint.exists() and not out.exists()
    record = tmp_path / "run.json"
    resumed = run(
        files["c3d"], "--data", files["clips"], "--speedup", "2", *FAST_FLAGS,
        "--checkpoint-every", "1000", "--resume", checkpoint, "--record", record, "-o", out,
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert out.exists() and not checkpoint.exists()
    assert json.loads(record.read_text())["removed"]["forced"] == 0
