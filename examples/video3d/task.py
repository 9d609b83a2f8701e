"""The video task: classifying moving-digit clips with a slim C3D.

The model is the zoo's ``c3d`` (eight 3x3x3 convolutions with batch norm, five max-pools,
two fully connected layers and a classifier) at width x0.125, on one-channel 16-frame
clips; the metric is top-1 accuracy. The study prunes the eight 3D convolutions: the
fully connected layers are left out of scoring and of the neuron count (``Gemm`` in
``unpruned_ops``). They hold 1034 of the 1378 neurons but under 2% of the FLOPs, so
counting them would make the neuron sparsity a statement about them.

RANP's lambda is 11, the paper's value for its 15-layer 3D-UNet: C3D has 8 scored
layers, and the paper's UCF101 value (80, tuned for 53- and 58-layer networks, where the
softmax over layers is flatter) makes RANP-f empty a layer from 22% sparsity on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from examples.tasks import Budget, Samples, Task

from .data import CLASSES, generate

FRAMES = 16


def top1(predictions: np.ndarray, labels: np.ndarray, meta: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * float(np.mean(predictions == labels))


def _loader(default_size: int) -> Callable[[str, int, int | None], Samples]:
    def load(split: str, count: int, size: int | None) -> Samples:
        if split == "transfer":
            raise ValueError("video3d has no transfer dataset with the same architecture")
        clips = generate(count, frames=FRAMES, size=size or default_size, split=split)
        return Samples(clips.inputs, clips.labels, clips.labels)

    return load


def make_task(scale: str) -> Task:
    """The video task at a study scale ("tiny" or "full")."""
    tiny = scale == "tiny"
    size = 32
    return Task(
        name="video3d",
        title=f"moving digits (1x{FRAMES}x{size}x{size}, {CLASSES} classes), C3D x0.125",
        model="c3d",
        preset=None,
        width_mult=0.125,
        classes=CLASSES,
        input_shape=(1, FRAMES, size, size),
        lam=11.0,
        sparsity=0.3,
        ignore_index=None,
        metric_name="top-1 (%)",
        budget=Budget(
            epochs=1 if tiny else 3,
            batch_size=4 if tiny else 8,
            learning_rate=3e-3,
            weight_decay=1e-4,
            optimizer="adam",
        ),
        train_count=16 if tiny else 600,
        test_count=10 if tiny else 300,
        score_count=8 if tiny else 40,
        score_batch=4 if tiny else 8,
        load=_loader(size),
        metric=top1,
        spatial_shape=lambda s: (1, FRAMES, s, s),
        unpruned_ops=("Gemm",),
    )
