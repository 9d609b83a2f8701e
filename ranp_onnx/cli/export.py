"""``ranp-onnx export`` (model zoo to ONNX)."""

from __future__ import annotations

import click

from .options import output_options


def _print_zoo(context: click.Context, _parameter: click.Parameter, value: bool) -> None:
    if not value or context.resilient_parsing:
        return
    from ..zoo import describe_zoo

    click.echo("\n".join(describe_zoo()))
    context.exit(0)


@click.command()
@click.argument("name")
@output_options
@click.option(
    "--list",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_print_zoo,
    help="List the zoo's models and presets, then exit.",
)
@click.option("--preset", help="Dataset preset: shapenet, brats or ucf101 (default: the first).")
@click.option(
    "--input-shape",
    "input_shape",
    metavar="C,D,H,W",
    help="Input shape without batch (default: the preset's).",
)
@click.option(
    "--width-mult", default=1.0, show_default=True, type=float, help="Layer width multiplier."
)
@click.option("--classes", type=int, help="Output classes (default: the preset's).")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation seed.")
@click.option(
    "--init",
    "initialization",
    type=click.Choice(["xavier", "orthogonal"]),
    default="xavier",
    show_default=True,
    help="Weight initialisation: Glorot normal (the paper's) or orthogonal.",
)
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    show_default=True,
    help="torchscript keeps BatchNormalization nodes; dynamo folds them into the convs.",
)
@click.option("--opset", type=int, help="ONNX opset (default: the exporter's).")
@click.option(
    "--dynamic",
    is_flag=True,
    help="Leave the batch axis (and the UNets' spatial axes) dynamic; torchscript only.",
)
def export(
    name: str,
    output: str,
    force: bool,
    preset: str | None,
    input_shape: str | None,
    width_mult: float,
    classes: int | None,
    seed: int,
    initialization: str,
    exporter: str,
    opset: int | None,
    dynamic: bool,
) -> None:
    """Build a model of the zoo, initialised as in the paper, and write it as ONNX.

    \b
    ranp-onnx export --list
    ranp-onnx export unet3d-15 --preset shapenet -o unet.onnx
    ranp-onnx export i3d -o i3d.onnx --exporter dynamo
    ranp-onnx export unet3d-15 --width-mult 0.25 --input-shape 1,32,32,32 -o small.onnx
    """
    from ..zoo import export_model, parse_volume_shape

    result = export_model(
        name,
        output,
        preset=preset,
        input_shape=parse_volume_shape(input_shape) if input_shape is not None else None,
        width_mult=width_mult,
        classes=classes,
        seed=seed,
        initialization=initialization,  # type: ignore[arg-type]
        exporter=exporter,  # type: ignore[arg-type]
        opset=opset,
        dynamic=dynamic,
        force=force,
    )
    shape = "x".join(map(str, result.input_shape))
    click.echo(
        f"wrote {result.path}: {result.name} ({result.preset}), input {shape}, "
        f"{result.params:,} parameters, {result.exporter} exporter, {result.seconds:.1f} s"
    )
