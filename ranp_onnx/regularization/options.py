"""The options of ``ranp-onnx regularize`` as one frozen dataclass, and their checks.

Defaults follow the paper where it gives a value (learning rate 1e-4, batch 30, ``A`` half
the weight decay, DPR, ``w_gflops`` 0.8) and its successors' code where it does not (the
coefficient ceiling of IncReg, ``1e4 x A``; GReg's magnitude ratio of 1000 for a group
that is gone; see :mod:`~ranp_onnx.regularization.schedule`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..analysis.costs import CONVENTIONS, Convention
from ..errors import PlanError
from ..rewrite.oracle import DEFAULT_TOLERANCE
from ..scoring.data import LABELS_BY_LOSS
from .allocation import ALLOCATIONS
from .groups import GRANULARITIES
from .schedule import CEILING_PER_A, GONE_RATIO, ScheduleSettings


@dataclass(frozen=True)
class RegularizeOptions:
    """Everything ``ranp-onnx regularize`` can be told.

    Attributes:
        speedup: Full FLOPs over pruned FLOPs to reach (``--speedup``); or
        target_flops: the fraction of the FLOPs to keep (exactly one of the two).
        allocation: "spr" (the same ratio in every layer) or "dpr" (the paper's).
        granularity: "channel" (smaller dense layers) or "shape" (the paper's columns).
        lr: SGD learning rate while regularizing.
        momentum: SGD momentum.
        weight_decay: ``lambda`` of Eq. 1, the non-structured L2 coefficient.
        a: ``A`` of Eq. 3; None: half the weight decay (the paper).
        ceiling: The coefficient at which a group is removed; None: ``1e4 x A`` (IncReg).
        gone_ratio: A group this many times below its layer's kept mean norm is removed
            too (GReg's 1000); 0 turns the rule off.
        update_interval: Iterations between rank and coefficient updates.
        iterations: Regularize for at most this many iterations (None: until every due
            group is gone); groups still due then are removed as they rank.
        epochs: The same bound in passes over the data (an alternative to iterations).
        finetune: Fine-tuning iterations after the rewrite.
        finetune_lr: Their initial learning rate, decayed by a cosine; None: ``lr``.
        batch_size: Samples per batch of a file source.
        loss: Training loss.
        ignore_index: Label value the loss ignores.
        seed: Seeds the sample order and dropout.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        convention: How FLOPs are counted for the target and the report.
        min_keep: Groups every layer keeps.
        validate: Prove the rewrite in onnxruntime.
        tolerance: The proof's tolerance, relative to the output scale.
        checkpoint_every: Iterations between checkpoints (when a checkpoint path is given).
    """

    speedup: float | None = None
    target_flops: float | None = None
    allocation: str = "dpr"
    granularity: str = "channel"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    a: float | None = None
    ceiling: float | None = None
    gone_ratio: float = GONE_RATIO
    update_interval: int = 1
    iterations: int | None = None
    epochs: float | None = None
    finetune: int = 0
    finetune_lr: float | None = None
    batch_size: int = 30
    loss: str = "cross-entropy"
    ignore_index: int | None = None
    seed: int = 0
    device: str = "auto"
    convention: Convention = "standard"
    min_keep: int = 1
    validate: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    checkpoint_every: int = 1000

    @property
    def resolved_a(self) -> float:
        """``A``: as given, or half the weight decay."""
        return self.a if self.a is not None else self.weight_decay / 2

    @property
    def resolved_ceiling(self) -> float:
        """The ceiling: as given, or ``1e4 x A``."""
        return self.ceiling if self.ceiling is not None else CEILING_PER_A * self.resolved_a

    def schedule(self) -> ScheduleSettings:
        """The coefficient schedule's settings."""
        return ScheduleSettings(self.resolved_a, self.resolved_ceiling, self.gone_ratio)

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON data (for the record and the checkpoint)."""
        document = dataclasses.asdict(self)
        document["a"] = self.resolved_a
        document["ceiling"] = self.resolved_ceiling
        return document


def check_options(options: RegularizeOptions) -> None:
    """Refuse options that contradict each other or are out of range.

    Raises:
        PlanError: A bad combination or value, named by its option.
    """
    if (options.speedup is None) == (options.target_flops is None):
        raise PlanError("give exactly one of `speedup` and `target_flops`")
    if options.speedup is not None and options.speedup <= 0:
        raise PlanError(f"`speedup` {options.speedup:g}: must be positive")
    if options.target_flops is not None and not 0 < options.target_flops <= 1:
        raise PlanError(f"`target_flops` {options.target_flops:g}: must be in (0, 1]")
    if options.iterations is not None and options.epochs is not None:
        raise PlanError("give at most one of `iterations` and `epochs`")
    choices = (
        ("`allocation`", options.allocation, ALLOCATIONS),
        ("`granularity`", options.granularity, GRANULARITIES),
        ("`loss`", options.loss, tuple(LABELS_BY_LOSS)),
        ("`convention`", options.convention, CONVENTIONS),
        ("`device`", options.device, ("auto", "cpu", "cuda")),
    )
    for flag, value, allowed in choices:
        if value not in allowed:
            raise PlanError(f"{flag} {value}: choose from {', '.join(allowed)}")
    positive = (("`lr`", options.lr), ("`ceiling`", options.resolved_ceiling))
    for flag, number in positive:
        if not number > 0:
            raise PlanError(f"{flag} {number:g}: must be positive")
    not_negative = (
        ("`weight_decay`", options.weight_decay),
        ("`a`", options.resolved_a),
        ("`momentum`", options.momentum),
        ("`gone_ratio`", options.gone_ratio),
        ("`finetune`", options.finetune),
    )
    for flag, number in not_negative:
        if not number >= 0:
            raise PlanError(f"{flag} {number:g}: must not be negative")
    if options.resolved_a == 0:
        raise PlanError("`a` 0: the coefficients would never grow (give `a` or `weight_decay`)")
    counts = (
        ("`update_interval`", options.update_interval),
        ("`batch_size`", options.batch_size),
        ("`min_keep`", options.min_keep),
        ("`checkpoint_every`", options.checkpoint_every),
        ("`iterations`", options.iterations if options.iterations is not None else 1),
    )
    for flag, count in counts:
        if count < 1:
            raise PlanError(f"{flag} {count}: must be at least 1")
    if options.epochs is not None and not options.epochs > 0:
        raise PlanError(f"`epochs` {options.epochs:g}: must be positive")
