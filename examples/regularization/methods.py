"""The networks of the reproduction: one function per method, each giving a :class:`Run`.

From one pre-trained model per architecture:

- **TP** and **FP**: one-shot channel pruning of the trained model to the FLOPs target
  (Molchanov et al.'s Taylor criterion, scored on the first training batches; Li et al.'s
  filter L1 norm), then ``finetune`` SGD steps;
- **SPR**, **DPR** (channel groups) and **DPR (shape)** (the paper's im2col columns):
  ``ranp_onnx.regularize`` to the same target, whose fine-tuning has the same budget;
- **DPR one-shot**: the control for the method's one claim, gradual regularization: the
  same DPR allocation and the same groups, the lowest by L1 norm removed at once from the
  trained model (what the regularizer would remove at its first update), then the same
  fine-tuning;
- **RANP-f**: the other paper's answer to the same question, pruned at initialization to
  DPR's FLOPs and trained from scratch for the whole budget (pre-training + DPR's
  regularization + fine-tuning).

A target the model cannot reach (ResNet's residual streams are kept whole today) is
recorded as such, with the tool's one-line reason, and not trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import onnx

from examples.regularization.training import EpochBatches, fit, top1
from examples.tasks import Samples
from ranp_onnx import RegularizeOptions, regularize
from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.errors import PlanError
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.pipeline import PruneOptions, Scoring, prune_scored, score_model
from ranp_onnx.regularization.finish import finish
from ranp_onnx.regularization.groups import is_convolution
from ranp_onnx.regularization.regularizer import Regularizer, trainable_tensors
from ranp_onnx.regularization.run import plan_groups
from ranp_onnx.scoring.data import Batch
from ranp_onnx.torch_api.round_trip import to_onnx, to_torch
from ranp_onnx.zoo import build_model, export_built


@dataclass(frozen=True)
class Recipe:
    """How every network is trained (the same for every method).

    Attributes:
        batch: Clips per step.
        pretrain_steps: Steps of pre-training (cosine from ``pretrain_lr``).
        pretrain_lr: Its initial learning rate.
        finetune_steps: Steps after pruning, at the constant ``lr``.
        lr: The regularization's and fine-tuning's learning rate.
        a: ``A`` of Eq. 3.
        ceiling: The coefficient ceiling.
        regularize_cap: At most this many regularization steps.
        score_batches: Training batches TP (and RANP-f) score on.
    """

    batch: int
    pretrain_steps: int
    pretrain_lr: float
    finetune_steps: int
    lr: float
    a: float
    ceiling: float
    regularize_cap: int
    score_batches: int


@dataclass(frozen=True)
class Run:
    """One trained network (or a target it could not reach)."""

    method: str
    speedup: float
    seed: int
    top1: float | None
    flops: int | None = None
    counted_flops: int | None = None
    regularize_steps: int = 0
    finetune_steps: int = 0
    seconds: float = 0.0
    note: str = ""
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, keep_losses: bool) -> dict[str, Any]:
        """A JSON-ready dict (losses only where asked: they are for Fig. 4)."""
        document = dict(self.__dict__)
        if not keep_losses:
            document["losses"] = []
        return document


def shape_of(samples: Samples) -> dict[str, tuple[int, ...]]:
    """The analysed input shape: one clip."""
    return {"input": (1, *samples.inputs.shape[1:])}


def fully_connected(graph: GraphAnalysis) -> tuple[str, ...]:
    """The layers left alone, as the paper leaves them: weights without spatial axes."""
    channels = analyse_channels(graph)
    return tuple(layer.node for layer in channels.layers if not is_convolution(channels, layer))


def scoring_batches(train: Samples, recipe: Recipe) -> list[Batch]:
    """The first training clips, in batches."""
    step = recipe.batch
    return [
        Batch({"input": train.inputs[i : i + step]}, train.labels[i : i + step])
        for i in range(0, recipe.score_batches * step, step)
    ]


def score_trained(graph: GraphAnalysis, train: Samples, recipe: Recipe) -> Scoring:
    """Taylor and L1 statistics of the trained model (once per model)."""
    options = PruneOptions(
        method="taylor", sparsity=0.5, ignore=fully_connected(graph), device="cpu"
    )
    return score_model(graph, scoring_batches(train, recipe), options)


def one_shot(
    method: str,
    graph: GraphAnalysis,
    scoring: Scoring,
    data: tuple[Samples, Samples],
    recipe: Recipe,
    speedup: float,
    seed: int,
) -> Run:
    """TP or FP: prune the trained model to the target at once, then fine-tune."""
    started = time.process_time()
    criterion = {"TP": "taylor", "FP": "l1"}[method]
    options = PruneOptions(
        method=criterion,
        target_flops=1.0 / speedup,
        ignore=fully_connected(graph),
        device="cpu",
    )
    try:
        pruned = prune_scored(graph, scoring, options)
    except PlanError as error:
        return Run(method, speedup, seed, None, note=f"not reachable: {error}")
    return fine_tuned(
        method,
        pruned.model,
        pruned.after.totals.flops,
        data,
        recipe,
        speedup,
        seed,
        started,
        extra={"sparsity": pruned.plan.settings["sparsity"]},
    )


def fine_tuned(
    method: str,
    pruned: onnx.ModelProto,
    flops: int,
    data: tuple[Samples, Samples],
    recipe: Recipe,
    speedup: float,
    seed: int,
    started: float,
    extra: dict[str, Any],
) -> Run:
    """A model pruned at once, fine-tuned ``recipe.finetune_steps`` and tested."""
    train, test = data
    fitted = fit(
        pruned,
        train,
        steps=recipe.finetune_steps,
        batch=recipe.batch,
        lr=recipe.lr,
        cosine=True,
        seed=seed,
    )
    return Run(
        method,
        speedup,
        seed,
        top1(fitted.model, test),
        flops=flops,
        counted_flops=flops,
        finetune_steps=recipe.finetune_steps,
        seconds=time.process_time() - started,
        losses=fitted.losses,
        extra=extra,
    )


def regularized(
    method: str,
    model: onnx.ModelProto,
    data: tuple[Samples, Samples],
    recipe: Recipe,
    speedup: float,
    seed: int,
) -> Run:
    """SPR, DPR or DPR (shape): ``ranp_onnx.regularize`` with fine-tuning."""
    started = time.process_time()
    allocation, _, granularity = method.lower().partition(" ")
    options = RegularizeOptions(
        speedup=speedup,
        allocation=allocation,
        granularity="shape" if granularity else "channel",
        lr=recipe.lr,
        a=recipe.a,
        ceiling=recipe.ceiling,
        iterations=recipe.regularize_cap,
        finetune=recipe.finetune_steps,
        batch_size=recipe.batch,
        seed=seed,
        device="cpu",
    )
    train, test = data
    try:
        result = regularize(
            model, EpochBatches(train, recipe.batch, seed), options, input_shapes=shape_of(train)
        )
    except PlanError as error:
        return Run(method, speedup, seed, None, note=f"not reachable: {error}")
    record = result.record
    losses = [
        point[1]
        for phase in ("regularize", "finetune")
        for point in record["history"]["loss"][phase]
    ]
    removed = record["removed"]
    return Run(
        method,
        speedup,
        seed,
        top1(result.model, test),
        flops=result.after.totals.flops,
        counted_flops=result.sparse_flops,
        regularize_steps=record["iterations"]["regularize"],
        finetune_steps=recipe.finetune_steps,
        seconds=time.process_time() - started,
        losses=losses,
        extra={
            "prune_ratio": record["allocation"]["prune_ratio"],
            "ratios": [layer["ratio"] for layer in record["allocation"]["layers"]],
            "due": removed["due"],
            "forced": removed["forced"],
            "max_ratio_to_kept_mean": removed["max_ratio_to_kept_mean"],
            "median_ratio_to_kept_mean": removed["median_ratio_to_kept_mean"],
            "channels_removed": removed["channels_removed"],
            "validation_error": (record["validation"] or {}).get("max_relative_error"),
        },
    )


def one_shot_allocation(
    model: onnx.ModelProto,
    data: tuple[Samples, Samples],
    recipe: Recipe,
    speedup: float,
    seed: int,
) -> Run:
    """DPR one-shot: DPR's due groups, lowest L1 first, removed at once; then fine-tuning."""
    started = time.process_time()
    train = data[0]
    graph = analyse(model, shape_of(train))
    module = to_torch(graph)
    tensors = trainable_tensors(module)
    options = RegularizeOptions(speedup=speedup, allocation="dpr", a=recipe.a)
    try:
        groups, allocation = plan_groups(graph, options, tensors)
    except PlanError as error:
        return Run("DPR one-shot", speedup, seed, None, note=f"not reachable: {error}")
    regularizer = Regularizer(groups, allocation, tensors, options.schedule())
    regularizer.finish()  # no update yet: every average rank is 0, so the lowest norms go
    finished = finish(
        to_onnx(module), dict(graph.input_shapes), groups, regularizer.schedules,
        convention="standard",
    )  # fmt: skip
    return fine_tuned(
        "DPR one-shot",
        finished.model,
        finished.after.totals.flops,
        data,
        recipe,
        speedup,
        seed,
        started,
        extra={"due": allocation.due_total, "prune_ratio": allocation.prune_ratio},
    )


