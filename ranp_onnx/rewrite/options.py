"""What the rewrite stage is told: whether and how to prove the rewrite, re-initialisation."""

from __future__ import annotations

from dataclasses import dataclass

from .oracle import DEFAULT_TOLERANCE


@dataclass(frozen=True)
class RewriteOptions:
    """How the pruned model is checked and finished.

    Attributes:
        validate: Prove the rewrite with the oracle (:mod:`ranp_onnx.rewrite.oracle`).
        tolerance: The oracle's tolerance.
        device: Where the oracle runs ("auto", "cpu" or "cuda").
        reinit: Re-initialise the kept weights (the paper trains from scratch).
        seed: Seed of the re-initialisation.
    """

    validate: bool = True
    tolerance: float = DEFAULT_TOLERANCE
    device: str = "auto"
    reinit: bool = False
    seed: int = 0
