"""``--plot``: the figures' numbers are the run's numbers, and the PNG is drawn."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import make_model
from click.testing import CliRunner, Result
from onnx import helper

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.pipeline import PruneOptions, PruneResult, Scoring, prune_scored, score_model
from ranp_onnx.reporting.plot_panels import short_name
from ranp_onnx.reporting.plots import PlotData, plot_data, render_plots
from ranp_onnx.scoring.data import open_data
from ranp_onnx.selection.criteria import layer_resources
from ranp_onnx.selection.importance import resource_multipliers
from ranp_onnx.zoo import export_model

try:
    import matplotlib  # noqa: F401

    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.fixture(scope="module")
def unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plots") / "unet.onnx"
    export_model("unet3d-15", path, width_mult=0.25, input_shape=(1, 16, 16, 16))
    return path


@pytest.fixture(scope="module")
def pruned(unet: Path) -> tuple[Scoring, PruneResult]:
    graph = analyse(str(unet))
    options = PruneOptions(method="ranp-f", sparsity=0.8)
    scoring = score_model(graph, open_data("random", graph, batch_size=2, batches=2), options)
    return scoring, prune_scored(graph, scoring, options)


def test_the_figure_shows_the_plan_the_scores_and_the_costs(
    pruned: tuple[Scoring, PruneResult],
) -> None:
    scoring, result = pruned
    data = plot_data(result.before, after=result.after, scoring=scoring, plan=result.plan)
    assert data.channels is not None
    assert data.channels.kept == tuple(len(entry["kept"]) for entry in result.plan.layers)
    assert data.channels.full == (8, 16, 16, 32, 32, 64, 64, 128, 64, 64, 32, 32, 16, 16, 50)
    assert sum(data.channels.kept) == result.plan.achieved["neurons_kept"]
    # The pruned model's convs have exactly the kept channels.
    after = {layer.name: layer for layer in result.after.layers}
    for node, kept in zip(data.channels.layers, data.channels.kept):
        assert after[node].geometry is not None and after[node].geometry.channels_out == kept
    vanilla, weighted, ranp = data.importance
    assert [s.method for s in data.importance] == ["vanilla", "weighted", "ranp-f"]
    assert len(vanilla.scores) == 15 and vanilla.scores[0].shape == (8,)
    # Weighted NP raises every layer mean to the largest; RANP-f then scales each layer.
    np.testing.assert_allclose(weighted.means, vanilla.means.max())
    multipliers = resource_multipliers(layer_resources(scoring.channels, "flops"), 11.0)
    np.testing.assert_allclose(ranp.means, weighted.means * multipliers)
    resources = data.resources
    assert resources.layers == data.channels.layers
    before = {layer.name: layer for layer in result.before.layers}
    assert resources.flops_before == tuple(before[n].flops for n in resources.layers)
    assert resources.flops_after == tuple(after[n].flops for n in resources.layers)
    assert data.totals == (
        (result.before.totals.gflops, result.before.totals.memory_mb),
        (result.after.totals.gflops, result.after.totals.memory_mb),
    )


@needs_matplotlib
def test_render_writes_a_png_of_plausible_size(
    pruned: tuple[Scoring, PruneResult], tmp_path: Path
) -> None:
    scoring, result = pruned
    full = plot_data(result.before, after=result.after, scoring=scoring, plan=result.plan)
    width, height = png_size(render_plots(full, tmp_path / "full.png"))
    assert width == 1600 and 1100 <= height <= 1400
    costs_only = PlotData("costs", (), None, full.resources, "standard", full.totals[:1])
    width, small = png_size(render_plots(costs_only, tmp_path / "costs.png"))
    assert width == 1600 and 400 <= small < height / 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.png", "full.png"]


def test_short_names() -> None:
    assert short_name("/encoders.0/conv1/conv/Conv") == "encoders.0/conv1/conv"
    assert short_name("/head/Conv") == "head"
    assert short_name("conv_3") == "conv_3"
    deep = "/model/model.1/submodule/submodule.0/submodule/conv/conv.0/conv/Conv"
    assert short_name(deep) == "\u2026le.0/submodule/conv/conv.0/conv"
    assert len(short_name(deep)) == 32


@needs_matplotlib
def test_prune_and_report_plot_from_the_cli(unet: Path, tmp_path: Path) -> None:
    slim, plot = tmp_path / "slim.onnx", tmp_path / "prune.png"
    arguments = ["prune", unet, "--data", "random", "--sparsity", "0.7", "-o", slim]
    result = run(*arguments, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert f"plotted       {plot}" in result.stdout and png_size(plot)[0] == 1600
    compared = tmp_path / "report.png"
    report = run("report", slim, "--compare", unet, "--plot", compared)
    assert report.exit_code == 0, report.output
    assert png_size(compared)[1] > 1000
    alone = tmp_path / "alone.png"
    as_json = run("report", unet, "--plot", alone, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["model"] == "unet.onnx"
    assert png_size(alone)[1] < png_size(compared)[1]  # no retained-channels panel
    # Outputs are never overwritten without --force, nor inputs ever.
    again = run("report", unet, "--plot", alone)
    assert again.exit_code == 1 and "exists; pass --force" in again.stderr
    assert run("report", unet, "--plot", alone, "--force").exit_code == 0
    over_input = run("report", unet, "--plot", unet, "--force")
    assert over_input.exit_code == 1 and "refusing to overwrite the input" in over_input.stderr
    same = run(*arguments, "--force", "--plot", slim)
    assert same.exit_code == 1 and "the same file as another output" in same.stderr


def test_plot_errors_are_one_line(
    unet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = run("report", unet, "--data", "random")
    assert usage.exit_code == 2 and "--data and --ignore-index are for --plot" in usage.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    out = tmp_path / "slim.onnx"
    result = run(
        "prune",
        unet,
        "--method",
        "l1",
        "--sparsity",
        "0.5",
        "-o",
        out,
        "--plot",
        tmp_path / "p.png",
    )
    assert result.exit_code == 1
    assert result.stderr == "error: --plot needs matplotlib: pip install 'ranp-onnx[plots]'\n"
    assert not out.exists()  # checked before any work


@needs_matplotlib
def test_report_plots_a_model_with_nothing_to_prune(tmp_path: Path) -> None:
    weights = {"w": np.ones((4, 2, 1, 1, 1), np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv"),
        helper.make_node("Softmax", ["a"], ["y"], name="sm", axis=1),
    ]
    path = tmp_path / "fixed.onnx"
    onnx.save_model(make_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)], weights), str(path))
    result = run("report", path, "--plot", tmp_path / "fixed.png")
    assert result.exit_code == 0, result.output
    width, height = png_size(tmp_path / "fixed.png")
    assert width == 1600 and height < 700  # the cost panels only
