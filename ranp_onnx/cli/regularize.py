"""``ranp-onnx regularize``: prune a trained model by growing per-group regularization."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from ..analysis.costs import CONVENTIONS, Convention
from ..analysis.shapes import analyse, parse_input_shapes
from ..errors import RanpError
from ..ir.load import LoadedModel, load_model
from ..ir.save import check_output_path, external_data_files, save_model, write_text
from ..regularization.allocation import ALLOCATIONS
from ..regularization.groups import GRANULARITIES
from ..regularization.options import RegularizeOptions
from ..regularization.schedule import GONE_RATIO
from ..reporting.tables import comparison_json, format_comparison
from ..scoring.data import LABELS_BY_LOSS
from .options import (
    ignore_index_option,
    input_shape_option,
    json_option,
    output_options,
    tolerance_option,
)
from .plotting import check_plot_path
from .prune import stderr_is_terminal
from .regularize_output import ProgressLine, summary_lines

F = TypeVar("F", bound=Callable[..., Any])


def _option(*names: str, **settings: Any) -> Callable[[F], F]:
    """A click option that shows its default."""
    return click.option(*names, show_default="default" in settings, **settings)


_POSITIVE = click.FloatRange(0, min_open=True)
#: The options of the training and the schedule, in the paper's terms.
_TRAINING = [
    _option("--lr", default=1e-4, type=_POSITIVE, help="SGD learning rate (the paper's 1e-4)."),
    _option("--momentum", default=0.9, type=click.FloatRange(0, 1, max_open=True)),
    _option(
        "--weight-decay",
        default=5e-4,
        type=click.FloatRange(0),
        help="lambda of Eq. 1, the L2 coefficient of every weight.",
    ),
    _option(
        "-A",
        "a",
        type=_POSITIVE,
        help="A of Eq. 3, the most a coefficient changes per update "
        "(default: half the weight decay, as in the paper).",
    ),
    _option(
        "--ceiling",
        type=_POSITIVE,
        help="A due group whose coefficient reaches this is removed "
        "(default: 1e4 x A, IncReg's target_reg).",
    ),
    _option(
        "--gone-ratio",
        default=GONE_RATIO,
        type=click.FloatRange(0),
        help="A due group this many times below its layer's kept mean L1 norm is removed "
        "too (GReg's rule; 0: off).",
    ),
    _option(
        "--update-interval",
        default=1,
        type=click.IntRange(1),
        help="Iterations between rank and coefficient updates.",
    ),
    _option(
        "--iterations",
        type=click.IntRange(1),
        help="Regularize at most this many iterations (default: until every due group is "
        "gone); groups still due are then removed as they rank.",
    ),
    _option("--epochs", type=_POSITIVE, help="The same bound in passes over the data."),
    _option(
        "--finetune",
        default=0,
        type=click.IntRange(0),
        help="Fine-tuning iterations after the rewrite.",
    ),
    _option(
        "--finetune-lr",
        type=_POSITIVE,
        help="Their initial learning rate, decayed by a cosine to 0 (default: --lr).",
    ),
    _option("--batch-size", default=30, type=click.IntRange(1), help="The paper's 30."),
    _option("--loss", type=click.Choice(list(LABELS_BY_LOSS)), default="cross-entropy"),
    ignore_index_option,
    _option("--seed", default=0, type=int, help="Seed of the sample order and dropout."),
    _option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        help="Where it trains (auto: CUDA when available).",
    ),
]


def _apply(function: F, decorators: list[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _options(params: dict[str, Any]) -> RegularizeOptions:
    return RegularizeOptions(
        speedup=params["speedup"],
        target_flops=params["target_flops"],
        allocation=params["allocation"],
        granularity=params["granularity"],
        lr=params["lr"],
        momentum=params["momentum"],
        weight_decay=params["weight_decay"],
        a=params["a"],
        ceiling=params["ceiling"],
        gone_ratio=params["gone_ratio"],
        update_interval=params["update_interval"],
        iterations=params["iterations"],
        epochs=params["epochs"],
        finetune=params["finetune"],
        finetune_lr=params["finetune_lr"],
        batch_size=params["batch_size"],
        loss=params["loss"],
        ignore_index=params["ignore_index"],
        seed=params["seed"],
        device=params["device"],
        convention=cast(Convention, params["convention"]),
        min_keep=params["min_keep"],
        validate=not params["skip_validation"],
        tolerance=params["tolerance"],
        checkpoint_every=params["checkpoint_every"],
    )


def batch_of_one(
    loaded: LoadedModel, shapes: dict[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Count costs per sample: an input whose only dynamic dimension is the batch gets 1."""
    stored = {tensor.name for tensor in loaded.proto.graph.initializer}
    inputs = [value for value in loaded.proto.graph.input if value.name not in stored]
    if "" in shapes or (len(inputs) == 1 and inputs[0].name in shapes):
        return shapes
    found = dict(shapes)
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        fixed = [dim.dim_value if dim.HasField("dim_value") else 0 for dim in dims]
        if value.name not in found and fixed and all(d > 0 for d in fixed[1:]) and fixed[0] <= 0:
            found[value.name] = (1, *fixed[1:])
    return found


