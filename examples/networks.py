"""Building the study's networks: export, score once, prune with every method.

Every network is pruned from one export of the task's zoo model (torchscript,
initialisation seed 0) with one scoring pass over the first training samples
(:func:`score`); :func:`~ranp_onnx.pipeline.prune_scored` then selects and rewrites for each
method and sparsity. Costs are counted at batch 1 in the paper's convention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import onnx

from examples.tasks import Samples, Task
from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.pipeline import (
    PruneOptions,
    PruneResult,
    Scoring,
    apply_plan,
    prune_scored,
    score_model,
)
from ranp_onnx.scoring.data import Batch
from ranp_onnx.selection.search import search_max_sparsity
from ranp_onnx.zoo.export import export_built
from ranp_onnx.zoo.registry import build_model

METHODS = ("random", "layerwise", "vanilla", "weighted", "ranp-m", "ranp-f")
GRADIENT_METHODS = ("vanilla", "weighted", "ranp-m", "ranp-f")
EQUAL_FLOPS_METHODS = ("random", "layerwise")


@dataclasses.dataclass(frozen=True)
class Network:
    """One network of the study, before training.

    Attributes:
        group: Table section: "main", "high", "equal-flops", "scale" or "transfer".
        method: "full" or a criterion name.
        model: The model to train (re-initialised per seed).
        costs: Paper-convention totals at batch 1 and the plan's achieved sparsity.
        note: Anything the table should say (e.g. how many layers were emptied).
        feasible: False if the ranking emptied a layer (the paper's infeasibility).
        variant: Tells apart two networks of one method in a group (e.g. "plan from 32").
    """

    group: str
    method: str
    model: onnx.ModelProto
    costs: dict[str, Any]
    note: str = ""
    feasible: bool = True
    variant: str = ""


def export(task: Task, input_shape: Sequence[int] | None = None) -> GraphAnalysis:
    """The task's model exported (torchscript, dynamic axes) and analysed at batch 1."""
    shape = tuple(input_shape or task.input_shape)
    built = build_model(
        task.model,
        preset=task.preset,
        input_shape=shape,
        width_mult=task.width_mult,
        classes=task.classes,
        seed=0,
    )
    return analyse(export_built(built, dynamic=True), {"input": (1, *shape)})


def unpruned_layers(task: Task, graph: GraphAnalysis) -> tuple[str, ...]:
    """Node names of the layers whose op type the task leaves unpruned."""
    return tuple(
        layer.node for layer in analyse_channels(graph).layers if layer.op_type in task.unpruned_ops
    )


def scoring_batches(task: Task, samples: Samples) -> list[Batch]:
    """The first ``score_count`` samples in batches of ``score_batch``."""
    head = samples.head(task.score_count)
    step = task.score_batch
    return [
        Batch({"input": head.inputs[i : i + step]}, head.labels[i : i + step])
        for i in range(0, len(head), step)
    ]


def options(task: Task, method: str, **settings: Any) -> PruneOptions:
    return PruneOptions(
        method=method,
        lam=task.lam,
        ignore_index=task.ignore_index,
        convention="ranp-paper",
        reinit=True,
        device="cpu",
        ignore=task.ignore,
        **settings,
    )


def costs_of(task: Task, graph: GraphAnalysis, result: PruneResult | None = None) -> dict[str, Any]:
    """Paper-convention totals at batch 1, and the neuron sparsity over the scored layers."""
    totals = result.after.totals if result else count_costs(graph, "ranp-paper").totals
    sparsity = 0.0
    if result is not None:
        scored = [layer for layer in result.plan.layers if layer["node"] not in task.ignore]
        total = sum(int(layer["channels"]) for layer in scored)
        sparsity = 1.0 - sum(len(layer["kept"]) for layer in scored) / total
    return {
        "neuron_sparsity": sparsity,
        "params_mb": totals.params_mb,
        "gflops": totals.gflops,
        "memory_mb": totals.memory_mb,
        "peak_live_mb": totals.peak_memory_mb,
    }


def score(task: Task, graph: GraphAnalysis, data: list[Batch]) -> Scoring:
    """One scoring pass (the gradient statistics every method selects from)."""
    return score_model(graph, data, options(task, "vanilla"))


def pruned(group: str, task: Task, graph: GraphAnalysis, scoring: Scoring, **kw: Any) -> Network:
    result = prune_scored(graph, scoring, options(task, **kw))
    emptied = len(result.selection.emptied_groups)
    note = f"infeasible: {emptied} layer(s) emptied, 1 channel kept" if emptied else ""
    return Network(
        group, kw["method"], result.model, costs_of(task, graph, result), note, not emptied
    )


def max_sparsities(task: Task, scoring: Scoring) -> dict[str, float]:
    """Algorithm 2 for every method."""
    return {m: search_max_sparsity(scoring, options(task, m).selection)[0] for m in METHODS}


def higher_sparsity(task: Task, maxima: dict[str, float]) -> float:
    """Halfway between max(task sparsity, vanilla NP's maximum) and RANP-f's maximum.

    If RANP-f's maximum is not above that, 5 points above it (RANP-f is infeasible there
    too, and the table says so).
    """
    low = max(task.sparsity, maxima["vanilla"])
    high = maxima["ranp-f"]
    if high <= low:
        return round(low + 0.05, 3)
    return round((low + high) / 2, 3)


def main_networks(task: Task, graph: GraphAnalysis, scoring: Scoring, high: float) -> list[Network]:
    """Full; every method at the task's and the higher sparsity; equal-GFLOPs baselines."""
    full = Network("main", "full", graph.model.proto, costs_of(task, graph))
    networks = [full]
    for group, sparsity in (("main", task.sparsity), ("high", high)):
        for method in METHODS:
            networks.append(pruned(group, task, graph, scoring, method=method, sparsity=sparsity))
    ranp_f = next(n for n in networks if n.group == "main" and n.method == "ranp-f")
    target = ranp_f.costs["gflops"] / full.costs["gflops"]
    for method in EQUAL_FLOPS_METHODS:
        networks.append(
            pruned("equal-flops", task, graph, scoring, method=method, target_flops=target)
        )
    return networks


def scale_networks(
    task: Task, graph: GraphAnalysis, scoring: Scoring, size: int, large_data: list[Batch]
) -> list[Network]:
    """At a larger input: full, RANP-f's plan from the study size, and RANP-f pruned there."""
    large = export(task, task.spatial_shape(size))
    small = prune_scored(graph, scoring, options(task, "ranp-f", sparsity=task.sparsity))
    moved = apply_plan(large, small.plan, options=options(task, "ranp-f"))
    there = prune_scored(
        large, score(task, large, large_data), options(task, "ranp-f", sparsity=task.sparsity)
    )
    return [
        Network("scale", "full", large.model.proto, costs_of(task, large)),
        Network(
            "scale",
            "ranp-f",
            moved.model,
            costs_of(task, large, moved),
            variant="plan from study size",
        ),
        Network(
            "scale", "ranp-f", there.model, costs_of(task, large, there), variant="pruned at size"
        ),
    ]


def transfer_networks(
    task: Task, graph: GraphAnalysis, own: Scoring, with_own: bool
) -> list[Network]:
    """The gradient methods scored with the transfer dataset (and with the task's own)."""
    other = score(task, graph, scoring_batches(task, task.load("transfer", task.score_count, None)))
    networks = []
    for method in GRADIENT_METHODS:
        sources = [("scored on transfer data", other)]
        if with_own:
            sources.insert(0, ("scored on own data", own))
        for variant, scoring in sources:
            network = pruned(
                "transfer", task, graph, scoring, method=method, sparsity=task.sparsity
            )
            networks.append(dataclasses.replace(network, variant=variant))
    return networks
