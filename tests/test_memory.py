"""The scoring memory estimate, the memory available, and the refusal before scoring."""

from __future__ import annotations

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
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.ir.save import save_model
from ranp_onnx.scoring import memory
from ranp_onnx.scoring.data import Batch, open_data
from ranp_onnx.scoring.statistics import accumulate_gradients
from ranp_onnx.zoo import build_model, export_built

SHAPE = (1, 32, 32, 32)
#: The estimate is meant to be within this fraction of the measured peak, either way.
TOLERANCE = 0.1

#: oneDNN's per-thread scratch follows the thread count (``tests/conftest.py``).
pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("memory")
    built = build_model("unet3d-15", width_mult=0.5, input_shape=SHAPE, classes=4)
    return {
        "model": save_model(export_built(built), folder / "unet.onnx"),
        "data": segmentation_npz(folder / "train.npz", SHAPE, 4, samples=2),
    }


def measured_scoring_peak(graph: GraphAnalysis, batch: Batch) -> int:
    """Torch's allocator peak of one scoring pass, and what it does not see.

    The parameters (copied from numpy) and the batch (``from_numpy``) are memory torch's
    allocator never handed out; the estimate counts them, so they are added here.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        accumulate_gradients(
            analyse_channels(graph), [batch], "cross-entropy", device="cpu", memory_check=False
        )
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    peak = int(np.max(np.cumsum([nbytes for _, nbytes in events])))
    outside = sum(graph.tensors[name].nbytes for name in graph.initializer_names)
    outside += sum(value.nbytes for value in batch.inputs.values())
    return peak + outside + (batch.labels.nbytes if batch.labels is not None else 0)


@pytest.mark.parametrize(("batch_size", "labels"), [(1, True), (2, True), (2, False)])
def test_estimate_is_within_ten_percent_of_the_allocator_peak(
    files: dict[str, Path], batch_size: int, labels: bool
) -> None:
    graph = analyse(files["model"])
    generator = np.random.default_rng(0)
    inputs = generator.standard_normal((batch_size, *SHAPE)).astype(np.float32)
    targets = generator.integers(0, 4, (batch_size, *SHAPE[1:])) if labels else None
    batch = Batch({graph.input_names[0]: inputs}, targets)
    measured = measured_scoring_peak(graph, batch)
    estimate = memory.estimate_scoring_memory(graph, batch_size, labels=labels).total_bytes
    assert abs(estimate / measured - 1) <= TOLERANCE, (estimate, measured)


def test_estimate_grows_with_the_batch_by_the_activations(files: dict[str, Path]) -> None:
    graph = analyse(files["model"])
    one, two, three = (memory.estimate_scoring_memory(graph, b) for b in (1, 2, 3))
    assert one.parameter_bytes == two.parameter_bytes > 0
    assert (
        two.activation_bytes - one.activation_bytes == three.activation_bytes - two.activation_bytes
    )
    assert one.total_bytes < two.total_bytes < three.total_bytes


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