def _check_paths(
    model: str, output: str, params: dict[str, Any], force: bool
) -> dict[str, Path | None]:
    """Check every path the command writes before any work is done."""
    inputs = [model] + ([params["data"]] if params["data"] else [])
    external = bool(external_data_files(model))
    out = check_output_path(output, force=force, inputs=inputs, external_data=external)
    paths: dict[str, Path | None] = {"output": out, "record": None, "plot": None}
    taken: list[Path] = [out]
    if params["record"] is not None:
        record = check_output_path(params["record"], force=force, inputs=inputs)
        paths["record"] = record
        taken.append(record)
    paths["plot"] = check_plot_path(params["plot"], force=force, inputs=inputs, taken=taken)
    checkpoint = Path(params["checkpoint"] or f"{out}.ckpt")
    resuming = (
        params["resume"] is not None and Path(params["resume"]).resolve() == checkpoint.resolve()
    )
    if checkpoint.exists() and not resuming and not force:
        raise RanpError(
            f"{checkpoint} exists (the checkpoint of an earlier run): continue it with "
            f"--resume {checkpoint}, or pass --force to start over"
        )
    if not checkpoint.parent.exists():
        raise RanpError(f"{checkpoint.parent}: no such folder")
    if len({p.resolve() for p in [*taken, checkpoint] if p is not None}) != len(taken) + 1:
        raise RanpError(f"--checkpoint {checkpoint}: the same file as another output")
    paths["checkpoint"] = checkpoint
    return paths


#: The options of the target, the allocation and the groups.
_TARGET = [
    _option(
        "--data",
        required=True,
        metavar="SOURCE",
        help="Labelled training data: an .npz or a folder of .npz/.npy files.",
    ),
    _option("--speedup", type=_POSITIVE, help="Reach this FLOPs reduction (full / pruned)."),
    _option(
        "--target-flops",
        type=click.FloatRange(0, 1, min_open=True),
        help="Or keep at most this fraction of the FLOPs.",
    ),
    _option(
        "--allocation",
        type=click.Choice(ALLOCATIONS),
        default="dpr",
        help="Per-layer ratios: spr (the same everywhere) or dpr (PCA redundancy and FLOPs).",
    ),
    _option(
        "--granularity",
        type=click.Choice(GRANULARITIES),
        default="channel",
        help="channel: whole channels, a smaller dense model; shape: the paper's im2col "
        "columns, zeroed and counted as the paper counts them.",
    ),
    _option("--min-keep", default=1, type=click.IntRange(1), help="Groups every layer keeps."),
    _option(
        "--convention", type=click.Choice(CONVENTIONS), default="standard", help="FLOPs counter."
    ),
]
#: What the run writes besides the model, and how it continues.
_OUTPUTS = [
    tolerance_option,
    _option("--no-validate", "skip_validation", is_flag=True, help="Skip the onnxruntime proof."),
    _option(
        "--record",
        type=click.Path(dir_okay=False),
        help="Write the JSON record (settings, allocation, removals, history).",
    ),
    _option(
        "--plot",
        type=click.Path(dir_okay=False),
        metavar="PNG",
        help="Draw the loss and each layer's group norms and coefficients (matplotlib).",
    ),
    _option(
        "--checkpoint",
        type=click.Path(dir_okay=False),
        help="Checkpoint file (default: OUTPUT.ckpt); removed when the run succeeds.",
    ),
    _option(
        "--checkpoint-every",
        default=1000,
        type=click.IntRange(1),
        help="Iterations between checkpoints (Ctrl-C writes one too).",
    ),
    _option(
        "--resume",
        type=click.Path(dir_okay=False),
        help="Continue the run this checkpoint holds (give the same options).",
    ),
    json_option,
    _option("--quiet", is_flag=True, help="No progress on stderr."),
]


