"""Stage select: the least pruning whose training step fits a memory budget in bytes.

``prune --fit-training 11GB --train-batch 2`` answers "how little can I prune so that
training at this patch and batch fits": it bisects the sparsity (by the chosen method,
which is monotone: a higher sparsity keeps a subset of the units, see
:mod:`~ranp_onnx.selection.constraints`) until the predicted peak of a training step
(:mod:`~ranp_onnx.analysis.training_memory`) of the selected model, at the training shapes, is
within the budget. Scoring may run at a smaller input than training: the selection is
mapped onto the model analysed at the training shapes by layer, as ``apply`` maps a plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.channels import ChannelAnalysis, analyse_channels, pruned_shapes
from ..analysis.training_memory import TrainingMemory, TrainingSetup, predict_training_memory
from ..errors import PlanError
from ..ir.graph import GraphAnalysis
from ..ir.units import GB
from ..progress import Progress
from ..scoring.statistics import Scoring
from .constraints import Selection
from .options import SelectionOptions
from .plan import keep_elsewhere
from .search import lowest_accepted, select_at


@dataclass(frozen=True)
class TrainingFit:
    """The least pruning that fits, and the predictions before and after.

    Attributes:
        sparsity: The lowest sparsity found whose step fits (within the bisection's
            tolerance).
        selection: Its selection (on the scoring model's units).
        before: The full model's training step.
        after: The selected model's training step.
        budget_bytes: The budget.
    """

    sparsity: float
    selection: Selection
    before: TrainingMemory
    after: TrainingMemory
    budget_bytes: int


class _Predictor:
    """Predicted training peaks of selections, mapped to the training shapes and cached."""

    def __init__(self, scoring: Scoring, training: GraphAnalysis, setup: TrainingSetup) -> None:
        self.scoring, self.setup = scoring, setup
        same = training is scoring.channels.graph
        self.channels: ChannelAnalysis = scoring.channels if same else analyse_channels(training)
        self._cache: dict[bytes, TrainingMemory] = {}

    def __call__(self, selection: Selection) -> TrainingMemory:
        key = np.packbits(selection.keep).tobytes()
        if key not in self._cache:
            keep = selection.keep
            if self.channels is not self.scoring.channels:
                keep = keep_elsewhere(self.channels, self.scoring.channels, keep)
            graph = pruned_shapes(self.channels, keep)
            self._cache[key] = predict_training_memory(graph, self.setup)
        return self._cache[key]


def fit_training_memory(
    scoring: Scoring,
    options: SelectionOptions,
    training: GraphAnalysis,
    setup: TrainingSetup,
    budget_bytes: int,
    *,
    progress: Progress | None = None,
) -> TrainingFit:
    """Find the lowest sparsity whose predicted training step fits ``budget_bytes``.

    Args:
        scoring: The scored model (at the scoring shapes).
        options: The method and the selection options.
        training: The same model analysed at the training shapes
            (:func:`~ranp_onnx.analysis.training_memory.training_graph`).
        setup: Optimizer, precision and device of the training.
        budget_bytes: The memory the step may use.
        progress: Called after each bisection step.

    Raises:
        PlanError: The full model already fits, or not even the highest sparsity does;
            one line with the predictions.
    """
    before = predict_training_memory(training, setup)
    budget = f"`budget_bytes` {budget_bytes / GB:.2f} GB"
    if before.peak_bytes <= budget_bytes:
        raise PlanError(
            f"nothing to prune: the full model's training step is predicted at "
            f"{before.peak_bytes / GB:.2f} GB, within {budget}"
        )
    predict = _Predictor(scoring, training, setup)
    found = lowest_accepted(
        lambda sparsity: select_at(scoring, options.method, sparsity, options),
        lambda selection: predict(selection).peak_bytes <= budget_bytes,
        progress=progress,
    )
    if found is None:
        smallest = predict(select_at(scoring, options.method, 1.0, options))
        raise PlanError(
            f"{budget}: nothing fits; the smallest model `method` {options.method} can make "
            f"still needs {smallest.peak_bytes / GB:.2f} GB to train (the full model "
            f"{before.peak_bytes / GB:.2f} GB): lower `train_batch` or the training patch"
        )
    sparsity, selection = found
    return TrainingFit(sparsity, selection, before, predict(selection), budget_bytes)
