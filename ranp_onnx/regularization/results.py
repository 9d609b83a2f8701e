"""What a regularization run gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx
from torch import nn

from ..analysis.costs import CostReport
from ..rewrite.oracle import ValidationResult


@dataclass(frozen=True)
class RegularizeResult:
    """What a run produced.

    Attributes:
        model: The pruned (and fine-tuned) model.
        record: The JSON record: settings, allocation, removals, costs, proof, history.
        before: Costs of the original.
        after: Dense costs of the result.
        sparse_flops: Its FLOPs as the paper counts them (zero columns left out).
        validation: The rewrite's proof (None if off or nothing was removed).
        module: The trained module (the user's own, shrunk, when ``in_place``).
        in_place: For :func:`regularize_module`: True if ``module`` is the user's object.
        reason: Why it is not (None if it is).
    """

    model: onnx.ModelProto
    record: dict[str, Any]
    before: CostReport
    after: CostReport
    sparse_flops: int
    validation: ValidationResult | None
    module: nn.Module
    in_place: bool = True
    reason: str | None = None

    @property
    def speedup(self) -> float:
        """Full FLOPs over the result's (zero columns not counted)."""
        return self.before.totals.flops / max(self.sparse_flops, 1)
