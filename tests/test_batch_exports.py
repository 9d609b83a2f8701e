"""Real exports scored at batch sizes other than the exported one (tests/batch_models.py).

Four classifier heads, each exported five ways (both torch exporters, with and without
dynamic batch axes), pruned from the command line at ``--batch-size`` 1, 2 and 4: every run
either writes a model that passed the oracle, keeps the original's input and output dims
(dynamic ones stay dynamic) and has fewer MACs, or stops with one line that names the node
and what works. Where a node fixes the batch the batch runs in micro-batches of the exported
one, and the statistics equal those of one pass over the whole batch on the dynamic export.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from batch_models import CLASSES, EXPORTS, NETWORKS, SIZE, exported, network
from builders import export_module
from click.testing import CliRunner, Result
from torch import nn

from ranp_onnx import PruneOptions, prune_module
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import DataError, InputShapeError
from ranp_onnx.pipeline import prune, score_model
from ranp_onnx.scoring.batching import MicroBatches
from ranp_onnx.scoring.data import Batch

BATCHES = (1, 2, 4)
#: The exports whose graph fixes the exported batch (1), and the node that does.
FIXED = {
    **{(name, "dynamo"): "node_view" for name in NETWORKS},
    ("resnet10", "torchscript"): "/Reshape",
    ("x3d", "torchscript"): "/Reshape",
}
#: The DenseNet head's BatchNormalization on [N, 12, 1, 1, 1] in each export.
HEAD_NORM = {
    "torchscript": "/norm/BatchNormalization",
    "dynamo": "node__native_batch_norm_legit_no_training_1__0",
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Write ``exported(name, export)`` once per module and return its path."""
    folder = tmp_path_factory.mktemp("exports")

    def path(name: str, export: str) -> Path:
        if name == "resnet10":
            pytest.importorskip("monai")
        target = folder / f"{name}-{export}.onnx"
        if not target.exists():
            onnx.save_model(exported(name, export), str(target))
        return target

    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four labelled samples."""
    path = tmp_path_factory.mktemp("data") / "four.npz"
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((4, 1, SIZE, SIZE, SIZE)).astype(np.float32)
    np.savez(path, inputs=inputs, labels=rng.integers(0, CLASSES, 4))
    return path


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def dims(model: onnx.ModelProto) -> list[list[int | str]]:
    """Every graph input's and output's dims (a dim_param for a dynamic one)."""
    values = [*model.graph.input, *model.graph.output]
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]


def expected_error(name: str, export: str, batch: int) -> list[str] | None:
    """What the one line names where the run cannot succeed (None: it succeeds)."""
    if name != "densenet":
        return None
    norm = HEAD_NORM[export.split("-")[0]]
    if (name, export) in FIXED:
        return [
            f"node '{norm}' (BatchNormalization) sees one value per channel",
            f"the model runs in batches of 1 only (node '{FIXED[name, export]}' (Reshape) "
            "fixes the batch",
            "score with --batchnorm running, or export the model with a dynamic batch",
        ]
    if batch == 1:
        return [
            f"node '{norm}' (BatchNormalization) sees one value per channel (input "
            "[1, 12, 1, 1, 1]): batch statistics are undefined; score with --batch-size 2 or "
            "more, or --batchnorm running"
        ]
    return None


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("export", EXPORTS)
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_export_prunes_at_every_batch_or_names_the_node(
    name: str,
    export: str,
    batch: int,
    saved: Callable[[str, str], Path],
    data: Path,
    tmp_path: Path,
) -> None:
    model = saved(name, export)
    out = tmp_path / "pruned.onnx"
    result = run(
        "prune", model, "--data", data, "--batch-size", batch, "--batches", 1,
        "--sparsity", 0.5, "-o", out, "--json",
    )  # fmt: skip
    expected = expected_error(name, export, batch)
    if expected is not None:
        assert result.exit_code == 1, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        for part in expected:
            assert part in result.stderr
        assert not out.exists()
        return
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    validation = document["validation"]
    assert validation["max_relative_error"] <= validation["tolerance"]
    assert document["totals"]["macs"] < document["compare"]["totals"]["macs"]
    assert dims(onnx.load_model(str(out))) == dims(onnx.load_model(str(model)))
    dynamic = "dynamic" in export
    assert document["input_shapes"]["input"] == [batch if dynamic else 1, 1, SIZE, SIZE, SIZE]


def _batches(size: int, count: int) -> list[Batch]:
    rng = np.random.default_rng(size)
    return [
        Batch(
            {"input": rng.standard_normal((size, 1, SIZE, SIZE, SIZE)).astype(np.float32)},
            rng.integers(0, CLASSES, size),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_statistics_at_a_batch_equal_one_pass_over_it(name: str, exporter: str) -> None:
    """The exported-batch graph at B (micro-batches where a node fixes the batch) against
    the dynamic export in one pass at B, with running BatchNorm statistics."""
    if name == "resnet10":
        pytest.importorskip("monai")
    dynamic_export = "torchscript-dynamic" if exporter == "torchscript" else "dynamo-dynamic-shapes"
    static = analyse(exported(name, exporter))
    options = PruneOptions(method="ranp-f", batchnorm="running", device="cpu")
    for size in (2, 4):
        fixer = MicroBatches(static).fixer(size)
        assert (fixer.node if fixer else None) == FIXED.get((name, exporter))
        assert MicroBatches(static).chunk(size, 1) == (1 if fixer else size)
        dynamic = analyse(exported(name, dynamic_export), batch_size=size)
        assert MicroBatches(dynamic).chunk(size, 1) == size
        split_scoring = score_model(static, _batches(size, 1), options)
        whole_scoring = score_model(dynamic, _batches(size, 1), options)
        # The same layers in the same order (the folded weights' names differ).
        weights = [
            [static.shape(x.weight) for x in split_scoring.channels.layers],
            [dynamic.shape(x.weight) for x in whole_scoring.channels.layers],
        ]
        assert weights[0] == weights[1]
        split, whole = split_scoring.stats, whole_scoring.stats
        assert split.batches == whole.batches == 1
        assert split.loss == pytest.approx(whole.loss, rel=1e-6)
        for field in ("magnitude", "signed", "taylor"):
            for mine, theirs in zip(getattr(split, field), getattr(whole, field), strict=True):
                scale = max(float(np.abs(theirs).max()), 1e-30)
                assert np.abs(mine - theirs).max() <= 1e-5 * scale, field


def test_a_batch_that_does_not_split_into_the_exported_batch_is_refused(
    tmp_path: Path, data: Path
) -> None:
    path = tmp_path / "x3d-at-2.onnx"
    onnx.save_model(exported("x3d", "torchscript", 2), str(path))
    out = tmp_path / "pruned.onnx"
    refused = run("prune", path, "--data", data, "--batch-size", 3, "--sparsity", 0.5, "-o", out)
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: batch 1 has 3 samples, which do not split into batches of 2, the only batch "
        "the model runs at (node '/Reshape' (Reshape) does not accept batch 3 (it does not fit "
        "its input shapes ['3x3x1x1x1', '2']: [ShapeInferenceError] Dimension could not be "
        "inferred: incompatible shapes)): score with a --batch-size that is a multiple of 2, "
        "or export the model with a dynamic batch\n"
    )
    assert not out.exists()
    done = run("prune", path, "--data", data, "--batch-size", 4, "--sparsity", 0.5, "-o", out)
    assert done.exit_code == 0, done.stderr
    assert dims(onnx.load_model(str(out)))[0] == [2, 1, SIZE, SIZE, SIZE]


class BakedBatch(nn.Module):
    """A forward that hard-codes the batch it was written for: ``reshape(1, -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3)
        self.fc = nn.Linear(4 * (SIZE - 2) ** 3, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).reshape(1, -1))


