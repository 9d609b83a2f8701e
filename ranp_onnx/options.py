"""The options of ``ranp-onnx prune`` as one frozen dataclass, and their checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .analysis.costs import Convention
from .errors import PlanError
from .rewrite.oracle import DEFAULT_TOLERANCE
from .selection.criteria import GROUP_REDUCTIONS, criterion
from .selection.importance import IMPORTANCES


@dataclass(frozen=True)
class PruneOptions:
    """Everything ``ranp-onnx prune`` can be told.

    Attributes:
        method: Criterion name (see :mod:`ranp_onnx.selection.criteria`).
        sparsity: Neuron sparsity; exactly one of sparsity, target_flops, target_memory.
        target_flops: Keep at most this fraction of the full model's FLOPs.
        target_memory: Keep at most this fraction of its activation memory.
        importance: Vanilla importance variant.
        lam: RANP's lambda.
        group_reduction: How coupled units combine neuron scores.
        seed: Seed of the random criterion.
        min_channels: Fewest units a prunable group keeps.
        round_to: Round kept counts up to a multiple of this.
        keep: Layers (node or weight names) kept whole; they still count in N.
        ignore: Layers left out of scoring and of N, and kept whole.
        loss: Scoring loss.
        ignore_index: Label value the loss ignores.
        device: Scoring device.
        batchnorm: "batch" (the reference) or "running" statistics while scoring.
        convention: Counting convention for the reports and budgets.
        validate: Prove the rewrite in onnxruntime.
        tolerance: Validation tolerance.
        reinit: Re-initialise the kept weights (the paper trains from scratch).
        memory_check: Refuse to score when the estimated memory exceeds what is available
            (:mod:`ranp_onnx.scoring.memory`).
    """

    method: str = "ranp-f"
    sparsity: float | None = None
    target_flops: float | None = None
    target_memory: float | None = None
    importance: str = "mpmg-sum"
    lam: float = 11.0
    group_reduction: str = "mean"
    seed: int = 0
    min_channels: int = 1
    round_to: int = 1
    keep: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    loss: str = "cross-entropy"
    ignore_index: int | None = None
    device: str = "auto"
    batchnorm: str = "batch"
    convention: Convention = "standard"
    validate: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    reinit: bool = False
    memory_check: bool = True

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON data, for plans."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def check_options(options: PruneOptions) -> None:
    """Refuse options that contradict each other or are out of range.

    Raises:
        PlanError: Zero or several of sparsity / target_flops / target_memory, or a value
            out of range.
    """
    targets = [options.sparsity, options.target_flops, options.target_memory]
    if sum(value is not None for value in targets) != 1:
        raise PlanError("give exactly one of --sparsity, --target-flops and --target-memory")
    if options.sparsity is not None and not 0 <= options.sparsity < 1:
        raise PlanError(f"--sparsity {options.sparsity}: must be in [0, 1)")
    for name, value in (
        ("--target-flops", options.target_flops),
        ("--target-memory", options.target_memory),
    ):
        if value is not None and not 0 < value <= 1:
            raise PlanError(f"{name} {value}: must be in (0, 1]")
    if options.min_channels < 1 or options.round_to < 1:
        raise PlanError("--min-channels and --round-to must be at least 1")
    if options.importance not in IMPORTANCES:
        raise PlanError(f"unknown importance '{options.importance}'")
    if options.group_reduction not in GROUP_REDUCTIONS:
        raise PlanError(f"unknown group reduction '{options.group_reduction}'")
    criterion(options.method)
