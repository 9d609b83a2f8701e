"""``ranp-onnx export`` (model zoo to ONNX)."""

from __future__ import annotations

import click


@click.command()
@click.argument("name")
def export(name: str) -> None:
    """Export a model of the zoo to ONNX (being written)."""
    raise click.UsageError("export is not available yet")
