"""(c) Full against pruned inference in onnxruntime, and (e) against Torch-Pruning.

One scoring of the UNet serves every RANP-f model: sparsities 0.5, 0.8 and the largest
feasible one (the paper's Algorithm 2), and 0.8 with ``--round-to 8`` and ``16``. Each
model is timed in onnxruntime (CUDA where the installed onnxruntime has it, else CPU) and
its arena peak read as ``report --measure`` reads it (:func:`ranp_onnx.measure.measure`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .common import Timing, repeat

SPARSITIES = (0.5, 0.8)
ROUNDINGS = (8, 16)


@dataclasses.dataclass(frozen=True)
class Scored:
    """A scored UNet: the analysis, its scoring, and how long the scoring took."""

    graph: Any
    scoring: Any
    seconds: float


def score_unet(model: Path, data: Path, batches: int) -> Scored:
    """Score the model once with RANP-f's statistics."""
    from ranp_onnx.analyse import analyse
    from ranp_onnx.data import open_data
    from ranp_onnx.prune import PruneOptions, score_model

    start = time.perf_counter()
    graph = analyse(str(model))
    source = open_data(data, graph, batches=batches, ignore_index=255)
    options = PruneOptions(method="ranp-f", sparsity=0.5, ignore_index=255)
    scoring = score_model(graph, source, options)
    return Scored(graph, scoring, time.perf_counter() - start)


def ranp_models(scored: Scored) -> list[tuple[str, float, int, Any]]:
    """(label, sparsity, round_to, PruneResult) of every RANP-f model measured."""
    from ranp_onnx.prune import PruneOptions, prune_scored, search_max_sparsity

    base = PruneOptions(method="ranp-f", lam=11.0, validate=False)
    largest, _ = search_max_sparsity(scored.scoring, base)
    largest = float(np.floor(largest * 1e4) / 1e4)
    cases = [(s, 1) for s in (*SPARSITIES, largest)] + [(0.8, r) for r in ROUNDINGS]
    results = []
    for sparsity, round_to in cases:
        options = dataclasses.replace(base, sparsity=sparsity, round_to=round_to)
        label = f"{sparsity:g}" + (f" --round-to {round_to}" if round_to > 1 else "")
        if sparsity == largest:
            label += " (largest feasible)"
        results.append(
            (label, sparsity, round_to, prune_scored(scored.graph, scored.scoring, options))
        )
    return results


def _latency(proto: onnx.ModelProto, graph: Any, repeats: int) -> tuple[Timing, str, float]:
    """Timed runs in onnxruntime, the provider, and the arena peak (MB)."""
    from ranp_onnx import runtime
    from ranp_onnx.measure import measure, random_inputs

    providers = runtime.available_providers("auto")
    session = runtime.make_session(proto, providers=providers)
    feeds = random_inputs(graph)
    timing = repeat(lambda: session.run(None, feeds), repeats, warmup=1)
    measured = measure(graph, runs=1, warmup=0)
    return timing, measured.provider, measured.arena_peak_mb or float("nan")


def run_inference(scored: Scored, repeats: int) -> list[dict[str, Any]]:
    """Latency and arena peak of the full and every pruned model, with the counted factors."""
    from ranp_onnx.analyse import analyse
    from ranp_onnx.costs import count_costs

    full_costs = count_costs(scored.graph)
    full_time, provider, full_arena = _latency(scored.graph.model.proto, scored.graph, repeats)
    rows = [
        {
            "model": "full",
            "provider": provider,
            "latency": full_time,
            "arena_mb": full_arena,
            "gflops": full_costs.totals.gflops,
            "memory_mb": full_costs.totals.memory_mb,
        }
    ]
    for label, _sparsity, _round, result in ranp_models(scored):
        graph = analyse(result.model, scored.graph.input_shapes)
        timing, provider, arena = _latency(result.model, graph, repeats)
        achieved = result.plan.achieved
        rows.append(
            {
                "model": label,
                "provider": provider,
                "latency": timing,
                "arena_mb": arena,
                "gflops": result.after.totals.gflops,
                "memory_mb": result.after.totals.memory_mb,
                "neuron_sparsity": achieved["neuron_sparsity"],
                "speedup": Timing(tuple(full_time.median / t for t in timing.values)),
            }
        )
    return rows
