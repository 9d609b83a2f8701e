"""The registry of the zoo: model names, their dataset presets, and building a model.

Every model takes a preset (input shape, class count and the model's own options as the
paper uses them), a width multiplier and a class count (for small test versions), and is
initialised as the RANP reference does it, from a seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import InputShapeError, RanpError
from .blocks import scale_width
from .c3d import C3D
from .i3d import InceptionI3d
from .initialization import INITIALIZATIONS, Initialization, initialize
from .mobilenetv2 import MobileNetV2
from .resnet3d import ResNet3D
from .unet3d import UNet3D

Shape4 = tuple[int, int, int, int]
_SEPARATOR = re.compile(r"[x,]")


class ZooError(RanpError):
    """An unknown model name or preset, or an option the model cannot take."""


@dataclass(frozen=True)
class Preset:
    """A dataset setting of a zoo model, as in the paper.

    Attributes:
        name: Preset name ("shapenet", "brats", "ucf101").
        input_shape: Default input (C, D, H, W), batch excluded.
        classes: Default number of classes.
        options: Model-specific keyword arguments (e.g. the UNet's base width).
    """

    name: str
    input_shape: Shape4
    classes: int
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """Everything a builder needs: a preset resolved against the caller's overrides.

    Attributes:
        name: Zoo name.
        preset: Preset name.
        input_shape: Input (C, D, H, W), batch excluded.
        classes: Output classes.
        width_mult: Width multiplier.
        seed: Initialisation seed.
        initialization: "xavier" or "orthogonal".
        options: The preset's model options.
    """

    name: str
    preset: str
    input_shape: Shape4
    classes: int
    width_mult: float
    seed: int
    initialization: Initialization
    options: Mapping[str, Any]


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo.

    Attributes:
        name: Zoo name, e.g. "unet3d-15".
        summary: One line for ``--list``.
        build: Makes the (uninitialised) torch module from a config.
        presets: Dataset presets, the default first.
        smallest_input: Smallest (D, H, W) the model runs on.
        fully_convolutional: True if its spatial axes may stay dynamic in ONNX.
    """

    name: str
    summary: str
    build: Callable[[ModelConfig], nn.Module]
    presets: tuple[Preset, ...]
    smallest_input: tuple[int, int, int]
    fully_convolutional: bool = False

    def preset(self, name: str | None) -> Preset:
        """Return preset ``name`` (the default one for None).

        Raises:
            ZooError: The model has no such preset.
        """
        if name is None:
            return self.presets[0]
        for preset in self.presets:
            if preset.name == name:
                return preset
        valid = ", ".join(p.name for p in self.presets)
        raise ZooError(f"{self.name} has no preset '{name}' (presets: {valid})")


@dataclass(frozen=True)
class BuiltModel:
    """A zoo model built, initialised and in eval mode.

    Attributes:
        module: The torch module.
        config: How it was built.
        entry: Its zoo entry.
    """

    module: nn.Module
    config: ModelConfig
    entry: ZooEntry

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The example input's shape, batch 1 included."""
        return (1, *self.config.input_shape)


def _unet(levels: int) -> Callable[[ModelConfig], nn.Module]:
    def build(config: ModelConfig) -> nn.Module:
        return UNet3D(
            config.input_shape[0],
            config.classes,
            base_width=scale_width(int(config.options["base_width"]), config.width_mult),
            levels=levels,
            softmax=bool(config.options["softmax"]),
        )

    return build


def _clip_model(
    kind: type[MobileNetV2] | type[InceptionI3d] | type[ResNet3D],
) -> Callable[[ModelConfig], nn.Module]:
    def build(config: ModelConfig) -> nn.Module:
        return kind(config.classes, in_channels=config.input_shape[0], width_mult=config.width_mult)

    return build


def _c3d(config: ModelConfig) -> nn.Module:
    return C3D(
        config.classes,
        config.input_shape[1:],
        in_channels=config.input_shape[0],
        width_mult=config.width_mult,
    )


_SHAPENET = Preset("shapenet", (1, 64, 64, 64), 50, {"base_width": 64, "softmax": True})
_BRATS = Preset("brats", (4, 128, 128, 128), 5, {"base_width": 32, "softmax": False})
_UCF101_112 = Preset("ucf101", (3, 16, 112, 112), 101)
_UCF101_224 = Preset("ucf101", (3, 16, 224, 224), 101)

ZOO: Mapping[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            "unet3d-15",
            "3D-UNet, 4 levels, 15 convs (ShapeNet: 1x64^3, 50 classes; BraTS'18: 4x128^3, 5)",
            _unet(4),
            (_SHAPENET, _BRATS),
            (8, 8, 8),
            fully_convolutional=True,
        ),
        ZooEntry(
            "unet3d-23",
            "3D-UNet, 6 levels, 23 convs (ShapeNet: 1x64^3, 50 classes)",
            _unet(6),
            (_SHAPENET, _BRATS),
            (32, 32, 32),
            fully_convolutional=True,
        ),
        ZooEntry(
            "mobilenetv2-3d",
            "3D MobileNetV2, 52 convs + Linear (UCF101: 3x16x112^2, 101 classes)",
            _clip_model(MobileNetV2),
            (_UCF101_112,),
            (1, 1, 1),
        ),
        ZooEntry(
            "i3d",
            "I3D Inception-v1, 58 convs (UCF101: 3x16x224^2, 101 classes)",
            _clip_model(InceptionI3d),
            (_UCF101_224,),
            (1, 1, 1),
        ),
        ZooEntry(
            "c3d",
            "C3D with batch norm, 8 convs + 3 Linear (UCF101: 3x16x112^2, 101 classes)",
            _c3d,
            (_UCF101_112,),
            (9, 16, 16),
        ),
        ZooEntry(
            "resnet3d-18",
            "3D ResNet-18 (Hara et al., shortcut A), 17 convs + Linear (UCF101: 3x16x112^2)",
            _clip_model(ResNet3D),
            (_UCF101_112,),
            (1, 1, 1),
        ),
    )
}


