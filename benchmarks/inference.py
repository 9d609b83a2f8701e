"""(c) Full against pruned inference in onnxruntime, and (e) against Torch-Pruning.

One scoring of the UNet serves every RANP-f model: sparsities 0.5, 0.8 and the largest
feasible one (the paper's Algorithm 2), and 0.8 with ``--round-to 8`` and ``16``. Each model
is timed in onnxruntime (CUDA where the installed onnxruntime has it, else CPU) and its
arena peak and kernel time by op read as ``report --measure`` reads them
(:func:`ranp_onnx.reporting.profiling.measure`). Beside it, where OpenVINO is installed,
each model is timed in OpenVINO's CPU plugin on the same inputs; and the full and the 0.8
model are timed again without their final Softmax (their logits), the op onnxruntime spends
most of the pruned model's time in.
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
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.pipeline import PruneOptions, score_model
    from ranp_onnx.scoring.data import open_data

    start = time.perf_counter()
    graph = analyse(str(model))
    source = open_data(data, graph, batches=batches, ignore_index=255)
    options = PruneOptions(method="ranp-f", sparsity=0.5, ignore_index=255)
    scoring = score_model(graph, source, options)
    return Scored(graph, scoring, time.perf_counter() - start)


def ranp_models(scored: Scored) -> list[tuple[str, float, int, Any]]:
    """(label, sparsity, round_to, PruneResult) of every RANP-f model measured."""
    from ranp_onnx.pipeline import PruneOptions, prune_scored
    from ranp_onnx.selection.search import search_max_sparsity

    base = PruneOptions(method="ranp-f", lam=11.0, validate=False)
    largest, _ = search_max_sparsity(scored.scoring, base.selection)
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


@dataclasses.dataclass(frozen=True)
class Latency:
    """One model timed.

    Attributes:
        onnxruntime: Timed runs in onnxruntime.
        provider: Its execution provider.
        arena_mb: Its arena peak, MB.
        op_ms: Its kernel time by op type per run (profiled), ms.
        openvino: Timed runs in OpenVINO's CPU plugin, or None where it is not installed.
    """

    onnxruntime: Timing
    provider: str
    arena_mb: float
    op_ms: dict[str, float]
    openvino: Timing | None


def _latency(proto: onnx.ModelProto, graph: Any, repeats: int) -> Latency:
    """Timed runs in onnxruntime (and OpenVINO), the arena peak and the time by op."""
    from ranp_onnx.ir import runtime
    from ranp_onnx.ir.graph import random_inputs
    from ranp_onnx.reporting.profiling import measure

    providers = runtime.available_providers("auto")
    session = runtime.make_session(proto, providers=providers)
    feeds = random_inputs(graph)
    timing = repeat(lambda: session.run(None, feeds), repeats, warmup=1)
    measured = measure(graph, runs=1, warmup=0)
    return Latency(
        timing,
        measured.provider,
        measured.arena_peak_mb or float("nan"),
        measured.op_ms,
        _openvino_latency(proto, feeds, repeats),
    )


def _openvino_latency(
    proto: onnx.ModelProto, feeds: dict[str, np.ndarray], repeats: int
) -> Timing | None:
    """Timed runs in OpenVINO's CPU plugin (latency hint, f32), or None without OpenVINO."""
    try:
        import openvino
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ranp-bench-ov-") as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(proto, path)
        compiled = openvino.Core().compile_model(
            str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        )
    request = compiled.create_infer_request()
    inputs = {port.any_name: feeds[port.any_name] for port in compiled.inputs}
    return repeat(lambda: request.infer(inputs), repeats, warmup=1)


