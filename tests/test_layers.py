"""The layering contract (make lint) holds, and breaks when a lower layer imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package copied under ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "ranp_onnx", tmp_path / "ranp_onnx")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = lint(copy_package(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("ir/units.py", "from ..pipeline import prune\n"),
        (
            "ops/base.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from ..analysis.channels import ChannelAnalysis\n",
        ),
        ("selection/plan.py", "from ..rewrite.oracle import validate\n"),
    ],
)
def test_an_import_from_a_lower_layer_to_a_higher_one_breaks_the_contract(
    tmp_path: Path, module: str, line: str
) -> None:
    tree = copy_package(tmp_path)
    path = tree / "ranp_onnx" / module
    path.write_text(path.read_text() + "\n" + line)
    result = lint(tree)
    assert result.returncode != 0
    lower = "ranp_onnx." + module.split("/")[0]
    assert f"{lower} is not allowed to import" in result.stdout
    assert "BROKEN" in result.stdout
