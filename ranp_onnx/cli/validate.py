"""``ranp-onnx validate``: the deployment check."""

from __future__ import annotations

import json

import click

from ..analysis.shapes import analyse, parse_input_shapes
from ..reporting.deploy import RUNTIMES, DeploymentCheck, check_deployment
from .options import input_shape_option, json_option, tolerance_option
from .prune import read_plan


@click.command("validate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--runtime",
    "runtime_name",
    type=click.Choice(RUNTIMES),
    default="onnxruntime",
    show_default=True,
    help="Where the model must run (openvino: pip install 'ranp-onnx[openvino]').",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    help="The original model: also check the pruned one against it masked by --plan.",
)
@click.option(
    "--plan",
    "plan_path",
    type=click.Path(dir_okay=False),
    help="The plan that pruned --reference into MODEL.",
)
@input_shape_option
@tolerance_option
@json_option
def validate_command(
    model: str,
    runtime_name: str,
    reference: str | None,
    plan_path: str | None,
    input_shapes: tuple[str, ...],
    tolerance: float,
    as_json: bool,
) -> None:
    """Check that a (pruned) model loads and runs in a runtime and agrees with onnxruntime.

    Runs MODEL on random inputs in the runtime and in onnxruntime and compares the outputs;
    with --reference and --plan, also runs the oracle: MODEL must equal the original with
    the removed channels zeroed. Exit status 3 if a check fails.

    \b
    ranp-onnx validate slim.onnx --runtime openvino
    ranp-onnx validate slim.onnx --reference unet.onnx --plan plan.json
    """
    if (reference is None) != (plan_path is None):
        raise click.UsageError("--reference and --plan go together")
    shapes = parse_input_shapes(input_shapes)
    graph = analyse(model, shapes)
    check = check_deployment(
        graph,
        model,
        runtime_name=runtime_name,
        tolerance=tolerance,
        reference=analyse(reference, shapes) if reference is not None else None,
        plan=read_plan(plan_path) if plan_path is not None else None,
    )
    if as_json:
        click.echo(json.dumps(check.to_json(), sort_keys=True))
    else:
        click.echo(format_check(check, reference))


def format_check(check: DeploymentCheck, reference: str | None) -> str:
    """The text report of a passed check."""
    shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in check.input_shapes.items())
    lines = [f"ran           {check.model} in {check.runtime} {check.version} ({shapes})"]
    if check.runtime != "onnxruntime":
        name, error = check.worst
        lines.append(
            f"matches       onnxruntime: max error {error:.2e} of output scale ({name}, "
            f"tolerance {check.tolerance:g})"
        )
    if check.oracle is not None:
        lines.append(
            f"oracle        equals {reference} masked by the plan: {check.oracle.describe()}"
        )
    lines.append("passed")
    return "\n".join(lines)
