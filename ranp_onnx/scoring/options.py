"""What the scoring stage is told: the loss, the device and how BatchNorm behaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoringOptions:
    """How the scoring passes run.

    Attributes:
        loss: "cross-entropy", "dice-ce" or "mse" (:mod:`ranp_onnx.scoring.losses`).
        ignore_index: Label value the loss ignores.
        device: "auto" (CUDA where torch sees a GPU), "cpu" or "cuda".
        batchnorm: "batch" (the reference) or "running" statistics while scoring.
        memory_check: Refuse to score when the estimated memory exceeds what is available
            (:mod:`ranp_onnx.scoring.memory`).
    """

    loss: str = "cross-entropy"
    ignore_index: int | None = None
    device: str = "auto"
    batchnorm: str = "batch"
    memory_check: bool = True
