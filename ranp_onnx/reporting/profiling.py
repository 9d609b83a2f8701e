"""Measured cost in onnxruntime: median latency and arena peak memory on random inputs."""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UnsupportedModelError, first_line
from ..ir import runtime, save
from ..ir.graph import GraphAnalysis, random_inputs
from ..ir.load import LoadedModel
from ..ir.units import MB

#: At most this many profiled runs (after one warm-up) give the time by op.
PROFILED_RUNS = 3


@dataclass(frozen=True)
class Measurement:
    """What one model measured.

    Attributes:
        provider: The execution provider that ran it.
        runs: Timed runs (after warm-up).
        median_ms: Median wall time of one run, milliseconds.
        arena_peak_mb: Peak bytes in use in the runtime's arena during the profiled runs
            (initializers held in the arena included), or None if the provider does not
            report it.
        op_ms: Kernel time of one run by operator type, milliseconds, largest first: each
            node's median over the profiled runs after the first, summed by type. The
            types are those the runtime ran, after its own fusions (``FusedConv`` is a
            Conv with its activation); empty if the provider reports no kernel times.
    """

    provider: str
    runs: int
    median_ms: float
    arena_peak_mb: float | None
    op_ms: dict[str, float] = field(default_factory=dict)

    def op_shares(self) -> dict[str, float]:
        """Each operator type's share of the profiled kernel time (0 to 1), largest first."""
        total = sum(self.op_ms.values())
        return {op: ms / total for op, ms in self.op_ms.items()} if total > 0 else {}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "provider": self.provider,
            "runs": self.runs,
            "median_ms": self.median_ms,
            "arena_peak_mb": self.arena_peak_mb,
            "op_ms": self.op_ms,
        }


def measure(
    graph: GraphAnalysis, *, runs: int = 10, warmup: int = 2, device: str = "auto"
) -> Measurement:
    """Run the model in onnxruntime and time it.

    A second session, profiled (memory pattern off, so the arena peak is stable from run to
    run), runs once to warm up and then up to three times (``runs``, at most 3): it gives
    the arena peak and the kernel time by operator type. The timed runs are not profiled.
    """
    providers = runtime.available_providers(device)
    feeds = random_inputs(graph)
    with contextlib.ExitStack() as stack:
        source = _session_source(graph.model, stack)
        session = runtime.make_session(source, providers=providers)
        times, provider = _time_runs(session, feeds, runs, warmup)
        events = profile_events(source, providers, feeds, min(runs, PROFILED_RUNS))
    peaks = [
        int(event["args"]["mem_in_use_peak"])
        for event in events
        if event.get("cat") == "Node" and "mem_in_use_peak" in event.get("args", {})
    ]
    return Measurement(
        provider=provider,
        runs=runs,
        median_ms=statistics.median(times),
        arena_peak_mb=max(peaks) / MB if peaks else None,
        op_ms=kernel_ms_by_op(events),
    )


def profile_events(
    source: onnx.ModelProto | Path,
    providers: Sequence[runtime.Provider],
    feeds: dict[str, np.ndarray],
    runs: int,
) -> list[dict[str, Any]]:
    """Run a profiled session once to warm up and ``runs`` times more; return its events.

    The memory pattern is off, so the arena peak is stable from run to run.
    """
    ort = runtime.import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="ranp-profile-") as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_mem_pattern = False
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        profiled = runtime.make_session(source, providers=providers, options=options)
        for _ in range(1 + runs):
            _run(profiled, feeds)
        events: list[dict[str, Any]] = json.loads(Path(profiled.end_profiling()).read_text())
    return events


def kernel_ms_by_node(events: list[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """One run's kernel time of every node, in ms, from an onnxruntime profile.

    Every node's kernel time (``<node>_kernel_time`` events, microseconds) is taken as its
    median over the profiled runs, leaving out the first where there are more (a session's
    first run allocates).

    Args:
        events: The events of an onnxruntime profile (its JSON file).

    Returns:
        By node name (as the runtime ran it, after its fusions): its operator type and ms.
    """
    per_node: dict[tuple[str, str], list[float]] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name")
        if op:
            key = (name.removesuffix("_kernel_time"), str(op))
            per_node.setdefault(key, []).append(float(event.get("dur", 0)) / 1e3)
    return {
        node: (op, statistics.median(times[1:] if len(times) > 1 else times))
        for (node, op), times in per_node.items()
    }


def kernel_ms_by_op(events: list[dict[str, Any]]) -> dict[str, float]:
    """One run's kernel time by operator type, in ms: :func:`kernel_ms_by_node` summed.

    Returns:
        Milliseconds per operator type, largest first.
    """
    totals: dict[str, float] = {}
    for op, ms in kernel_ms_by_node(events).values():
        totals[op] = totals.get(op, 0.0) + ms
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _session_source(model: LoadedModel, stack: contextlib.ExitStack) -> onnx.ModelProto | Path:
    """Return what to open a session from: the proto, or a file for external-data models.

    A model stored with external data may be over the 2 GB protobuf limit, so it is opened
    from its file (onnxruntime reads the data beside it). If the runtime cannot read the
    file's IR version, a copy at a version it reads is written into a temporary folder
    that lives as long as ``stack``.
    """
    if not model.external_data and model.proto.ByteSize() <= save.PROTOBUF_LIMIT:
        return model.proto
    if model.path is not None and model.proto.ir_version <= runtime.max_ir_version():
        return model.path
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ranp-measure-")))
    return save.save_model(model.proto, folder / "model.onnx", external_data=True)


def _time_runs(
    session: Any, feeds: dict[str, np.ndarray], runs: int, warmup: int
) -> tuple[list[float], str]:
    """Run ``warmup`` untimed then ``runs`` timed runs; return times (ms) and the provider."""
    for _ in range(warmup):
        _run(session, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _run(session, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times, str(session.get_providers()[0])


def _run(session: Any, feeds: dict[str, np.ndarray]) -> None:
    try:
        session.run(None, feeds)
    except Exception as error:
        message = first_line(error)
        raise UnsupportedModelError(f"onnxruntime failed to run the model: {message}") from error
