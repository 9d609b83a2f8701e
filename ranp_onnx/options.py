"""The options of ``prune``: one record for callers, one group per stage for the stages.

:class:`PruneOptions` keeps the flat fields Python users and the CLI set; the pipeline
hands each stage only its own group (:attr:`PruneOptions.scoring`,
:attr:`PruneOptions.selection`, :attr:`PruneOptions.rewrite`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .analysis.costs import Convention
from .rewrite.options import RewriteOptions
from .rewrite.oracle import DEFAULT_TOLERANCE
from .scoring.options import ScoringOptions
from .selection.options import DEFAULT_LAMBDA, SelectionOptions
from .selection.search import check_selection


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
    lam: float = DEFAULT_LAMBDA
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

    @property
    def scoring(self) -> ScoringOptions:
        """The scoring stage's options."""
        return ScoringOptions(
            loss=self.loss,
            ignore_index=self.ignore_index,
            device=self.device,
            batchnorm=self.batchnorm,
            memory_check=self.memory_check,
        )

    @property
    def selection(self) -> SelectionOptions:
        """The selection stage's options."""
        return SelectionOptions(
            method=self.method,
            sparsity=self.sparsity,
            target_flops=self.target_flops,
            target_memory=self.target_memory,
            importance=self.importance,
            lam=self.lam,
            group_reduction=self.group_reduction,
            seed=self.seed,
            min_channels=self.min_channels,
            round_to=self.round_to,
            keep=self.keep,
            ignore=self.ignore,
            convention=self.convention,
        )

    @property
    def rewrite(self) -> RewriteOptions:
        """The rewrite stage's options."""
        return RewriteOptions(
            validate=self.validate,
            tolerance=self.tolerance,
            device=self.device,
            reinit=self.reinit,
            seed=self.seed,
        )

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON data, for plans."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def check_options(options: PruneOptions) -> None:
    """Refuse options that contradict each other or are out of range.

    Raises:
        PlanError: Zero or several of sparsity / target_flops / target_memory, a value
            out of range, or an unknown method; the message names the parameter.
    """
    check_selection(options.selection)