def test_a_dynamic_batch_that_a_node_fixes_names_the_node() -> None:
    torch.manual_seed(0)
    model = export_module(
        BakedBatch(),
        torch.randn(1, 1, SIZE, SIZE, SIZE),
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    with pytest.raises(InputShapeError) as raised:
        analyse(model, batch_size=2)
    assert str(raised.value) == (
        "input 'input' has a dynamic batch, but node '/Reshape' (Reshape) fixes the batch: its "
        "output is [1, 1728] at batch 2, [1, 864] at batch 1: give `input_shapes` "
        "input=1x1x8x8x8 (larger batches then score in batches of 1), or export the model "
        "without the fixed batch"
    )
    graph = analyse(model)
    assert MicroBatches(graph).chunk(4, 1) == 1
    result = prune(graph, _batches(4, 1), PruneOptions(sparsity=0.5, device="cpu"))
    assert result.validation is not None
    assert result.validation.worst[1] <= result.validation.tolerance
    assert dims(result.model)[0] == ["batch", 1, SIZE, SIZE, SIZE]


def test_the_library_fills_a_dynamic_batch_from_the_data() -> None:
    model = exported("efficientnet", "dynamo-dynamic-shapes")
    result = prune(model, _batches(2, 1), PruneOptions(sparsity=0.5, device="cpu"))
    per_sample = count_costs(analyse(model)).totals.macs
    assert result.before.totals.macs == 2 * per_sample
    assert dims(result.model) == dims(model)
    with pytest.raises(DataError, match=r"one value per channel.*`batchnorm` running"):
        prune(exported("densenet", "dynamo"), _batches(2, 1), PruneOptions(sparsity=0.5))


@pytest.mark.parametrize("name", ["resnet10", "x3d"])
def test_prune_module_scores_batches_larger_than_the_example(name: str) -> None:
    if name == "resnet10":
        pytest.importorskip("monai")
    module = network(name)
    rng = torch.Generator().manual_seed(2)
    loader = [
        (torch.randn(2, 1, SIZE, SIZE, SIZE, generator=rng), torch.tensor([0, 2])) for _ in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = prune_module(module, torch.randn(1, 1, SIZE, SIZE, SIZE), loader, sparsity=0.5)
    assert result.in_place
    assert result.validation is not None
    assert result.validation.worst[1] <= result.validation.tolerance
    assert dims(result.onnx_model)[0] == ["batch", 1, SIZE, SIZE, SIZE]
    assert result.after.totals.macs < result.before.totals.macs


def test_report_explain_search_and_apply_take_a_dynamic_batch_without_input_shape(
    saved: Callable[[str, str], Path], data: Path, tmp_path: Path
) -> None:
    dynamic, static = saved("x3d", "dynamo-dynamic-shapes"), saved("x3d", "dynamo")
    report = run("report", dynamic, "--json")
    assert report.exit_code == 0, report.stderr
    counted = json.loads(report.stdout)
    assert counted["input_shapes"] == {"input": [1, 1, SIZE, SIZE, SIZE]}
    assert counted["totals"] == json.loads(run("report", static, "--json").stdout)["totals"]
    assert run("explain", dynamic).exit_code == 0
    search = run("search-sparsity", dynamic, "--data", data, "--batch-size", 2, "--json")
    assert search.exit_code == 0, search.stderr
    assert 0 < json.loads(search.stdout)["max_feasible_sparsity"] < 1
    plan, out = tmp_path / "plan.json", tmp_path / "pruned.onnx"
    pruned = run(
        "prune", dynamic, "--data", data, "--batch-size", 2, "--sparsity", 0.5,
        "-o", out, "--plan", plan,
    )  # fmt: skip
    assert pruned.exit_code == 0, pruned.stderr
    applied = run("apply", dynamic, "--plan", plan, "-o", tmp_path / "applied.onnx", "--json")
    assert applied.exit_code == 0, applied.stderr
    assert dims(onnx.load_model(str(tmp_path / "applied.onnx"))) == dims(onnx.load_model(str(out)))
