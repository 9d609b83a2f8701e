"""Small trained-model stand-ins and labelled clips for the regularization tests."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx

from ranp_onnx.scoring.data import Batch
from ranp_onnx.zoo import build_model, export_built

#: The small C3D's clip: 1 channel, 9 frames of 16 x 16 (the smallest C3D takes).
CLIP = (1, 9, 16, 16)
CLASSES = 4
#: Settings that remove every due group in about a hundred iterations of the small C3D,
#: with the groups' norms at about 1e-3 of their layer's kept mean when they go.
FAST = {"lr": 0.05, "a": 0.05, "ceiling": 5.0, "batch_size": 8, "device": "cpu"}


@functools.cache
def _c3d_bytes() -> bytes:
    built = build_model("c3d", input_shape=CLIP, width_mult=0.125, classes=CLASSES, seed=0)
    return export_built(built, dynamic=True).SerializeToString()


def small_c3d() -> onnx.ModelProto:
    """The zoo's C3D at width x0.125 for 1 x 9 x 16 x 16 clips, dynamic batch (fresh copy)."""
    return onnx.load_from_string(_c3d_bytes())


def clips(samples: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clips labelled by a fixed random projection: a task a network can learn."""
    generator = np.random.default_rng(seed)
    inputs = generator.standard_normal((samples, *CLIP)).astype(np.float32)
    projection = np.random.default_rng(99).standard_normal((int(np.prod(CLIP)), CLASSES))
    labels = (inputs.reshape(samples, -1) @ projection).argmax(axis=1).astype(np.int64)
    return inputs, labels


def clip_batches(samples: int = 32, batch: int = 8, seed: int = 0) -> list[Batch]:
    """The clips as labelled batches."""
    inputs, labels = clips(samples, seed)
    return [
        Batch({"input": inputs[i : i + batch]}, labels[i : i + batch])
        for i in range(0, samples, batch)
    ]


def clips_npz(path: Path, samples: int = 32, seed: int = 0) -> Path:
    """The clips as an .npz of ``inputs`` and ``labels``."""
    inputs, labels = clips(samples, seed)
    np.savez(path, inputs=inputs, labels=labels)
    return path
