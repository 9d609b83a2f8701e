"""``ranp-onnx prune``, ``apply`` and ``search-sparsity``: output, exit codes, refusals."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from builders import export_module
from click.testing import CliRunner, Result
from pruning_models import CLASSES, segmentation_npz, zoo_model
from torch import nn

from ranp_onnx.analysis.channels import ChannelAnalysis
from ranp_onnx.cli import prune as prune_cli
from ranp_onnx.cli.main import cli
from ranp_onnx.ir.load import load_model
from ranp_onnx.ir.save import save_model

SHAPE = (1, 16, 16, 16)
#: The pipeline module (``ranp_onnx.prune`` is the function of the same name).
pipeline = importlib.import_module("ranp_onnx.pipeline")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small 3D-UNet, a C3D, a convolution-free MLP, data files good and bad."""
    folder = tmp_path_factory.mktemp("cli")
    paths = {
        "unet": save_model(zoo_model("unet3d-15"), folder / "unet.onnx"),
        "unet32": save_model(
            zoo_model("unet3d-15", input_shape=(1, 32, 32, 32)), folder / "unet32.onnx"
        ),
        "c3d": save_model(zoo_model("c3d"), folder / "c3d.onnx"),
        "mlp": save_model(
            export_module(
                nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), torch.randn(2, 4)
            ),
            folder / "mlp.onnx",
        ),
        "data": segmentation_npz(folder / "train.npz", SHAPE, CLASSES, samples=2),
    }
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((2, *SHAPE)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size=(2, *SHAPE[1:]))
    bad = {
        "shape": {"inputs": inputs[:, :, :8], "labels": labels},
        "dtype": {"inputs": inputs.astype(np.complex64), "labels": labels},
        "arrays": {"inputs": inputs, "labels": labels, "extra": inputs},
        "no-labels": {"inputs": inputs},
        "range": {"inputs": inputs, "labels": labels + CLASSES},
        "nan": {"inputs": np.where(inputs > 2, np.nan, inputs), "labels": labels},
        "inf": {"inputs": np.where(inputs > 2, np.inf, inputs), "labels": labels},
    }
    for name, arrays in bad.items():
        paths[f"bad-{name}"] = folder / f"{name}.npz"
        np.savez(paths[f"bad-{name}"], **arrays)  # type: ignore[arg-type]
    return paths


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def prune_args(files: dict[str, Path], out: Path, *extra: str | Path) -> list[str | Path]:
    """RANP-f scored on the labelled data."""
    return [
        "prune",
        files["unet"],
        "--data",
        files["data"],
        "--ignore-index",
        "255",
        "-o",
        out,
        *extra,
    ]


def quick_args(files: dict[str, Path], out: Path, *extra: str | Path) -> list[str | Path]:
    """The L1 criterion: no scoring pass, for tests about the command rather than scores."""
    return ["prune", files["unet"], "--method", "l1", "-o", out, *extra]


def files_first_initializer(files: dict[str, Path]) -> str:
    """The name of the first initializer of the test model (what a corruption scales)."""
    return onnx.load(str(files["unet"])).graph.initializer[0].name


