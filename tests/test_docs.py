"""The docs' generated blocks match ``--help`` and the op registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ranp_onnx.cli import docs
from ranp_onnx.cli.main import cli
from ranp_onnx.ops import registered_op_types

DOCS = Path(__file__).resolve().parent.parent / "docs"
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
