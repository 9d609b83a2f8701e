"""``report --training``: the predicted (and measured) memory of a torch training step."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import click

from ..analysis.shapes import parse_input_shapes, require_convolution
from ..analysis.training_memory import (
    TrainingMemory,
    TrainingSetup,
    predict_training_memory,
    training_graph,
)
from ..errors import DataError
from ..options import PruneOptions
from ..pipeline import PruneResult
from ..progress import Progress
from ..reporting.training import (
    fit_json,
    fit_lines,
    format_training,
    format_training_comparison,
    training_json,
)
from ..scoring.statistics import Scoring
from ..selection.fit import fit_training_memory

#: Most training steps ``report --training --measure`` times (each may take long).
TIMED_STEPS = 3


def report_training(
    model: str,
    input_shapes: tuple[str, ...],
    compare: str | None,
    compare_shapes: tuple[str, ...],
    as_json: bool,
    do_measure: bool,
    device: str,
    runs: int,
    params: dict[str, Any],
) -> None:
    """Predict, and with ``do_measure`` measure, a training step; print it."""
    from .options import training_setup

    setup = training_setup(params, device)
    batch = params["train_batch"]
    memory = _predict(model, input_shapes, batch, setup)
    measured = _measure(model, memory, runs) if do_measure else None
    if compare is None:
        if as_json:
            click.echo(json.dumps(training_json(memory, measured), sort_keys=True))
        else:
            click.echo(format_training(memory, measured))
        return
    other = _predict(compare, compare_shapes or input_shapes, batch, setup)
    other_measured = _measure(compare, other, runs) if do_measure else None
    if as_json:
        document = training_json(memory, measured, compare=other, compare_measured=other_measured)
        click.echo(json.dumps(document, sort_keys=True))
        return
    pair = (other_measured, measured) if other_measured and measured else None
    click.echo(format_training_comparison(other, memory, pair))


def _predict(
    model: str, shapes: tuple[str, ...], batch: int | None, setup: TrainingSetup
) -> TrainingMemory:
    graph = training_graph(model, parse_input_shapes(shapes), batch=batch)
    require_convolution(graph)
    return predict_training_memory(graph, setup)


def _measure(model: str, memory: TrainingMemory, runs: int) -> Any:
    """One real training step of ``to_torch(model)`` on random data at the same shapes."""
    import torch

    from ..reporting.training_step import measure_graph_step

    if memory.setup.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--measure --device cuda: torch sees no CUDA device")
    graph = training_graph(model, memory.input_shapes, batch=memory.batch_size)
    return measure_graph_step(graph, memory.setup, timed_steps=min(runs, TIMED_STEPS))


@dataclass(frozen=True)
class FitReport:
    """``prune --fit-training``: the sparsity found and the training step before and after.

    Attributes:
        sparsity: The least sparsity whose step fits.
        budget: The budget in bytes.
        before: The full model's step.
        after: The pruned model's step (of the written model, once :meth:`with_result`).
    """

    sparsity: float
    budget: int
    before: TrainingMemory
    after: TrainingMemory

    @classmethod
    def search(
        cls,
        model: str,
        scoring: Scoring,
        options: PruneOptions,
        budget: int,
        params: dict[str, Any],
        progress: Progress | None,
    ) -> FitReport:
        """Analyse the model at the training shapes and search the sparsity."""
        from .options import training_setup

        setup = training_setup(params, params["train_device"])
        shapes = parse_input_shapes(params["train_shapes"] or params["input_shapes"])
        training = training_graph(model, shapes, batch=params["train_batch"])
        fit = fit_training_memory(scoring, options, training, setup, budget, progress=progress)
        return cls(fit.sparsity, budget, fit.before, fit.after)

    def with_result(self, result: PruneResult) -> tuple[FitReport, PruneResult]:
        """The prediction for the model written, and the result with the budget in its plan."""
        graph = training_graph(result.model, self.after.input_shapes, batch=self.after.batch_size)
        after = predict_training_memory(graph, self.after.setup)
        settings = {**result.plan.settings, "fit_training": self.settings()}
        plan = dataclasses.replace(result.plan, settings=settings)
        return dataclasses.replace(self, after=after), dataclasses.replace(result, plan=plan)

    def settings(self) -> dict[str, Any]:
        """The budget and the training setup, for the plan."""
        return {
            "budget_bytes": self.budget,
            "input_shapes": {k: list(v) for k, v in self.after.input_shapes.items()},
            **self.after.setup.to_json(),
        }

    def lines(self) -> list[str]:
        """Text lines under the cost comparison."""
        return fit_lines(self.before, self.after, self.budget)

    def to_json(self) -> dict[str, Any]:
        """The ``training`` entry of ``--json``."""
        return {**fit_json(self.before, self.after, self.budget), "sparsity": self.sparsity}
