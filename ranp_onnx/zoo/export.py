"""Exporting zoo models to ONNX files.

With either exporter of :mod:`ranp_onnx.torch_api.export` (torchscript by default). Both
export the model in eval mode. The file is written atomically at an IR version the installed
onnxruntime loads, and records how it was made in its metadata.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from ..errors import last_line
from ..ir import runtime
from ..ir.save import check_output_path, save_model
from ..ops.aliases import separate_aliases
from ..selection.criteria import PRESET_KEY
from ..torch_api.export import EXPORTERS, Exporter, export_module
from .initialization import Initialization
from .registry import BuiltModel, ZooError, build_model

#: Opsets a user may ask for: from 13 (Squeeze and friends take axes as inputs) to the
#: torchscript exporter's maximum; the dynamo exporter also converts up to the runtime's.
OPSET_RANGE: dict[str, tuple[int, int]] = {"torchscript": (13, 20), "dynamo": (13, 99)}
#: Metadata key holding the JSON description of how a zoo model was built.
METADATA_KEY = "ranp_onnx.zoo"
_SPATIAL_AXES = {0: "batch", 2: "depth", 3: "height", 4: "width"}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: The ONNX file.
        name: Zoo name.
        preset: Preset used.
        input_shape: The input shape it was traced at, batch included.
        exporter: "torchscript" or "dynamo".
        dynamic: True if the batch (and, for fully convolutional models, spatial) axes
            were left dynamic.
        params: Number of parameters of the torch module.
        seconds: Wall time of building and exporting.
    """

    path: Path
    name: str
    preset: str
    input_shape: tuple[int, ...]
    exporter: Exporter
    dynamic: bool
    params: int
    seconds: float


def export_built(
    built: BuiltModel,
    *,
    exporter: Exporter = "torchscript",
    opset: int | None = None,
    dynamic: bool = False,
) -> onnx.ModelProto:
    """Export a built zoo model at its input shape, metadata included.

    Args:
        built: The model from :func:`~ranp_onnx.zoo.registry.build_model`.
        exporter: "torchscript" or "dynamo". Defaults to "torchscript".
        opset: Opset version. Defaults to the exporter's.
        dynamic: Leave the batch axis (and the spatial axes of fully convolutional models)
            dynamic; torchscript only. Defaults to False.

    Returns:
        The model.
    """
    axes: dict[int, str] | None = None
    if dynamic:
        spatial = built.entry.fully_convolutional
        axes = dict(_SPATIAL_AXES) if spatial else {0: "batch"}
    generator = torch.Generator().manual_seed(built.config.seed)
    example = torch.randn(built.input_shape, generator=generator)
    proto = export_module(built.module, example, exporter=exporter, opset=opset, dynamic_axes=axes)
    separate_aliases(proto)
    proto.graph.name = f"{built.config.name}-{built.config.preset}"
    description = {
        "name": built.config.name,
        "preset": built.config.preset,
        "input_shape": list(built.input_shape),
        "classes": built.config.classes,
        "width_mult": built.config.width_mult,
        "seed": built.config.seed,
        "initialization": built.config.initialization,
        "exporter": exporter,
        "dynamic": dynamic,
    }
    onnx.helper.set_model_props(
        proto,
        {
            METADATA_KEY: json.dumps(description, sort_keys=True),
            PRESET_KEY: built.config.preset,
        },
    )
    return proto


def export_model(
    name: str,
    path: str | os.PathLike[str],
    *,
    preset: str | None = None,
    input_shape: Sequence[int] | None = None,
    width_mult: float = 1.0,
    classes: int | None = None,
    seed: int = 0,
    initialization: Initialization = "xavier",
    exporter: Exporter = "torchscript",
    opset: int | None = None,
    dynamic: bool = False,
    force: bool = False,
) -> ExportResult:
    """Build a zoo model and write it to an ONNX file.

    Args:
        name: Zoo name, e.g. "unet3d-15".
        path: The ``.onnx`` file to write; its folder must exist.
        preset: Dataset preset. Defaults to the model's first.
        input_shape: Input (C, D, H, W), batch excluded. Defaults to the preset's.
        width_mult: Width multiplier. Defaults to 1.
        classes: Output classes. Defaults to the preset's.
        seed: Initialisation seed. Defaults to 0.
        initialization: "xavier" (the paper's) or "orthogonal". Defaults to "xavier".
        exporter: "torchscript" or "dynamo". Defaults to "torchscript".
        opset: Opset version. Defaults to the exporter's.
        dynamic: Leave batch (and, for the UNets, spatial) axes dynamic; torchscript
            only. Defaults to False.
        force: Overwrite an existing file. Defaults to False.

    Returns:
        What was written.

    Raises:
        OutputExistsError: The file exists and ``force`` is False (checked first: nothing
            is built).
        ZooError: Unknown name, preset or exporter, or a bad option.
        InputShapeError: The input shape is malformed or too small for the model.
    """
    started = time.perf_counter()
    target = check_output_path(path, force=force)
    _check_exporter(exporter, opset, dynamic)
    built = build_model(
        name,
        preset=preset,
        input_shape=input_shape,
        width_mult=width_mult,
        classes=classes,
        seed=seed,
        initialization=initialization,
    )
    try:
        proto = export_built(built, exporter=exporter, opset=opset, dynamic=dynamic)
    except RuntimeError as error:
        if opset is None:
            raise
        first = last_line(error)
        raise ZooError(
            f"the {exporter} exporter cannot write {name} at opset {opset}: {first}"
        ) from error
    save_model(proto, target, force=force)
    return ExportResult(
        path=target,
        name=built.config.name,
        preset=built.config.preset,
        input_shape=built.input_shape,
        exporter=exporter,
        dynamic=dynamic,
        params=sum(p.numel() for p in built.module.parameters()),
        seconds=time.perf_counter() - started,
    )


def _check_exporter(exporter: str, opset: int | None, dynamic: bool) -> None:
    if exporter not in EXPORTERS:
        raise ZooError(f"unknown exporter '{exporter}' (choose from {', '.join(EXPORTERS)})")
    if dynamic and exporter != "torchscript":
        raise ZooError("`dynamic` needs the torchscript exporter")
    if opset is not None:
        low, high = OPSET_RANGE[exporter]
        high = min(high, runtime.max_opset())
        if not low <= opset <= high:
            raise ZooError(f"the {exporter} exporter writes opsets {low} to {high}, not {opset}")
