"""``validate``: pruned zoo models run in onnxruntime and OpenVINO and pass the oracle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from pruning_models import SMALL, zoo_model

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import ValidationError
from ranp_onnx.pipeline import PruneOptions, prune
from ranp_onnx.reporting import deploy
from ranp_onnx.reporting.deploy import check_deployment
from ranp_onnx.selection.plan import PrunePlan

HAS_OPENVINO = True
try:
    import openvino  # noqa: F401
except ImportError:
    HAS_OPENVINO = False
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")


def run(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def pruned_pair(name: str, folder: Path, sparsity: float = 0.5) -> tuple[Path, Path, Path]:
    """The small zoo model, pruned by filter L1 norm: (original, pruned, plan) files."""
    original, pruned, plan = (folder / f"{name}{s}" for s in (".onnx", "-slim.onnx", ".json"))
    if not pruned.exists():
        model = zoo_model(name)
        onnx.save_model(model, str(original))
        result = prune(model, None, PruneOptions(method="l1", sparsity=sparsity))
        onnx.save_model(result.model, str(pruned))
        plan.write_text(result.plan.dumps())
    return original, pruned, plan


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@needs_openvino
@pytest.mark.parametrize("name", sorted(SMALL))
def test_pruned_zoo_models_run_in_openvino_and_pass_the_oracle(name: str, folder: Path) -> None:
    original, pruned, plan = pruned_pair(name, folder)
    graph = analyse(str(pruned))
    check = check_deployment(
        graph,
        pruned,
        runtime_name="openvino",
        reference=analyse(str(original)),
        plan=PrunePlan.from_json(json.loads(plan.read_text())),
    )
    assert check.runtime == "openvino" and set(check.errors) == set(graph.output_names)
    assert 0 <= check.worst[1] <= 1e-4
    assert check.oracle is not None and check.oracle.worst[1] <= 1e-4
    # The model really is the smaller one.
    assert graph.model.proto.ByteSize() < analyse(str(original)).model.proto.ByteSize()


def test_cli_validate_in_onnxruntime_with_the_oracle(folder: Path) -> None:
    original, pruned, plan = pruned_pair("unet3d-15", folder)
    result = run("validate", pruned, "--reference", original, "--plan", plan)
    assert result.exit_code == 0, result.output
    assert "in onnxruntime" in result.stdout and "oracle        equals" in result.stdout
    document = json.loads(run("validate", pruned, "--json").stdout)
    assert document["runtime"] == "onnxruntime" and document["passed"] is True
    assert document["errors"] == {"output": 0.0} and document["oracle"] is None


@needs_openvino
def test_cli_validate_in_openvino_prints_the_agreement(folder: Path) -> None:
    _, pruned, _ = pruned_pair("unet3d-15", folder)
    result = run("validate", pruned, "--runtime", "openvino", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["runtime"] == "openvino" and document["max_relative_error"] <= 1e-4


def test_a_wrong_plan_fails_the_oracle_with_exit_3(folder: Path, tmp_path: Path) -> None:
    original, pruned, plan = pruned_pair("unet3d-15", folder)
    document = json.loads(plan.read_text())
    layer = next(entry for entry in document["layers"] if len(entry["kept"]) < entry["channels"])
    removed = sorted(set(range(layer["channels"])) - set(layer["kept"]))
    layer["kept"] = sorted([*layer["kept"][1:], removed[0]])  # swap one kept channel
    for group in document["groups"]:
        if group["layers"] == [layer["node"]]:
            group["kept"] = layer["kept"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(document))
    result = run("validate", pruned, "--reference", original, "--plan", wrong)
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: the masked-original oracle: validation failed")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_openvino_disagreement_fails_with_exit_3(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pruned, _ = pruned_pair("unet3d-15", folder)
    real = deploy.run_onnxruntime

    def off(path: object, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        return [value + 0.01 * np.abs(value).max() for value in real(str(path), feeds)]

    monkeypatch.setattr(deploy, "run_openvino", off)
    monkeypatch.setattr(deploy, "runtime_version", lambda name: "test")
    with pytest.raises(ValidationError, match=r"differs between OpenVINO and onnxruntime by 0\.01"):
        check_deployment(analyse(str(pruned)), pruned, runtime_name="openvino")


def test_missing_openvino_is_one_line_exit_1(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, pruned, _ = pruned_pair("unet3d-15", folder)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    result = run("validate", pruned, "--runtime", "openvino")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: --runtime openvino: OpenVINO is not installed (pip install 'ranp-onnx[openvino]')\n"
    )


def test_usage_and_input_errors(folder: Path, tmp_path: Path) -> None:
    original, pruned, plan = pruned_pair("unet3d-15", folder)
    alone = run("validate", pruned, "--reference", original)
    assert alone.exit_code == 2 and "--reference and --plan go together" in alone.stderr
    missing = run("validate", tmp_path / "none.onnx")
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    other = run("validate", pruned, "--reference", pruned, "--plan", plan)
    assert other.exit_code == 1 and "the plan was made for" in other.stderr
    assert "Traceback" not in alone.output + missing.output + other.output