def ranp_from_scratch(
    name: str,
    width: float,
    data: tuple[Samples, Samples],
    recipe: Recipe,
    target_flops: float,
    total_steps: int,
    speedup: float,
    seed: int,
) -> Run:
    """RANP-f: pruned at initialization to ``target_flops``, trained ``total_steps``."""
    started = time.process_time()
    train, test = data
    built = build_model(
        name, input_shape=train.inputs.shape[1:], width_mult=width, classes=10, seed=seed
    )
    graph = analyse(export_built(built, dynamic=True), shape_of(train))
    options = PruneOptions(
        method="ranp-f",
        target_flops=target_flops,
        ignore=fully_connected(graph),
        reinit=True,
        seed=seed,
        device="cpu",
    )
    try:
        scoring = score_model(graph, scoring_batches(train, recipe), options)
        pruned = prune_scored(graph, scoring, options)
    except PlanError as error:
        return Run("RANP-f", speedup, seed, None, note=f"not reachable: {error}")
    fitted = fit(
        pruned.model,
        train,
        steps=total_steps,
        batch=recipe.batch,
        lr=recipe.pretrain_lr,
        cosine=True,
        seed=seed,
    )
    flops = pruned.after.totals.flops
    return Run(
        "RANP-f",
        speedup,
        seed,
        top1(fitted.model, test),
        flops=flops,
        counted_flops=flops,
        finetune_steps=total_steps,
        seconds=time.process_time() - started,
        losses=fitted.losses,
        extra={"sparsity": pruned.plan.settings["sparsity"]},
    )


def full_flops(graph: GraphAnalysis) -> int:
    """The full model's FLOPs (standard convention)."""
    return count_costs(graph).totals.flops