def zoo_entry(name: str) -> ZooEntry:
    """Return the zoo entry called ``name``.

    Raises:
        ZooError: No model has that name; the message lists the names.
    """
    entry = ZOO.get(name)
    if entry is None:
        raise ZooError(f"no model '{name}' in the zoo (models: {', '.join(ZOO)})")
    return entry


def parse_volume_shape(text: str) -> Shape4:
    """Parse ``C,D,H,W`` (or ``CxDxHxW``) into four positive integers.

    Raises:
        InputShapeError: Not four positive integers.
    """
    try:
        dims = tuple(int(part) for part in _SEPARATOR.split(text.strip()))
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(d <= 0 for d in dims):
        raise InputShapeError(
            f"`input_shape` '{text}': expected C,D,H,W (four positive integers, no batch)"
        )
    return (dims[0], dims[1], dims[2], dims[3])


def resolve_config(
    name: str,
    *,
    preset: str | None = None,
    input_shape: Sequence[int] | None = None,
    width_mult: float = 1.0,
    classes: int | None = None,
    seed: int = 0,
    initialization: Initialization = "xavier",
) -> tuple[ZooEntry, ModelConfig]:
    """Check a request against the zoo and fill in the preset's defaults.

    Raises:
        ZooError: Unknown name or preset, or a bad width, class count or initialisation.
        InputShapeError: The input shape is malformed or too small for the model.
    """
    entry = zoo_entry(name)
    chosen = entry.preset(preset)
    if not math.isfinite(width_mult) or width_mult <= 0:
        raise ZooError(f"`width_mult` must be a positive number, got {width_mult}")
    if classes is not None and classes < 1:
        raise ZooError(f"`classes` must be at least 1, got {classes}")
    if initialization not in INITIALIZATIONS:
        raise ZooError(f"unknown initialization '{initialization}' (choose from {INITIALIZATIONS})")
    shape = chosen.input_shape
    if input_shape is not None:
        shape = parse_volume_shape(",".join(str(d) for d in input_shape))
    if any(size < low for size, low in zip(shape[1:], entry.smallest_input)):
        smallest = "x".join(map(str, entry.smallest_input))
        raise InputShapeError(
            f"{name} needs an input of at least {smallest} (D x H x W); got "
            f"{'x'.join(map(str, shape[1:]))}"
        )
    config = ModelConfig(
        name=name,
        preset=chosen.name,
        input_shape=shape,
        classes=classes if classes is not None else chosen.classes,
        width_mult=float(width_mult),
        seed=seed,
        initialization=initialization,
        options=dict(chosen.options),
    )
    return entry, config


def build_model(
    name: str,
    *,
    preset: str | None = None,
    input_shape: Sequence[int] | None = None,
    width_mult: float = 1.0,
    classes: int | None = None,
    seed: int = 0,
    initialization: Initialization = "xavier",
) -> BuiltModel:
    """Build a zoo model, initialise it from ``seed`` and put it in eval mode.

    Args:
        name: Zoo name (see :data:`ZOO`).
        preset: Dataset preset. Defaults to the model's first preset.
        input_shape: Input (C, D, H, W), batch excluded. Defaults to the preset's; C sets
            the model's input channels.
        width_mult: Multiplier of the layer widths. Defaults to 1.
        classes: Output classes. Defaults to the preset's.
        seed: Initialisation seed. Defaults to 0.
        initialization: "xavier" (Glorot normal, the paper's) or "orthogonal".

    Returns:
        The model and how it was built.

    Raises:
        ZooError: Unknown name or preset, or a bad option.
        InputShapeError: The input shape is malformed or too small for the model.
    """
    entry, config = resolve_config(
        name,
        preset=preset,
        input_shape=input_shape,
        width_mult=width_mult,
        classes=classes,
        seed=seed,
        initialization=initialization,
    )
    module = entry.build(config)
    initialize(module, seed=seed, scheme=initialization)
    module.eval()
    return BuiltModel(module=module, config=config, entry=entry)


def describe_zoo() -> list[str]:
    """One line per model: name, presets with their input shapes, summary."""
    lines = []
    for entry in ZOO.values():
        presets = ", ".join(
            f"{p.name} ({'x'.join(map(str, p.input_shape))}, {p.classes} classes)"
            for p in entry.presets
        )
        lines.append(f"{entry.name:<15} {entry.summary}\n{'':<15} presets: {presets}")
    return lines
