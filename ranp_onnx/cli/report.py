"""``ranp-onnx report``."""

from __future__ import annotations

import json
from typing import Any

import click

from ..analysis.costs import CONVENTIONS, count_costs
from ..analysis.shapes import analyse, parse_input_shapes, require_convolution
from ..reporting.profiling import measure
from ..reporting.tables import comparison_json, format_comparison, format_report
from .options import (
    data_option,
    force_option,
    ignore_index_option,
    input_shape_option,
    json_option,
    plot_option,
    training_options,
)
from .plotting import check_plot_path, report_figure, write_plot
from .training import report_training


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@input_shape_option
@click.option(
    "--convention",
    type=click.Choice(CONVENTIONS),
    default="standard",
    show_default=True,
    help="standard: exact counts; ranp-paper: the RANP reference counter (paper tables).",
)
@json_option
@click.option(
    "--measure",
    "do_measure",
    is_flag=True,
    help="Also time the model in onnxruntime on random inputs: latency, arena peak, time by op.",
)
@click.option(
    "--runs",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Timed runs for --measure.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Execution provider for --measure.",
)
@click.option(
    "--compare", type=click.Path(dir_okay=False), help="Another model to show side by side."
)
@click.option(
    "--compare-input-shape",
    "compare_shapes",
    multiple=True,
    metavar="NAME=DIMS",
    help="Input shapes for the --compare model (default: the same as --input-shape).",
)
@plot_option
@data_option
@ignore_index_option
@force_option
@click.option(
    "--training",
    is_flag=True,
    help="Predict the peak memory of a torch training step of to_torch(MODEL) instead: "
    "forward to the logits (a final Softmax left out), cross-entropy, backward, optimizer "
    "step. --input-shape is the training patch; with --measure, also run a step and read "
    "its peak from torch's allocator.",
)
@training_options
def report(
    model: str,
    input_shapes: tuple[str, ...],
    convention: str,
    as_json: bool,
    do_measure: bool,
    runs: int,
    device: str,
    compare: str | None,
    compare_shapes: tuple[str, ...],
    plot: str | None,
    data: str | None,
    ignore_index: int | None,
    force: bool,
    training: bool,
    **train: Any,
) -> None:
    """Count a model's parameters, FLOPs and activation memory, per layer and in total.

    \b
    ranp-onnx report unet.onnx
    ranp-onnx report unet.onnx --convention ranp-paper --json
    ranp-onnx report slim.onnx --compare unet.onnx --measure
    ranp-onnx report slim.onnx --compare unet.onnx --plot slim.png
    ranp-onnx report unet.onnx --training --train-batch 2 --optimizer adam

    --plot draws the neuron importance of the full model (the --compare model if given)
    scored on --data (default: random inputs, as the figure's title says), the retained
    channels per layer (with --compare) and FLOPs and memory per layer.
    """
    if training:
        if plot is not None:
            raise click.UsageError("--plot does not go with --training")
        report_training(
            model, input_shapes, compare, compare_shapes, as_json, do_measure, device, runs, train
        )
        return
    if any(train[key] is not None for key in ("train_batch", "amp")):
        raise click.UsageError("--train-batch and --amp are for --training")
    if plot is None and (data is not None or ignore_index is not None):
        raise click.UsageError("--data and --ignore-index are for --plot")
    inputs = [model] if compare is None else [model, compare]
    plot_out = check_plot_path(plot, force=force, inputs=inputs)
    graph = analyse(model, parse_input_shapes(input_shapes))
    require_convolution(graph)
    costs = count_costs(graph, convention)  # type: ignore[arg-type]
    measured = measure(graph, runs=runs, device=device) if do_measure else None
    if compare is None:
        if as_json:
            document = costs.to_json()
            if measured is not None:
                document["measured"] = measured.to_json()
            click.echo(json.dumps(document, sort_keys=True))
        else:
            click.echo(format_report(costs, measured))
        if plot_out is not None:
            figure = report_figure(graph, costs, None, source=data, ignore_index=ignore_index)
            write_plot(figure, plot_out, quiet=as_json)
        return
    other_graph = analyse(compare, parse_input_shapes(compare_shapes or input_shapes))
    require_convolution(other_graph)
    other = count_costs(other_graph, convention)  # type: ignore[arg-type]
    other_measured = measure(other_graph, runs=runs, device=device) if do_measure else None
    if as_json:
        document = comparison_json(other, costs)
        if measured is not None and other_measured is not None:
            document["measured"] = measured.to_json()
            document["compare"]["measured"] = other_measured.to_json()
        click.echo(json.dumps(document, sort_keys=True))
    else:
        pair = (
            (other_measured, measured)
            if measured is not None and other_measured is not None
            else None
        )
        click.echo(format_comparison(other, costs, pair))
    if plot_out is not None:
        figure = report_figure(other_graph, other, costs, source=data, ignore_index=ignore_index)
        write_plot(figure, plot_out, quiet=as_json)