def assert_refused(result: Result, message: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and result.stdout == ""


def test_prune_reports_like_report_compare_and_writes_model_and_plan(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, plan = tmp_path / "slim.onnx", tmp_path / "plan.json"
    result = run(*prune_args(files, out, "--sparsity", "0.5", "--plan", plan))
    assert result.exit_code == 0, result.output
    compare = run("report", out, "--compare", files["unet"])
    assert result.stdout.startswith(compare.stdout)
    for line in ("neurons ", "validated     ", "kept whole    /head/Conv", f"wrote {out}"):
        assert line.replace(" ", "") in result.stdout.replace(" ", "")
    # No progress (stderr is not a terminal here) and no warnings.
    assert result.stderr == ""
    onnx.checker.check_model(str(out), full_check=True)
    document = json.loads(plan.read_text())
    assert document["settings"]["sparsity"] == 0.5 and document["settings"]["ignore_index"] == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json", "slim.onnx"]


def test_prune_json_is_the_compare_document_plus_plan_and_validation(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "slim.onnx"
    result = run(*prune_args(files, out, "--target-flops", "0.3", "--json"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    document = json.loads(result.stdout)
    compare = json.loads(run("report", out, "--compare", files["unet"], "--json").stdout)
    for key in ("totals", "compare", "reduction_percent", "layers"):
        assert document[key] == compare[key]
    assert document["output"] == str(out)
    assert document["validation"]["max_relative_error"] <= 1e-4
    assert document["plan"]["achieved"]["fraction_kept"]["flops"] <= 0.3
    assert document["totals"]["flops"] <= 0.3 * document["compare"]["totals"]["flops"]


def test_budget_reports_what_it_achieved(files: dict[str, Path], tmp_path: Path) -> None:
    result = run(*quick_args(files, tmp_path / "slim.onnx", "--target-memory", "0.6"))
    assert result.exit_code == 0, result.output
    assert "budget        memory at most 0.6 of the full model: achieved 0.5" in result.stdout


def test_search_sparsity_text_and_json(files: dict[str, Path]) -> None:
    arguments = ["search-sparsity", files["unet"], "--data", files["data"], "--ignore-index", "255"]
    text = run(*arguments, "--method", "vanilla")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("largest feasible neuron sparsity with vanilla: ")
    document = json.loads(
        run("search-sparsity", files["unet"], "--method", "random", "--json").stdout
    )
    assert document["method"] == "random"
    assert 0 < document["max_feasible_sparsity"] < 1
    assert document["neurons_kept"] < document["neurons"]
    assert (
        document["comparison"]["totals"]["flops"]
        < document["comparison"]["compare"]["totals"]["flops"]
    )


def test_apply_reapplies_a_plan_also_at_a_larger_input(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, plan = tmp_path / "slim.onnx", tmp_path / "plan.json"
    assert run(*quick_args(files, out, "--sparsity", "0.6", "--plan", plan)).exit_code == 0
    same = run("apply", files["unet"], "--plan", plan, "-o", tmp_path / "again.onnx", "--json")
    assert same.exit_code == 0, same.output
    assert (
        json.loads(same.stdout)["totals"]
        == json.loads(run("report", out, "--json").stdout)["totals"]
    )
    larger = run("apply", files["unet32"], "--plan", plan, "-o", tmp_path / "slim32.onnx")
    assert larger.exit_code == 0, larger.output
    assert "validated" in larger.stdout
    shapes = load_model(tmp_path / "slim32.onnx").proto.graph.input[0].type.tensor_type.shape
    assert [d.dim_value for d in shapes.dim] == [1, 1, 32, 32, 32]


def test_progress_only_on_a_terminal_and_not_with_quiet_or_json(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prune_cli, "stderr_is_terminal", lambda: True)
    shown = run(*prune_args(files, tmp_path / "a.onnx", "--target-flops", "0.5"))
    assert shown.exit_code == 0, shown.output
    assert shown.stderr.startswith("scoring on train.npz: 2 samples, 2 batches of 1\n")
    assert "\rscoring batch 2/2\n" in shown.stderr
    assert "\rbudget search step 14/14\n" in shown.stderr
    search = run("search-sparsity", files["unet"], "--method", "random")
    assert "\rsearch step 14/14\n" in search.stderr
    for flag in ("--quiet", "--json"):
        silent = run(*quick_args(files, tmp_path / f"{flag}.onnx", "--sparsity", "0.5", flag))
        assert silent.exit_code == 0 and silent.stderr == ""


def test_failed_validation_exits_3_and_writes_nothing(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrite = pipeline.rewrite

    def corrupted(channels: ChannelAnalysis, keep: np.ndarray) -> onnx.ModelProto:
        model = rewrite(channels, keep)
        weight = model.graph.initializer[0]
        value = onnx.numpy_helper.to_array(weight)
        weight.CopyFrom(onnx.numpy_helper.from_array(value * 1.5, weight.name))
        return model

    monkeypatch.setattr(pipeline, "rewrite", corrupted)
    out, plan = tmp_path / "slim.onnx", tmp_path / "plan.json"
    result = run(*quick_args(files, out, "--sparsity", "0.5", "--plan", plan))
    # The first initializer was scaled: the oracle names it, and the node that reads it.
    first = f"validation failed: tensor '{files_first_initializer(files)}' (read by node"
    assert_refused(result, first, code=3)
    assert list(tmp_path.iterdir()) == []
    skipped = run(*quick_args(files, out, "--sparsity", "0.5", "--no-validate"))
    assert skipped.exit_code == 0 and "validated" not in skipped.stdout


def test_tensors_that_are_zero_in_the_masked_original_get_a_note(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv3d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv3d(6, 3, 1))
    with torch.no_grad():
        module[0].weight.zero_()  # a dead layer: its output is zero on every input
        module[0].bias.zero_()
    source = save_model(export_module(module, torch.randn(1, 2, 4, 4, 4)), tmp_path / "m.onnx")
    result = run("prune", source, "--method", "l1", "--sparsity", "0.5", "-o", tmp_path / "o.onnx")
    assert result.exit_code == 0, result.output
    assert "tensors node by node" in result.stdout
    assert "of the tensors compared are all zero in the masked original" in result.stdout
    document = json.loads(
        run(
            *quick_args({"unet": source}, tmp_path / "j.onnx", "--sparsity", "0.5", "--json")
        ).stdout
    )
    validation = document["validation"]
    assert validation["conclusive"] is True  # the proof ran, node by node
    assert "/0/Conv_output_0" in validation["degenerate_tensors"]
    assert validation["tensors_compared"] >= 2


def test_existing_output_needs_force_and_is_left_alone(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "slim.onnx"
    out.write_bytes(b"keep me")
    assert_refused(run(*quick_args(files, out, "--sparsity", "0.5")), "exists; pass --force")
    assert out.read_bytes() == b"keep me"
    assert run(*quick_args(files, out, "--sparsity", "0.5", "--force")).exit_code == 0
    assert out.read_bytes() != b"keep me"


#: A plan for the UNet's first layer only.
ONE_LAYER_PLAN = {
    "format": "ranp-onnx-plan/1",
    "model": "unet.onnx",
    "settings": {},
    "layers": [
        {
            "node": "/encoders.0/conv1/conv/Conv",
            "weight": "encoders.0.conv1.conv.weight",
            "op_type": "Conv",
            "channels": 4,
            "kept": [0],
        }
    ],
    "groups": [],
}

BadCase = Callable[[dict[str, Path], Path], list[str | Path]]


def _with_data(name: str) -> BadCase:
    """Prune the UNet at 0.5 with the data file ``name`` of the fixtures."""
    return lambda f, o: ["prune", f["unet"], "--data", f[name], "--sparsity", "0.5", "-o", o]


BAD: dict[str, tuple[BadCase, str]] = {
    "data shape": (_with_data("bad-shape"), "'inputs'"),
    "data dtype": (_with_data("bad-dtype"), "'inputs'"),
    "extra array": (_with_data("bad-arrays"), "extra"),
    "no labels": (_with_data("bad-no-labels"), "labels"),
    "labels out of range": (_with_data("bad-range"), "labels"),
    "nan": (_with_data("bad-nan"), "'inputs'"),
    "inf": (_with_data("bad-inf"), "'inputs'"),
    "missing data": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--data",
            o.parent / "none.npz",
            "--sparsity",
            "0.5",
            "-o",
            o,
        ],
        "none.npz",
    ),
    "no data": (
        lambda f, o: ["prune", f["unet"], "--sparsity", "0.5", "-o", o],
        "--method ranp-f needs --data",
    ),
    "output is the input": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "-o",
            f["unet"],
            "--force",
        ],
        "refusing to overwrite the input file",
    ),
    "plan is the output": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "-o",
            o,
            "--plan",
            o,
        ],
        "the same file as the model output",
    ),
    "no target": (
        lambda f, o: ["prune", f["unet"], "--method", "l1", "-o", o],
        "give exactly one of --sparsity, --target-flops, --target-memory and --fit-training",
    ),
    "two targets": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "--target-flops",
            "0.5",
            "-o",
            o,
        ],
        "give exactly one of",
    ),
    "unreachable budget": (
        lambda f, o: ["prune", f["unet"], "--method", "l1", "--target-flops", "1e-6", "-o", o],
        "not reachable",
    ),
    "unknown keep": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "--keep",
            "nope",
            "-o",
            o,
        ],
        "--keep nope: no scored layer",
    ),
    "unknown ignore": (
        lambda f, o: [
            "prune",
            f["unet"],
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "--ignore",
            "nope",
            "-o",
            o,
        ],
        "--ignore nope: no scored layer",
    ),
    "sparsity out of range": (
        lambda f, o: ["prune", f["unet"], "--method", "l1", "--sparsity", "1", "-o", o],
        "--sparsity",
    ),
    "no convolution": (
        lambda f, o: ["prune", f["mlp"], "--method", "l1", "--sparsity", "0.5", "-o", o],
        "no convolution",
    ),
    "search without convolution": (
        lambda f, o: ["search-sparsity", f["mlp"], "--method", "random"],
        "no convolution",
    ),
    "apply without convolution": (
        lambda f, o: ["apply", f["mlp"], "--plan", o.parent / "plan.json", "-o", o],
        "no convolution",
    ),
    "plan of another model": (
        lambda f, o: ["apply", f["c3d"], "--plan", o.parent / "plan.json", "-o", o],
        "is not in the plan",
    ),
    "plan missing": (
        lambda f, o: ["apply", f["unet"], "--plan", o.parent / "none.json", "-o", o],
        "none.json: no such file",
    ),
    "plan not json": (
        lambda f, o: ["apply", f["unet"], "--plan", f["data"], "-o", o],
        "not a JSON plan",
    ),
    "missing model": (
        lambda f, o: [
            "prune",
            o.parent / "none.onnx",
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "-o",
            o,
        ],
        "none.onnx: no such file",
    ),
}


#: Cases that are usage errors (a bad option value), exit status 2.
USAGE_ERRORS = {"sparsity out of range"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_1_and_writes_nothing(
    case: str, files: dict[str, Path], tmp_path: Path
) -> None:
    arguments, message = BAD[case]
    (tmp_path / "plan.json").write_text(json.dumps(ONE_LAYER_PLAN))
    out = tmp_path / "out.onnx"
    before = {p.name for p in tmp_path.iterdir()}
    usage = case in USAGE_ERRORS  # click rejects the option value: exit 2
    assert_refused(run(*arguments(files, out)), message, code=2 if usage else 1)
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} == before
