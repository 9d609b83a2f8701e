"""The ``ranp-onnx`` command group and its error handling.

User errors (:class:`ranp_onnx.errors.RanpError` and click's usage errors) print one line on
stderr and exit with status 1 (3 for a failed validation); they never show a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from ranp_onnx.errors import RanpError

from . import export, report


class RanpGroup(click.Group):
    """A click group that turns user errors into one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a RanpError becomes ``error: ...`` and its exit code."""
        try:
            return super().invoke(ctx)
        except RanpError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)

    def main(  # type: ignore[override]  # never standalone: always returns or exits
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        """Parse and run; usage errors print one line and exit 1."""
        extra.pop("standalone_mode", None)
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as error:
            context = getattr(error, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            click.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(1)
        except OSError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)


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


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="ranp-onnx")
