"""The docs' generated blocks match ``--help`` and the op registry."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from ranp_onnx.cli import docs
from ranp_onnx.cli.main import cli
from ranp_onnx.ops import registered_op_types

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI, OPS = DOCS / "cli.md", DOCS / "ops.md"


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.DOTALL)
    assert match is not None, f"the docs have no {name} block"
    return match.group(1)


def test_generated_blocks_are_up_to_date() -> None:
    assert docs.FILES == (CLI, OPS)
    for path in docs.FILES:
        text = path.read_text()
        assert docs.render_blocks(text) == text, "run: python -m ranp_onnx.cli.docs"
    assert docs.main(["--check"]) == 0


def test_the_cli_reference_has_every_command_and_option() -> None:
    reference = block(CLI.read_text(), "cli-reference")
    for name, command in cli.commands.items():
        assert f"#### `ranp-onnx {name}`" in reference
        for parameter in command.params:
            for option in getattr(parameter, "opts", []):
                if option.startswith("-"):
                    assert option in reference, (name, option)


def test_the_ops_table_lists_every_registered_op_once() -> None:
    table = block(OPS.read_text(), "supported-ops")
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]
    listed = [op for row in rows for op in re.findall(r"`([^`]+)`", row)]
    assert sorted(listed) == registered_op_types()
    assert f"{len(listed)} ops in" in table
    assert re.search(r"\| `Conv` \| conv \| layer: output channels are neurons \|", table)
    assert re.search(r"\| `Constant`, `Range` \| shape \| kept", table)
    assert re.search(r"\| `ConstantOfShape` \| shape \| regenerated at the pruned width \|", table)
    assert re.search(r"\| `Pad` \| padding \| coupled \| yes \| yes \|", table)


def test_a_stale_block_is_reported_and_rewritten(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- cli-reference:start -->\nold\n<!-- cli-reference:end -->\n"
        "<!-- supported-ops:start -->\n<!-- supported-ops:end -->\nend\n"
    )
    assert docs.main(["--readme", str(readme), "--check"]) == 1
    assert "old" in readme.read_text()
    assert docs.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "\nold\n" not in text
    assert block(text, "cli-reference") == docs.cli_reference()
    assert docs.main(["--readme", str(readme), "--check"]) == 0
    readme.write_text("no markers\n")
    assert docs.main(["--readme", str(readme)]) == 2


@pytest.mark.parametrize("name", ["prune", "validate", "explain"])
def test_help_is_wrapped_at_the_readme_width(name: str) -> None:
    assert max(len(line) for line in docs.command_help(name).splitlines()) <= docs.HELP_WIDTH


_PAGES = ("README.md", "DEVELOPERS.md", "docs/usage.md", "docs/results.md", "docs/limitations.md")


def documented_imports(text: str) -> list[tuple[str, list[str]]]:
    """Every ``from ranp_onnx... import ...`` and ``ranp_onnx.NAME`` of the code blocks."""
    found: list[tuple[str, list[str]]] = []
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for module, names in re.findall(r"^from (ranp_onnx[\w.]*) import (.+)$", code, flags=re.M):
            found.append((module, [name.strip() for name in names.split(",")]))
        attributes = set(re.findall(r"\branp_onnx\.(\w+)\(", code))
        found.extend(("ranp_onnx", [name]) for name in sorted(attributes))
    return found


@pytest.mark.parametrize("page", _PAGES)
def test_the_python_examples_import_what_exists(page: str) -> None:
    imports = documented_imports((ROOT / page).read_text())
    for module, names in imports:
        loaded = importlib.import_module(module)
        for name in names:
            assert hasattr(loaded, name), f"{page}: {module}.{name} does not exist"


def test_a_stale_documented_import_is_found() -> None:
    stale = "```python\nfrom ranp_onnx.data import open_data\n```\n"
    [(module, names)] = documented_imports(stale)
    assert names == ["open_data"]
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)
