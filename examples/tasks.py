"""What the study needs to know about a task: its data, model, metric and training budget.

Each example folder (``segmentation3d/``, ``video3d/``) provides ``make_task(scale)``
returning a :class:`Task`; :mod:`examples.study` runs the same pipeline on every task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Study sizes: "tiny" (CI, seconds) and "full" (the measured study).
SCALES = ("tiny", "full")


@dataclass(frozen=True)
class Samples:
    """Inputs, labels and per-sample metadata the metric may need.

    Attributes:
        inputs: float32 ``[N, C, D, H, W]``.
        labels: int64 ``[N, ...]`` (per voxel or per sample).
        meta: Per-sample integers for the metric (e.g. object type), ``[N]``.
    """

    inputs: np.ndarray
    labels: np.ndarray
    meta: np.ndarray

    def __len__(self) -> int:
        """Number of samples."""
        return int(self.inputs.shape[0])

    def head(self, count: int) -> Samples:
        """The first ``count`` samples."""
        return Samples(self.inputs[:count], self.labels[:count], self.meta[:count])


@dataclass(frozen=True)
class Budget:
    """How every network of a task is trained (the same for all methods).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Samples per step (the last incomplete batch of an epoch is dropped).
        learning_rate: Initial learning rate, decayed by a cosine to 0 over all steps.
        weight_decay: L2 weight decay.
        optimizer: "sgd" (Nesterov, momentum 0.9) or "adam".
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    optimizer: str = "sgd"


@dataclass(frozen=True)
class Task:
    """One study task.

    Attributes:
        name: "segmentation3d" or "video3d".
        title: One line for tables.
        model: Zoo name (see ``ranp_onnx.zoo``).
        preset: Zoo preset, or None for the model's default.
        width_mult: Width multiplier of the zoo model.
        classes: Output classes.
        input_shape: ``(C, D, H, W)`` at which the study prunes and trains.
        lam: RANP's lambda.
        sparsity: The neuron sparsity every method is compared at.
        ignore_index: Label the loss and metric ignore, or None.
        metric_name: e.g. "mIoU (%)".
        budget: Training budget.
        train_count: Training samples.
        test_count: Test samples.
        score_count: Training samples used to score (the first ones).
        score_batch: Scoring batch size.
        load: ``load(split, count, size)``: samples of a split at spatial size ``size``
            (None: the task's own); "transfer" is another dataset with the same classes,
            or unavailable (ValueError).
        metric: ``metric(predictions, labels, meta)`` in percent; predictions are the
            argmax class per voxel or per sample.
        spatial_shape: Input ``(C, D, H, W)`` for a spatial size (for ``--scale-to``).
        transfer_data: What the "transfer" split is, for tables ("" if there is none).
        unpruned_ops: Op types whose layers are left out of scoring and of the neuron
            count, and kept whole (``PruneOptions.ignore``); e.g. C3D's Gemm layers.
        ignore: The layers (node names) that leaves out; filled in from the export.
    """

    name: str
    title: str
    model: str
    preset: str | None
    width_mult: float
    classes: int
    input_shape: tuple[int, int, int, int]
    lam: float
    sparsity: float
    ignore_index: int | None
    metric_name: str
    budget: Budget
    train_count: int
    test_count: int
    score_count: int
    score_batch: int
    load: Callable[[str, int, int | None], Samples]
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    spatial_shape: Callable[[int], tuple[int, int, int, int]]
    transfer_data: str = ""
    unpruned_ops: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
