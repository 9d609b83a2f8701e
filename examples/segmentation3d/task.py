"""The segmentation task: part segmentation of ``shapes-a`` objects with a slim 3D-UNet-15.

The model is the zoo's ``unet3d-15`` with the ShapeNet preset (softmax head, trained on
its logits) at a reduced width; the metric is ShapeNet's instance mIoU (see
:func:`shape_miou`). The transfer dataset is ``shapes-b``: other object types with the
same number of part classes, so a plan scored on it fits the same network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from examples.tasks import Budget, Samples, Task

from .data import IGNORE_INDEX, generate
from .objects import FAMILIES

FAMILY = "shapes-a"
TRANSFER_FAMILY = "shapes-b"


def shape_miou(predictions: np.ndarray, labels: np.ndarray, object_types: np.ndarray) -> float:
    """ShapeNet part-segmentation instance mIoU, in percent.

    Per shape: the IoU of each part class of its object type over the occupied voxels
    (a part absent from both prediction and truth counts 1, as in the ShapeNet
    benchmark), averaged over the type's parts; then the mean over shapes. Predictions
    are the argmax over all part classes: a voxel given another type's part is wrong.

    Args:
        predictions: Predicted class per voxel ``[N, D, H, W]``.
        labels: True class per voxel, IGNORE_INDEX where empty.
        object_types: Type index of each shape ``[N]``.

    Returns:
        The mean over shapes of the per-shape mean part IoU, x 100.
    """
    family = FAMILIES[FAMILY]
    scores = []
    for prediction, truth, kind in zip(predictions, labels, object_types):
        occupied = truth != IGNORE_INDEX
        guess, real = prediction[occupied], truth[occupied]
        ious = []
        for part in family.part_labels(int(kind)):
            union = np.count_nonzero((guess == part) | (real == part))
            inter = np.count_nonzero((guess == part) & (real == part))
            ious.append(1.0 if union == 0 else inter / union)
        scores.append(float(np.mean(ious)))
    return 100.0 * float(np.mean(scores))


def _loader(default_size: int) -> Callable[[str, int, int | None], Samples]:
    def load(split: str, count: int, size: int | None) -> Samples:
        family = FAMILY
        if split == "transfer":
            family, split = TRANSFER_FAMILY, "train"
        data = generate(family, count, size=size or default_size, split=split)
        return Samples(data.inputs, data.labels, data.object_types)

    return load


def make_task(scale: str) -> Task:
    """The segmentation task at a study scale ("tiny" or "full")."""
    tiny = scale == "tiny"
    size = 16 if tiny else 24
    return Task(
        name="segmentation3d",
        title=f"part segmentation ({FAMILY}, {size}^3, {FAMILIES[FAMILY].classes} part classes), "
        "3D-UNet-15 x0.25",
        model="unet3d-15",
        preset="shapenet",
        width_mult=0.25,
        classes=FAMILIES[FAMILY].classes,
        input_shape=(1, size, size, size),
        lam=11.0,
        sparsity=0.8,
        ignore_index=IGNORE_INDEX,
        metric_name="mIoU (%)",
        budget=Budget(
            epochs=1 if tiny else 4,
            batch_size=4,
            learning_rate=3e-3,
            weight_decay=1e-4,
            optimizer="adam",
        ),
        train_count=16 if tiny else 240,
        test_count=8 if tiny else 96,
        score_count=8 if tiny else 32,
        score_batch=4,
        load=_loader(size),
        metric=shape_miou,
        spatial_shape=lambda s: (1, s, s, s),
        transfer_data=f"{TRANSFER_FAMILY} ("
        + ", ".join(kind.name for kind in FAMILIES[TRANSFER_FAMILY].types)
        + ")",
    )
