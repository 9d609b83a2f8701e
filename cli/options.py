"""Option groups shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def input_shape_option(function: F) -> F:
    """``--input-shape NAME=1x1x64x64x64`` (repeatable)."""
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME=DIMS",
        help="Concrete shape for a dynamic graph input, e.g. input=1x1x64x64x64 "
        "(repeatable; NAME= may be left out for a single-input model).",
    )(function)


def output_options(function: F) -> F:
    """``-o/--output`` (required) and ``--force``."""
    function = click.option(
        "--force", is_flag=True, help="Overwrite the output file if it exists."
    )(function)
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
    )(function)


def json_option(function: F) -> F:
    """``--json``: machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")(function)
