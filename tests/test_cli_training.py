"""``report --training`` and ``prune --fit-training``: the budget in bytes, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner, Result

from ranp_onnx.analysis.channels import analyse_channels, pruned_shapes
from ranp_onnx.analysis.training_memory import (
    TrainingSetup,
    predict_training_memory,
    training_graph,
)
from ranp_onnx.cli.main import cli
from ranp_onnx.ops import conv_memory
from ranp_onnx.options import PruneOptions
from ranp_onnx.pipeline import score_model
from ranp_onnx.reporting.training_step import measure_graph_step
from ranp_onnx.scoring.data import open_data
from ranp_onnx.selection.fit import fit_training_memory
from ranp_onnx.selection.search import SEARCH_TOLERANCE, select_at
from ranp_onnx.zoo import build_model, export_built

SHAPE = (1, 16, 16, 16)
#: oneDNN's per-thread scratch follows the thread count (``tests/conftest.py``).
pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("training")
    paths = {}
    for name, width in (("full", 0.25), ("narrow", 0.125)):
        built = build_model("unet3d-15", width_mult=width, input_shape=SHAPE, classes=4)
        paths[name] = folder / f"{name}.onnx"
        onnx.save_model(export_built(built, dynamic=name == "full"), str(paths[name]))
    return paths


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def predicted(model: Path | onnx.ModelProto, batch: int, optimizer: str = "sgd") -> int:
    graph = training_graph(model, {"": (batch, *SHAPE)}, batch=batch)
    return predict_training_memory(graph, TrainingSetup(optimizer=optimizer)).peak_bytes  # type: ignore[arg-type]


def measured(model: Path, batch: int) -> int:
    graph = training_graph(model, {"": (batch, *SHAPE)}, batch=batch)
    return measure_graph_step(graph, TrainingSetup()).peak_bytes


@pytest.mark.usefixtures("verified_cpu")
def test_report_training_json_is_the_prediction_and_measures_a_real_step(
    models: dict[str, Path],
) -> None:
    result = run(
        "report", str(models["full"]), "--input-shape", "1x1x16x16x16", "--training",
        "--train-batch", "2", "--optimizer", "adam", "--measure", "--runs", "1", "--json",
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["peak_bytes"] == predicted(models["full"], 2, "adam")
    assert document["input_shapes"] == {"input": [2, *SHAPE]}
    assert document["setup"] == {"device": "cpu", "optimizer": "adam", "precision": "float32"}
    assert sum(document["breakdown_bytes"].values()) == document["peak_bytes"]
    ratio = document["peak_bytes"] / document["measured"]["peak_bytes"]
    assert abs(ratio - 1) <= 0.1
    assert document["measured"]["seconds"] > 0


def test_report_training_compare_shows_both_and_the_reduction(models: dict[str, Path]) -> None:
    args = ["report", str(models["narrow"]), "--compare", str(models["full"]), "--training"]
    args += ["--compare-input-shape", "1x1x16x16x16", "--device", "cpu"]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["compare"]["peak_bytes"] == predicted(models["full"], 1)
    assert document["peak_bytes"] == predicted(models["narrow"], 1)
    reduction = 100 * (1 - document["peak_bytes"] / document["compare"]["peak_bytes"])
    assert document["reduction_percent"] == pytest.approx(reduction)
    text = run(*args).stdout
    assert "narrow.onnx" in text and "full.onnx" in text and "saved activations" in text
    assert f"{reduction:.1f}%" in text


@pytest.mark.parametrize("capability", ["AVX512", "AVX2"])
def test_report_training_notes_a_cpu_the_model_was_not_checked_on(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capability: str
) -> None:
    monkeypatch.setattr(conv_memory, "cpu_capability", lambda: capability)
    args = ["report", str(models["narrow"]), "--training", "--input-shape", "1x1x16x16x16"]
    text, document = run(*args).stdout, json.loads(run(*args, "--json").stdout)
    if capability == "AVX512":
        assert "note" not in text and document["notes"] == []
    else:
        [line] = [line for line in text.splitlines() if line.startswith("note")]
        assert "AVX2" in line and document["notes"] == [line.removeprefix("note").strip()]
    cuda = json.loads(run(*args, "--device", "cuda", "--json").stdout)
    assert cuda["notes"] == []


def test_report_training_predicts_for_cuda_but_measures_only_where_there_is_one(
    models: dict[str, Path],
) -> None:
    args = ["report", str(models["narrow"]), "--training", "--json", "--device"]
    result = run(*args, "cuda")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["setup"]["device"] == "cuda"
    on_cpu = json.loads(run(*args, "cpu").stdout)
    # No oneDNN scratch on CUDA (cuDNN's workspace is not modelled).
    assert document["peak_bytes"] < on_cpu["peak_bytes"]
    if not torch.cuda.is_available():
        result = run(*args, "cuda", "--measure")
        assert result.exit_code == 1 and "torch sees no CUDA device" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-batch", "2"], "--train-batch and --amp are for --training"),
        (["--amp"], "--train-batch and --amp are for --training"),
        (["--training", "--plot", "x.png"], "--plot does not go with --training"),
    ],
)
def test_report_training_options_need_training(
    models: dict[str, Path], args: list[str], message: str
) -> None:
    result = run("report", str(models["narrow"]), *args)
    assert result.exit_code == 2 and message in result.output


def fit(models: dict[str, Path], tmp_path: Path, budget: int, *extra: str) -> Result:
    out = tmp_path / "slim.onnx"
    return run(
        "prune", str(models["full"]), "--input-shape", "1x1x16x16x16", "--data", "random",
        "--fit-training", f"{budget}B", "--train-batch", "2", "--train-device", "cpu",
        "--device", "cpu", "-o", str(out), "--quiet", *extra,
    )  # fmt: skip


@pytest.mark.usefixtures("verified_cpu")
def test_fit_training_prunes_the_least_that_fits(models: dict[str, Path], tmp_path: Path) -> None:
    full = predicted(models["full"], 2)
    budget = int(0.75 * full)
    result = fit(models, tmp_path, budget, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    training = document["training"]
    assert training["before"]["peak_bytes"] == full
    written = tmp_path / "slim.onnx"
    assert training["after"]["peak_bytes"] == predicted(written, 2) <= budget
    assert measured(written, 2) <= budget
    assert document["plan"]["settings"]["fit_training"]["budget_bytes"] == budget
    assert 0 < training["sparsity"] < 1


def test_the_search_finds_the_least_sparsity_that_fits(models: dict[str, Path]) -> None:
    graph = training_graph(models["full"], {"": (1, *SHAPE)}, batch=1)
    options = PruneOptions(method="ranp-f", device="cpu")
    scoring = score_model(graph, open_data("random", graph, seed=0), options)
    training = training_graph(models["full"], {"": (2, *SHAPE)}, batch=2)
    setup = TrainingSetup(optimizer="adam")
    full = predict_training_memory(training, setup).peak_bytes
    budget = int(0.7 * full)
    found = fit_training_memory(scoring, options, training, setup, budget)
    assert found.before.peak_bytes == full
    assert found.after.peak_bytes <= budget
    channels = analyse_channels(training)
    for sparsity, fits in ((found.sparsity, True), (found.sparsity - 2 * SEARCH_TOLERANCE, False)):
        keep = select_at(scoring, "ranp-f", sparsity, options).keep
        peak = predict_training_memory(pruned_shapes(channels, keep), setup).peak_bytes
        assert (peak <= budget) == fits, (sparsity, peak, budget)


def test_fit_training_says_in_one_line_when_nothing_fits_or_all_fits(
    models: dict[str, Path], tmp_path: Path
) -> None:
    full = predicted(models["full"], 2)
    for budget, message in ((full // 50, "nothing fits"), (2 * full, "nothing to prune")):
        result = fit(models, tmp_path, budget)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not (tmp_path / "slim.onnx").exists()


def test_fit_training_trains_at_another_patch_than_it_scores(
    models: dict[str, Path], tmp_path: Path
) -> None:
    patch = (2, 1, 24, 24, 24)
    full = predict_training_memory(training_graph(models["full"], {"": patch}, batch=2))
    budget = int(0.8 * full.peak_bytes)
    result = fit(models, tmp_path, budget, "--train-input-shape", "1x1x24x24x24", "--json")
    assert result.exit_code == 0, result.output
    training = json.loads(result.stdout)["training"]
    assert training["before"]["peak_bytes"] == full.peak_bytes
    assert training["after"]["input_shapes"] == {"input": list(patch)}
    assert training["after"]["peak_bytes"] <= budget


def test_fit_training_is_one_target_among_the_others(
    models: dict[str, Path], tmp_path: Path
) -> None:
    result = fit(models, tmp_path, 1 << 30, "--sparsity", "0.5")
    assert result.exit_code == 1 and "exactly one of" in result.stderr
    result = run(
        "prune", str(models["full"]), "--input-shape", "1x1x16x16x16", "--data", "random",
        "--fit-training", "eleven", "-o", str(tmp_path / "x.onnx"),
    )  # fmt: skip
    assert result.exit_code == 1 and "not a memory size" in result.stderr
