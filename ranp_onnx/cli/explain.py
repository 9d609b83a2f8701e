"""``ranp-onnx explain``."""

from __future__ import annotations

import json

import click

from ..analysis.shapes import analyse, parse_input_shapes
from ..reporting.explain import explain, format_explanation
from .options import input_shape_option, json_option, layer_choice_options


@click.command("explain")
@click.argument("model", type=click.Path(dir_okay=False))
@input_shape_option
@layer_choice_options
@json_option
def explain_command(
    model: str,
    input_shapes: tuple[str, ...],
    keep: tuple[str, ...],
    ignore: tuple[str, ...],
    as_json: bool,
) -> None:
    """List every weighted layer, its channel group, and why it can or cannot be pruned.

    A dry run of the channel analysis: nothing is scored or written. A layer is kept
    whole where its channels feed a graph output, pass an op that mixes channels or has
    no rule, share a weight, or where --keep / --ignore name it; the reason names the
    node or tensor.

    \b
    ranp-onnx explain unet.onnx
    ranp-onnx explain unet.onnx --json
    """
    graph = analyse(model, parse_input_shapes(input_shapes))
    explanation = explain(graph, keep=keep, ignore=ignore)
    if as_json:
        click.echo(json.dumps(explanation.to_json(), sort_keys=True))
    else:
        click.echo(format_explanation(explanation))
