"""What the selection stage is told: the method, the target and the constraints.

:class:`SelectionOptions` is the selection's own group of the options ``prune`` takes
(:class:`ranp_onnx.options.PruneOptions` holds one per stage). Error messages name the
Python parameters in backquotes (`` `sparsity` ``); the CLI shows them as its flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.costs import Convention
from ..errors import PlanError
from .importance import IMPORTANCES

#: RANP's lambda where the model records no preset (the paper's ShapeNet value).
DEFAULT_LAMBDA = 11.0
#: How a coupled unit's score combines its neurons' scores (``group_reduction``).
GROUP_REDUCTIONS = ("mean", "sum", "max")


@dataclass(frozen=True)
class SelectionOptions:
    """How units are chosen.

    Attributes:
        method: Criterion name (:mod:`ranp_onnx.selection.criteria`).
        sparsity: Neuron sparsity; exactly one of sparsity, target_flops, target_memory.
        target_flops: Keep at most this fraction of the full model's FLOPs.
        target_memory: Keep at most this fraction of its activation memory.
        importance: Vanilla neuron importance (``mpmg-sum`` is the paper's vanilla NP).
        lam: RANP's lambda.
        group_reduction: How a coupled unit's score combines its neurons' scores. "mean"
            (default): the selection counts a unit as all its neurons, so its mean score
            is the value per neuron spent, the greedy choice for a neuron budget.
        seed: Seed of the random criterion and of the order of zero-score ties.
        min_channels: Fewest units a prunable group keeps.
        round_to: Round kept counts up to a multiple of this.
        keep: Layers (node or weight names) kept whole; they still count in N.
        ignore: Layers left out of scoring and of N, and kept whole.
        convention: The counting convention budgets are measured in.
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
    convention: Convention = "standard"

    def check(self) -> None:
        """Refuse targets that contradict each other and values out of range.

        Raises:
            PlanError: Zero or several of sparsity / target_flops / target_memory, or a
                value out of range; the message names the parameter.
        """
        targets = [self.sparsity, self.target_flops, self.target_memory]
        if sum(value is not None for value in targets) != 1:
            raise PlanError("give exactly one of `sparsity`, `target_flops` and `target_memory`")
        if self.sparsity is not None and not 0 <= self.sparsity < 1:
            raise PlanError(f"`sparsity` {self.sparsity}: must be in [0, 1)")
        for name, value in (
            ("target_flops", self.target_flops),
            ("target_memory", self.target_memory),
        ):
            if value is not None and not 0 < value <= 1:
                raise PlanError(f"`{name}` {value}: must be in (0, 1]")
        if self.min_channels < 1 or self.round_to < 1:
            raise PlanError("`min_channels` and `round_to` must be at least 1")
        if self.importance not in IMPORTANCES:
            raise PlanError(f"unknown `importance` '{self.importance}'")
        if self.group_reduction not in GROUP_REDUCTIONS:
            raise PlanError(f"unknown `group_reduction` '{self.group_reduction}'")
