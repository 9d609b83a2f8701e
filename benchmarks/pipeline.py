"""(a) The prune pipeline stage by stage against plain torch forward+backward passes.

The same inputs go through three things, interleaved run by run so that load changes hit
all three alike:

- ``ranp-onnx prune`` as the library runs it, each stage timed: load, analysis (shapes
  and costs), channel groups, gradient passes (forward, backward and the statistics),
  scoring (the criterion), selection (constraints), rewrite, validation, report (costs of
  the result and the plan) and writing;
- the original PyTorch module (``ranp_onnx.zoo.build_model``), in training mode,
  forward + cross-entropy + backward on one batch;
- the graph evaluator (:class:`ranp_onnx.scoring.evaluator.TorchGraph`) alone, forward + the
  same loss + backward on the same batch, without the statistics.

The prune total is compared with ``batches`` native passes: the native pass timed in the
same repeat, times the number of batches (every batch has the same shape and cost).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import Timing


@dataclass(frozen=True)
class PipelineCase:
    """What to prune: a zoo UNet-15 at a width and input, and the scoring batches."""

    width: float
    shape: tuple[int, int, int, int]
    batches: int
    sparsity: float = 0.8


STAGES = (
    "load",
    "analysis",
    "channels",
    "gradient passes",
    "scoring",
    "selection",
    "rewrite",
    "validation",
    "report",
    "writing",
)


def _stage_times(model: Path, data: Path, out: Path, case: PipelineCase) -> dict[str, float]:
    """One prune, the time of every stage."""
    from ranp_onnx.analysis.channels import analyse_channels
    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.ir.load import load_model
    from ranp_onnx.ir.save import save_model
    from ranp_onnx.pipeline import PruneOptions, score_model
    from ranp_onnx.rewrite.oracle import validate
    from ranp_onnx.rewrite.surgery import rewrite
    from ranp_onnx.scoring.data import open_data
    from ranp_onnx.selection.constraints import apply_constraints
    from ranp_onnx.selection.criteria import criterion
    from ranp_onnx.selection.plan import build_plan

    times: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        times[stage] = times.get(stage, 0.0) + now - clock[0]
        clock[0] = now

    options = PruneOptions(method="ranp-f", sparsity=case.sparsity, ignore_index=255, lam=11.0)
    loaded = load_model(model)
    lap("load")
    graph = analyse(loaded)
    before = count_costs(graph)
    lap("analysis")
    analyse_channels(graph)
    lap("channels")
    source = open_data(data, graph, batches=case.batches, ignore_index=255)
    scoring = score_model(graph, source, options)
    lap("gradient passes")
    # score_model analysed the channels again: move that time to "channels".
    times["gradient passes"] -= times["channels"]
    raw, scores, _ = criterion("ranp-f").select(scoring, options.selection, case.sparsity)
    lap("scoring")
    keep, _ = apply_constraints(scoring.channels, raw, scores, fixed=scoring.fixed)
    lap("selection")
    pruned = rewrite(scoring.channels, keep)
    lap("rewrite")
    validate(graph, pruned, scoring.channels.kept_indices(keep))
    lap("validation")
    after = count_costs(analyse(pruned, graph.input_shapes))
    build_plan(scoring.channels, keep, scores, settings={}, before=before, after=after)
    lap("report")
    save_model(pruned, out, force=True)
    lap("writing")
    times["channels"] *= 2
    return times


def _batches(data: Path, count: int) -> list[tuple[Any, Any]]:
    import torch

    arrays = np.load(data)
    return [
        (
            torch.from_numpy(arrays["inputs"][i : i + 1]),
            torch.from_numpy(arrays["labels"][i : i + 1]),
        )
        for i in range(count)
    ]


def _torch_passes(module: Any, batches: list[tuple[Any, Any]]) -> Callable[[], None]:
    import torch

    def run() -> None:
        for inputs, labels in batches:
            module.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(module(inputs), labels, ignore_index=255)
            loss.backward()

    return run


def _evaluator_passes(model: Path, batches: list[tuple[Any, Any]]) -> Callable[[], None]:
    import torch

    from ranp_onnx.scoring.evaluator import TorchGraph

    graph = TorchGraph(str(model), batchnorm="batch").eval()
    logits = graph.output_names[0]
    for node in graph.onnx_model.graph.node:  # the loss reads the logits before the softmax
        if node.output[0] == logits and node.op_type == "Softmax":
            logits = node.input[0]

    def run() -> None:
        for inputs, labels in batches:
            graph.zero_grad(set_to_none=True)
            out = graph.capture({graph.input_names[0]: inputs}, [logits])[logits]
            loss = torch.nn.functional.cross_entropy(out, labels, ignore_index=255)
            loss.backward()

    return run


def run_pipeline(case: PipelineCase, folder: Path, repeats: int) -> dict[str, Any]:
    """Measure the three, ``repeats`` times each, interleaved; return the timings."""
    import onnx
    import torch

    from ranp_onnx.zoo import build_model, export_built

    from .common import segmentation_data

    built = build_model(
        "unet3d-15", preset="shapenet", width_mult=case.width, input_shape=case.shape
    )
    model = folder / "unet.onnx"
    onnx.save(export_built(built), model)
    data = segmentation_data(folder / "score.npz", case.shape, built.config.classes, case.batches)
    batches = _batches(data, 1)
    module = built.module.train()
    native = _torch_passes(module, batches)
    evaluator = _evaluator_passes(model, batches)
    native(), evaluator()  # warm-up: allocator and oneDNN primitives
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals: list[float] = []
    natives: list[float] = []
    evaluators: list[float] = []
    for _ in range(repeats):
        times = _stage_times(model, data, folder / "slim.onnx", case)
        for stage in STAGES:
            stages[stage].append(times[stage])
        totals.append(sum(times.values()))
        for function, sink in ((native, natives), (evaluator, evaluators)):
            start = time.perf_counter()
            function()
            sink.append(time.perf_counter() - start)
    return {
        "case": case,
        "threads": torch.get_num_threads(),
        "stages": {stage: Timing(tuple(values)) for stage, values in stages.items()},
        "total": Timing(tuple(totals)),
        "native": Timing(tuple(natives)),
        "evaluator": Timing(tuple(evaluators)),
        "total_ratio": Timing(tuple(t / (case.batches * n) for t, n in zip(totals, natives))),
        "evaluator_ratio": Timing(tuple(e / n for e, n in zip(evaluators, natives))),
    }