def logits(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """The model without the Softmax that makes its (single) output, or None if none does."""
    graph = proto.graph
    if len(graph.output) != 1:
        return None
    output = graph.output[0]
    producers = [node for node in graph.node if output.name in node.output]
    if len(producers) != 1 or producers[0].op_type != "Softmax":
        return None
    softmax = producers[0]
    cut = onnx.ModelProto()
    cut.CopyFrom(proto)
    nodes = [node for node in cut.graph.node if softmax.output[0] not in node.output]
    del cut.graph.node[:]
    cut.graph.node.extend(nodes)
    cut.graph.output[0].name = softmax.input[0]
    return cut


def run_inference(scored: Scored, repeats: int) -> list[dict[str, Any]]:
    """Latency and arena peak of the full and every pruned model, with the counted factors."""
    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.analysis.shapes import analyse

    full = Timed(
        _latency(scored.graph.model.proto, scored.graph, repeats), count_costs(scored.graph).totals
    )
    rows = [_row("full", 0.0, full, full)]
    for label, _sparsity, _round, result in ranp_models(scored):
        graph = analyse(result.model, scored.graph.input_shapes)
        pruned = Timed(_latency(result.model, graph, repeats), result.after.totals)
        sparsity = result.plan.achieved["neuron_sparsity"]
        rows.append(_row(label, sparsity, pruned, full))
        if label == "0.8":
            rows[0]["convs"] = conv_times(scored.graph, count_costs(scored.graph))
            rows[-1]["convs"] = conv_times(graph, result.after)
            rows += _logit_rows(scored, result.model, sparsity, repeats)
    return rows


def conv_times(graph: Any, costs: Any, runs: int = 3) -> dict[str, dict[str, Any]]:
    """Each Conv's kernel time in onnxruntime (CPU, median of ``runs`` profiled runs).

    Returns:
        By node name: ``ms``, ``macs`` and ``channels`` ("in->out").
    """
    from ranp_onnx.ir.graph import random_inputs
    from ranp_onnx.reporting.profiling import kernel_ms_by_node, profile_events

    events = profile_events(graph.model.proto, ["CPUExecutionProvider"], random_inputs(graph), runs)
    times = kernel_ms_by_node(events)
    return {
        layer.name: {
            "ms": times[layer.name][1],
            "macs": layer.macs,
            "channels": f"{layer.geometry.channels_in}->{layer.geometry.channels_out}",
        }
        for layer in costs.layers
        if layer.op_type == "Conv" and layer.name in times and layer.geometry is not None
    }


@dataclasses.dataclass(frozen=True)
class Timed:
    """A model's timings and its counted costs (``standard`` totals)."""

    latency: Latency
    totals: Any


def _row(label: str, sparsity: float, model: Timed, full: Timed) -> dict[str, Any]:
    """One table row: the timings, and the speedups and factors against ``full``."""
    latency, base = model.latency, full.latency
    row: dict[str, Any] = {
        "model": label,
        "neuron_sparsity": sparsity,
        "provider": latency.provider,
        "latency": latency.onnxruntime,
        "arena_mb": latency.arena_mb,
        "op_ms": latency.op_ms,
        "gflops": model.totals.gflops,
        "speedup": _speedup(base.onnxruntime, latency.onnxruntime),
        "flops_factor": full.totals.gflops / model.totals.gflops,
        "arena_factor": base.arena_mb / latency.arena_mb,
        "memory_factor": full.totals.memory_mb / model.totals.memory_mb,
        "baseline": model is full,
    }
    if latency.openvino is not None and base.openvino is not None:
        row["openvino"] = latency.openvino
        row["openvino_speedup"] = _speedup(base.openvino, latency.openvino)
    return row


def _speedup(full: Timing, model: Timing) -> Timing:
    return Timing(tuple(full.median / t for t in model.values))


def _logit_rows(
    scored: Scored, pruned: onnx.ModelProto, sparsity: float, repeats: int
) -> list[dict[str, Any]]:
    """The full and a pruned model timed without their final Softmax, if they end in one."""
    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.analysis.shapes import analyse

    cuts = [logits(scored.graph.model.proto), logits(pruned)]
    timed = []
    for cut in cuts:
        if cut is None:
            return []
        graph = analyse(cut, scored.graph.input_shapes)
        timed.append(Timed(_latency(cut, graph, repeats), count_costs(graph).totals))
    return [
        _row("full, logits (final Softmax removed)", 0.0, timed[0], timed[0]),
        _row("0.8, logits", sparsity, timed[1], timed[0]),
    ]
