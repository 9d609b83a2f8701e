"""The ``ranp-onnx`` command group and its error handling.

User errors (:class:`ranp_onnx.errors.RanpError`) and click's usage errors print one line on
stderr and never show a traceback. Exit statuses: 0 success, 1 user error (bad input, an
impossible request), 2 usage (an unknown option, a bad option value), 3 validation failed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import RanpError
from . import explain, export, prune, regularize, report, validate

#: Exit status of a usage error (unknown option, bad option value, missing argument).
USAGE_EXIT = 2


class RanpGroup(click.Group):
    """A click group that turns user errors into one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a non-zero ``ctx.exit`` inside it exits the process.

        In non-standalone mode click would return that code from :meth:`main` instead.
        """
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit as done:
            if done.exit_code:
                sys.exit(done.exit_code)
            raise

    def main(  # type: ignore[override]  # never standalone: always returns or exits
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        """Parse and run; an error prints one line and exits 1 (2: usage, 3: validation)."""
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except RanpError as error:
            click.echo(f"error: {_one_line(self.as_flags(str(error)))}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as error:
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            click.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(USAGE_EXIT if isinstance(error, click.UsageError) else 1)
        except OSError as error:
            click.echo(f"error: {_one_line(str(error))}", err=True)
            sys.exit(1)
        return result

    def as_flags(self, message: str) -> str:
        """Name the library's parameters (`` `min_channels` ``) by their flags (``--min-channels``).

        Library errors name the Python parameter in backquotes; every option of every
        command maps its parameter name to its flag. Other backquoted text stays as it is.
        """
        flags = dict(_FLAG_OF_PARAMETER)
        for command in self.commands.values():
            for param in command.params:
                if isinstance(param, click.Option) and param.name:
                    flags.setdefault(param.name, max(param.opts, key=len))
        return _PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), message)


#: Library parameters whose flag is not named after them.
_FLAG_OF_PARAMETER = {"memory_check": "--no-memory-check", "budget_bytes": "--fit-training"}
#: A parameter name in backquotes, as library errors write it.
_PARAMETER = re.compile(r"`([a-z_]+)`")


def _one_line(message: str) -> str:
    """Join a multi-line message so that an error is exactly one line on stderr."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


@click.group(cls=RanpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ranp-onnx")
def cli() -> None:
    """Resource Aware Neuron Pruning (RANP) at initialization for 3D CNNs, on ONNX.

    \b
    ranp-onnx export unet3d-15 --preset shapenet -o unet.onnx
    ranp-onnx report unet.onnx --convention ranp-paper
    """


cli.add_command(report.report)
cli.add_command(export.export)
cli.add_command(prune.prune_command)
cli.add_command(prune.apply_command)
cli.add_command(prune.search_command)
cli.add_command(explain.explain_command)
cli.add_command(validate.validate_command)
cli.add_command(regularize.regularize_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="ranp-onnx")
