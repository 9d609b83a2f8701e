"""Models and data for the pruning tests: small zoo exports, shared across test modules.

Zoo models at initialization have BatchNorm running statistics of 0 and 1; in inference
mode their activations then shrink layer after layer until the outputs no longer depend on
the inputs, and the validation oracle would compare constants. :func:`zoo_model` first
calibrates the statistics on random inputs (as a short training run would), so that the
oracle compares outputs that depend on every layer.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import torch

from ranp_onnx.zoo import build_model, export_built

#: (width multiplier, input C, D, H, W) of each zoo model's small version for pruning.
SMALL: dict[str, tuple[float, tuple[int, int, int, int]]] = {
    "unet3d-15": (0.125, (1, 16, 16, 16)),
    "unet3d-23": (1 / 16, (1, 32, 32, 32)),
    "mobilenetv2-3d": (0.25, (3, 8, 32, 32)),
    "i3d": (0.125, (3, 9, 33, 33)),
    "c3d": (0.125, (3, 9, 16, 16)),
    "resnet3d-18": (0.125, (3, 8, 32, 32)),
}
#: Few classes, so that the output layer (always kept whole) is a small part of N.
CLASSES = 4


def calibrate_batchnorm(module: torch.nn.Module, shape: tuple[int, ...], seed: int = 0) -> None:
    """Set every BatchNorm's running statistics to those of two random batches."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    generator = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        module(torch.randn((2, *shape), generator=generator))
    module.eval()


@functools.cache
def _zoo_bytes(
    name: str, exporter: str, input_shape: tuple[int, int, int, int] | None, dynamic: bool
) -> bytes:
    width, small_shape = SMALL[name]
    shape = input_shape or small_shape
    built = build_model(name, width_mult=width, input_shape=shape, classes=CLASSES)
    calibrate_batchnorm(built.module, small_shape)  # the same statistics at every size
    proto = export_built(built, exporter=exporter, dynamic=dynamic)  # type: ignore[arg-type]
    return proto.SerializeToString()


def zoo_model(
    name: str,
    *,
    exporter: str = "torchscript",
    input_shape: tuple[int, int, int, int] | None = None,
    dynamic: bool = False,
) -> onnx.ModelProto:
    """A small, calibrated zoo model (a fresh copy; exports are cached per session)."""
    return onnx.load_from_string(_zoo_bytes(name, exporter, input_shape, dynamic))


def segmentation_npz(
    path: Path, shape: tuple[int, ...], classes: int, samples: int, seed: int = 0
) -> Path:
    """Write ShapeNet-like data: occupancy of random ellipsoids, part labels, 255 = empty.

    Inputs ``[samples, 1, D, H, W]`` are 1 inside a random ellipsoid and 0 outside; inside
    voxels are labelled by the octant part they lie in (``classes`` parts), outside voxels
    255 (ignored by the loss, as in the reference).
    """
    generator = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[1:]], indexing="ij"))
    inputs = np.zeros((samples, *shape), np.float32)
    labels = np.full((samples, *shape[1:]), 255, np.int64)
    for i in range(samples):
        centre = generator.uniform(-0.3, 0.3, size=3)[:, None, None, None]
        radii = generator.uniform(0.4, 0.8, size=3)[:, None, None, None]
        relative = (grid - centre) / radii
        inside = (relative**2).sum(axis=0) <= 1
        part = (relative[0] > 0).astype(np.int64) + 2 * (relative[1] > 0)
        inputs[i, 0][inside] = 1.0
        labels[i][inside] = part[inside] % classes
    np.savez(path, inputs=inputs, labels=labels)
    return path
