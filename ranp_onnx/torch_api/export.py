"""Exporting a torch module to ONNX, the two ways users do.

Two exporters, because both kinds of graph occur in the wild (shared reference, section 6):

- ``torchscript``: ``torch.onnx.export(..., dynamo=False, do_constant_folding=False)``
  keeps every parameter under its torch name and BatchNormalization as a node;
- ``dynamo``: the default exporter of recent torch; it folds BatchNorm into the conv
  weights and hard-codes Reshape shapes. Written without a side ``.data`` file.

:func:`export_module` exports any module either way (the zoo's export uses it);
:func:`export_for_pruning` is how :func:`~ranp_onnx.torch_api.prune_module.prune_module`
exports a user's module: torchscript, parameter names kept, batch axis dynamic.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import onnx
import torch
from torch import nn

from ..errors import ExportError
from ..ops.aliases import separate_aliases

Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "dynamo")
#: Opset of the torchscript exporter (the dynamo exporter picks its own unless told).
TORCHSCRIPT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_module(
    module: nn.Module,
    example: torch.Tensor,
    *,
    exporter: Exporter = "torchscript",
    opset: int | None = None,
    dynamic_axes: Mapping[int, str] | None = None,
) -> onnx.ModelProto:
    """Export a module (in its current train/eval mode) to an in-memory ModelProto.

    Args:
        module: The torch module.
        example: The example input it is traced with (one tensor).
        exporter: "torchscript" or "dynamo". Defaults to "torchscript".
        opset: Opset version. Defaults to 17 for torchscript, the exporter's own for dynamo.
        dynamic_axes: torchscript only: axes of the input and output left dynamic,
            e.g. ``{0: "batch"}``.

    Returns:
        The model. The input is called "input", the output "output".

    Raises:
        ExportError: Unknown exporter, or dynamic axes requested from the dynamo exporter.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}' (choose from {', '.join(EXPORTERS)})")
    if dynamic_axes and exporter != "torchscript":
        raise ExportError("dynamic axes are only supported with the torchscript exporter")
    with torch.no_grad(), _quiet():
        if exporter == "torchscript":
            buffer = io.BytesIO()
            axes = dict(dynamic_axes or {})
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # file objects work as well
                dynamo=False,
                do_constant_folding=False,
                opset_version=opset or TORCHSCRIPT_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if axes else None,
            )
            return onnx.load_from_string(buffer.getvalue())
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )
        assert program is not None
        return program.model_proto


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter warnings and logs; send anything it prints to stderr, not stdout."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_for_pruning(module: nn.Module, inputs: Sequence[torch.Tensor]) -> onnx.ModelProto:
    """Export with the torchscript exporter: parameter names, BatchNorm nodes, dynamic batch.

    The module is exported in eval mode (its own mode is restored), without constant
    folding, and every parameter the exporter shared with an equal one gets its own
    initializer again, so each ``state_dict`` key names one initializer.
    """
    names = _input_names(module, len(inputs))
    dynamic = {name: {0: "batch"} for name, x in zip(names, inputs) if x.dim() > 0}
    buffer = io.BytesIO()
    training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(inputs),
                buffer,  # type: ignore[arg-type]  # file objects work as well
                dynamo=False,
                do_constant_folding=False,
                opset_version=TORCHSCRIPT_OPSET,
                input_names=names,
                dynamic_axes=dynamic or None,
            )
    finally:
        module.train(training)
    model = separate_aliases(onnx.load_from_string(buffer.getvalue()))
    model.graph.name = type(module).__name__
    return model


def _input_names(module: nn.Module, count: int) -> list[str]:
    if count == 1:
        return ["input"]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    try:
        parameters = inspect.signature(module.forward).parameters.values()
        names = [p.name for p in parameters if p.kind in positional]
    except (TypeError, ValueError):
        names = []
    if len(names) >= count and len(set(names[:count])) == count:
        return names[:count]
    return [f"input_{i}" for i in range(count)]
