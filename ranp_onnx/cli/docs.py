"""Documentation generated from the code: the CLI reference and the supported-ops table.

``python -m ranp_onnx.cli.docs`` rewrites the blocks between their marker comments
(``<!-- cli-reference:start -->`` ... ``<!-- cli-reference:end -->`` in docs/cli.md,
``supported-ops`` in docs/ops.md); ``--check`` only reports whether they are up to date
(exit 1 if not). A test runs the check, so the docs cannot drift from ``--help`` or the op
registry.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..ops import OpRule, registered_rules
from .main import cli

#: Width the help is wrapped at in the docs.
HELP_WIDTH = 100
#: The repository's docs folder (the package is installed editable from the repository).
DOCS = Path(__file__).resolve().parents[2] / "docs"


def command_help(name: str | None = None) -> str:
    """The ``--help`` text of ``ranp-onnx`` (None) or one of its commands, as the CLI shows it.

    The contexts are made as the group makes them (its context settings, such as ``-h``,
    are inherited), so the text does not depend on what ran before.
    """
    group = click.Context(
        cli,
        info_name="ranp-onnx",
        terminal_width=HELP_WIDTH,
        max_content_width=HELP_WIDTH,
        **cli.context_settings,
    )
    if name is None:
        return cli.get_help(group).rstrip()
    command = cli.commands[name]
    return command.get_help(click.Context(command, info_name=name, parent=group)).rstrip()


def cli_reference() -> str:
    """Markdown: the help of ``ranp-onnx`` and of every command, in registration order."""
    parts = ["```text", command_help(), "```"]
    for name in cli.commands:
        parts += ["", f"#### `ranp-onnx {name}`", "", "```text", command_help(name), "```"]
    return "\n".join(parts)


def _overrides(rule: OpRule, method: str) -> bool:
    return getattr(type(rule), method) is not getattr(OpRule, method)


def _rewrites(rule: OpRule) -> bool:
    return _overrides(rule, "rewrite") or _overrides(rule, "regenerate")


def _channels(rule: OpRule) -> str:
    if rule.weight_input is not None:
        return "layer: output channels are neurons"
    if _overrides(rule, "couple"):
        return "coupled"
    if _overrides(rule, "follows_channels"):
        return "regenerated at the pruned width"
    return "kept (no channel rule)"


def supported_ops_table() -> str:
    """Markdown: one row per op rule of the registry, its ops, family and channel behaviour."""
    rows: dict[type[OpRule], list[str]] = {}
    for domain, op_type, rule in registered_rules():
        rows.setdefault(type(rule), []).append(f"{domain}:{op_type}" if domain else op_type)
    lines = [
        "| ops | family | channels | torch | rewrite | rule |",
        "|---|---|---|---|---|---|",
    ]
    for rule_class, op_types in sorted(rows.items(), key=lambda item: item[1][0]):
        rule = rule_class()
        doc = (rule_class.__doc__ or "").strip().splitlines()[0].replace("|", "\\|")
        lines.append(
            f"| {', '.join(f'`{op}`' for op in op_types)} "
            f"| {rule_class.__module__.rsplit('.', 1)[-1]} | {_channels(rule)} "
            f"| {'yes' if _overrides(rule, 'evaluate') else 'no'} "
            f"| {'yes' if _rewrites(rule) else '-'} | {doc} |"
        )
    count = sum(len(ops) for ops in rows.values())
    lines += ["", f"{count} ops in {len(rows)} rules."]
    return "\n".join(lines)


#: Generated blocks: marker name -> generator.
BLOCKS: dict[str, Callable[[], str]] = {
    "cli-reference": cli_reference,
    "supported-ops": supported_ops_table,
}


def _block(name: str, content: str) -> Callable[[re.Match[str]], str]:
    """A replacement for ``re.sub``: the block with its markers (no escapes interpreted)."""
    block = f"<!-- {name}:start -->\n{content}\n<!-- {name}:end -->"
    return lambda _match: block


#: The files the blocks live in.
FILES = (DOCS / "cli.md", DOCS / "ops.md")


def render_blocks(text: str) -> str:
    """Return ``text`` with every generated block it holds replaced by its current content.

    Raises:
        ValueError: The text holds no generated block.
    """
    found = False
    for name, generate in BLOCKS.items():
        pattern = re.compile(rf"<!-- {name}:start -->\n.*?<!-- {name}:end -->", flags=re.DOTALL)
        if pattern.search(text):
            found = True
            text = pattern.sub(_block(name, generate()), text)
    if not found:
        names = ", ".join(f"<!-- {name}:start -->" for name in BLOCKS)
        raise ValueError(f"no generated block ({names} ... end)")
    return text


def _update(path: Path, check: bool) -> int:
    """Render one file's blocks; 0 if up to date or rewritten, 1 if stale under check."""
    text = path.read_text()
    try:
        updated = render_blocks(text)
    except ValueError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2
    if updated == text:
        return 0
    if check:
        print(f"{path}: generated blocks are out of date", file=sys.stderr)
        return 1
    path.write_text(updated)
    print(f"updated {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated blocks of the docs, or check them (``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--file", "--readme", type=Path, action="append", help="Only this file (repeatable)."
    )
    parser.add_argument("--check", action="store_true", help="Only report drift (exit 1).")
    arguments = parser.parse_args(argv)
    return max(_update(path, arguments.check) for path in arguments.file or FILES)


if __name__ == "__main__":
    sys.exit(main())
