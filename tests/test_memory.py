"""The scoring memory estimate, the memory available, and the refusal before scoring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pruning_models import segmentation_npz

from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import InsufficientMemoryError
from ranp_onnx.ir.save import save_model
from ranp_onnx.scoring import memory
from ranp_onnx.scoring.data import open_data
from ranp_onnx.scoring.statistics import accumulate_gradients
from ranp_onnx.zoo import build_model, export_built

SHAPE = (1, 32, 32, 32)
#: The estimate is meant to be within this factor of the measured peak, either way.
FACTOR = 1.5

_PEAK = """
import resource, sys
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.scoring.data import open_data
from ranp_onnx.scoring.statistics import accumulate_gradients
graph = analyse(sys.argv[1])
data = open_data(sys.argv[2], graph, batch_size=int(sys.argv[3]), ignore_index=255)
accumulate_gradients(analyse_channels(graph), data, "cross-entropy", ignore_index=255,
                     memory_check=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("memory")
    built = build_model("unet3d-15", width_mult=0.5, input_shape=SHAPE, classes=4)
    return {
        "model": save_model(export_built(built), folder / "unet.onnx"),
        "data": segmentation_npz(folder / "train.npz", SHAPE, 4, samples=2),
    }


def test_estimate_is_within_a_factor_of_the_measured_peak(files: dict[str, Path]) -> None:
    graph = analyse(files["model"])
    for batch in (1, 2):
        run = subprocess.run(
            [sys.executable, "-c", _PEAK, str(files["model"]), str(files["data"]), str(batch)],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        measured = int(run.stdout.split()[-1])
        estimate = memory.estimate_scoring_memory(graph, batch).total_bytes
        assert measured / FACTOR <= estimate <= measured * FACTOR, (batch, estimate, measured)


def test_estimate_grows_with_the_batch_by_the_activations(files: dict[str, Path]) -> None:
    graph = analyse(files["model"])
    one, two = (memory.estimate_scoring_memory(graph, b) for b in (1, 2))
    activations, largest = memory.activation_bytes_per_sample(graph)
    assert two.activation_bytes == 2 * one.activation_bytes == 2 * activations
    assert 0 < largest < activations
    assert two.total_bytes - one.total_bytes == pytest.approx(
        memory.ACTIVATION_FACTOR * activations + memory.GRADIENT_FACTOR * largest, abs=1
    )


def test_scoring_refuses_before_starting(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 100 << 20)
    graph = analyse(files["model"])
    data = open_data(files["data"], graph, ignore_index=255)
    with pytest.raises(InsufficientMemoryError, match=r"needs about .* GB .* 0\.1 GB memory"):
        accumulate_gradients(analyse_channels(graph), data, "cross-entropy", ignore_index=255)
    stats = accumulate_gradients(
        analyse_channels(graph), data, "cross-entropy", ignore_index=255, memory_check=False
    )
    assert stats.batches == 2


def test_cli_refuses_in_one_line_and_writes_nothing(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 100 << 20)
    out = tmp_path / "slim.onnx"
    args = ["prune", str(files["model"]), "--data", str(files["data"]), "--sparsity", "0.5"]
    args += ["--ignore-index", "255", "-o", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs about" in lines[0] and "--no-memory-check" in lines[0]
    assert not out.exists()
    result = CliRunner().invoke(cli, [*args, "--no-memory-check"])
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_available_memory_reads_meminfo_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048 kB\nMemFree:  1024 kB\nMemAvailable:  1536 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    monkeypatch.setattr(memory, "_CGROUP", tmp_path / "no-cgroup")
    assert memory.available_memory() == 1536 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("1048576\n")
    (cgroup / "memory.current").write_text("524288\n")
    monkeypatch.setattr(memory, "_CGROUP", cgroup)
    assert memory.available_memory() == 524288
    (cgroup / "memory.max").write_text("max\n")
    assert memory.available_memory() == 1536 * 1024
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "missing")
    monkeypatch.setattr(memory, "_CGROUP", tmp_path / "no-cgroup")
    assert memory.available_memory() is None


def test_unknown_memory_never_refuses(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "missing")
    monkeypatch.setattr(memory, "_CGROUP", tmp_path / "no-cgroup")
    graph = analyse(files["model"])
    memory.check_scoring_memory(graph, 10_000, torch.device("cpu"))


def test_scored_statistics_are_finite_at_any_batch(files: dict[str, Path]) -> None:
    graph = analyse(files["model"])
    data = open_data(files["data"], graph, batch_size=2, ignore_index=255)
    stats = accumulate_gradients(analyse_channels(graph), data, "cross-entropy", ignore_index=255)
    assert stats.batches == 1
    assert all(np.isfinite(t).all() and (t >= 0).all() for t in stats.taylor)
