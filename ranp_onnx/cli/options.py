"""Option groups shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..analysis.costs import CONVENTIONS
from ..analysis.training_memory import OPTIMIZERS, TrainingSetup
from ..selection.criteria import method_names
from ..selection.importance import IMPORTANCES
from ..selection.options import GROUP_REDUCTIONS

F = TypeVar("F", bound=Callable[..., Any])


def input_shape_option(function: F) -> F:
    """``--input-shape NAME=1x1x64x64x64`` (repeatable)."""
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME=DIMS",
        help="Concrete shape for a dynamic graph input, e.g. input=1x1x64x64x64 "
        "(repeatable; NAME= may be left out for a single-input model). A dynamic batch "
        "alone needs none: it is --batch-size where the command has one, else 1.",
    )(function)


def output_options(function: F) -> F:
    """``-o/--output`` (required) and ``--force``."""
    function = force_option(function)
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
    )(function)


def tolerance_option(function: F) -> F:
    """``--tolerance``: the validation tolerance, relative to the output scale."""
    return click.option(
        "--tolerance",
        default=1e-4,
        show_default=True,
        type=click.FloatRange(0),
        help="Validation tolerance, relative to the output scale.",
    )(function)


def json_option(function: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(function)


def _apply(function: F, decorators: list[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


#: ``--data SOURCE``.
data_option = click.option(
    "--data",
    metavar="SOURCE",
    help="Scoring data: an .npz, a folder of .npz/.npy files, or 'random'.",
)
#: ``--ignore-index N``.
ignore_index_option = click.option(
    "--ignore-index",
    type=int,
    help="Label value the loss ignores (e.g. 255 for empty voxels).",
)


def force_option(function: F) -> F:
    """``--force``: overwrite the output files."""
    return click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")(
        function
    )


def plot_option(function: F) -> F:
    """``--plot PNG``: also draw the paper's figures."""
    return click.option(
        "--plot",
        type=click.Path(dir_okay=False),
        metavar="PNG",
        help="Also draw the figures (neuron importance, retained channels, FLOPs and memory "
        "per layer) into this PNG; needs matplotlib.",
    )(function)


def scoring_options(function: F) -> F:
    """Data, loss and scoring-pass options."""
    return _apply(
        function,
        [
            data_option,
            click.option(
                "--batch-size",
                default=1,
                show_default=True,
                type=click.IntRange(1),
                help="Samples per scoring batch (any size: where the graph fixes its exported "
                "batch, a batch runs in micro-batches of it); also a dynamic batch's size.",
            ),
            click.option(
                "--batches",
                type=click.IntRange(1),
                help="Score on at most this many batches (default: one pass over the data).",
            ),
            click.option(
                "--seed",
                default=0,
                show_default=True,
                type=int,
                help="Seed for random data and --method random.",
            ),
            click.option(
                "--loss",
                type=click.Choice(["cross-entropy", "dice-ce", "mse"]),
                default="cross-entropy",
                show_default=True,
            ),
            ignore_index_option,
            click.option(
                "--device",
                type=click.Choice(["auto", "cpu", "cuda"]),
                default="auto",
                show_default=True,
                help="Where scoring and validation run (auto: CUDA when available).",
            ),
            click.option(
                "--batchnorm",
                type=click.Choice(["batch", "running"]),
                default="batch",
                show_default=True,
                help="BatchNorm statistics while scoring (batch: the reference).",
            ),
        ],
    )


def layer_choice_options(function: F) -> F:
    """``--keep NAME`` and ``--ignore NAME`` (repeatable)."""
    return _apply(
        function,
        [
            click.option(
                "--keep",
                multiple=True,
                metavar="NAME",
                help="Keep this layer whole (node or weight name; repeatable).",
            ),
            click.option(
                "--ignore",
                multiple=True,
                metavar="NAME",
                help="Leave this layer out of scoring and pruning (repeatable).",
            ),
        ],
    )


def selection_options(function: F) -> F:
    """Criterion and constraint options."""
    return _apply(
        function,
        [
            click.option(
                "--method", type=click.Choice(method_names()), default="ranp-f", show_default=True
            ),
            click.option(
                "--importance",
                type=click.Choice(IMPORTANCES),
                default="mpmg-sum",
                show_default=True,
                help="Vanilla neuron importance (mpmg-sum is the paper's vanilla NP).",
            ),
            click.option(
                "--lambda",
                "lam",
                type=click.FloatRange(0),
                help="RANP's lambda (default: 11 ShapeNet, 15 BraTS, 80 UCF101 from the "
                "model's preset, else 11).",
            ),
            click.option(
                "--group-reduction",
                type=click.Choice(GROUP_REDUCTIONS),
                default="mean",
                show_default=True,
                help="How coupled channels combine their neurons' scores.",
            ),
            click.option(
                "--min-channels",
                default=1,
                show_default=True,
                type=click.IntRange(1),
                help="Fewest channels a layer keeps.",
            ),
            click.option(
                "--round-to",
                default=1,
                show_default=True,
                type=click.IntRange(1),
                help="Round kept channel counts up to a multiple of this.",
            ),
            layer_choice_options,
            click.option(
                "--convention",
                type=click.Choice(CONVENTIONS),
                default="standard",
                show_default=True,
                help="Counting convention of reports and budgets.",
            ),
        ],
    )


def training_options(function: F) -> F:
    """``--train-batch``, ``--optimizer``, ``--amp``: the training step a memory figure is for."""
    return _apply(
        function,
        [
            click.option(
                "--train-batch",
                type=click.IntRange(1),
                help="Training batch size (axis 0 of every input; default: the model's).",
            ),
            click.option(
                "--optimizer",
                type=click.Choice(OPTIMIZERS),
                default="sgd",
                show_default=True,
                help="Training optimizer (momentum: SGD with momentum).",
            ),
            click.option(
                "--amp",
                type=click.Choice(["float16", "bfloat16"]),
                is_flag=False,
                flag_value="float16",
                default=None,
                help="Train under autocast (float16 alone, with a gradient scaler).",
            ),
        ],
    )


def training_setup(params: dict[str, Any], device: str) -> TrainingSetup:
    """The training setup the options describe, on ``device`` (auto: CUDA if torch sees one)."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainingSetup(
        optimizer=params["optimizer"],
        precision=params["amp"] or "float32",
        device=device,
    )