@click.command("regularize")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@input_shape_option
@lambda function: _apply(function, [*_TARGET, *_TRAINING, *_OUTPUTS])
def regularize_command(model: str, output: str, force: bool, **params: Any) -> None:
    """Prune a trained 3D CNN by growing per-group regularization (Zhang et al., ICIP 2019).

    Trains MODEL on --data with one L2 coefficient per weight group, raised for the
    groups with the lowest averaged L1 rank until each layer's due groups are gone, then
    writes the smaller model (proven in onnxruntime) and fine-tunes it with --finetune.

    \b
    ranp-onnx regularize c3d.onnx --data train.npz --speedup 2 -o slim.onnx --finetune 2000
    ranp-onnx regularize c3d.onnx --data train.npz --speedup 4 --granularity shape \\
        --allocation dpr --lr 1e-3 --record run.json --plot run.png -o slim.onnx
    """
    from ..regularization.pipeline import regularize
    from ..regularization.plots import figure_data, render

    if (params["speedup"] is None) == (params["target_flops"] is None):
        raise RanpError("give exactly one of --speedup and --target-flops")
    paths = _check_paths(model, output, params, force)
    loaded = load_model(model)
    graph = analyse(loaded, batch_of_one(loaded, parse_input_shapes(params["input_shapes"])))
    show = not (params["as_json"] or params["quiet"])
    line = ProgressLine(stderr_is_terminal()) if show else None
    try:
        result = regularize(
            graph,
            params["data"],
            _options(params),
            progress=line,
            checkpoint=paths["checkpoint"],
            resume=params["resume"],
        )
    finally:  # Ctrl-C (exit 130) and errors leave the progress line finished
        if line is not None:
            line.close()
    out = cast(Path, paths["output"])
    save_model(
        result.model, out, external_data=graph.model.external_data, force=force, inputs=[model]
    )
    if paths["record"] is not None:
        write_text(paths["record"], json.dumps(result.record, sort_keys=True) + "\n")
    if paths["plot"] is not None:
        render(figure_data(result.record), paths["plot"])
    cast(Path, paths["checkpoint"]).unlink(missing_ok=True)
    _render(result, out, paths, params["as_json"])


def _render(result: Any, out: Path, paths: dict[str, Path | None], as_json: bool) -> None:
    record = result.record
    after = dataclasses.replace(result.after, model=out.name)
    if as_json:
        document = comparison_json(result.before, after)
        document["record"] = {k: v for k, v in record.items() if k not in ("history", "removals")}
        document["output"] = str(out)
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(format_comparison(result.before, after))
    click.echo("")
    for label, text in summary_lines(record):
        click.echo(f"{label:<14}{text}")
    for label in ("record", "plot"):
        if paths[label] is not None:
            click.echo(f"{'wrote':<14}{paths[label]}")
    click.echo(f"{'wrote':<14}{out}")
