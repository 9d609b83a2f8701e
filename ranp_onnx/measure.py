"""Measured cost in onnxruntime: median latency and arena peak memory on random inputs."""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import runtime, save
from .analyse import GraphAnalysis
from .errors import UnsupportedModelError
from .load import LoadedModel

MB = float(1 << 20)


@dataclass(frozen=True)
class Measurement:
    """What one model measured.

    Attributes:
        provider: The execution provider that ran it.
        runs: Timed runs (after warm-up).
        median_ms: Median wall time of one run, milliseconds.
        arena_peak_mb: Peak bytes in use in the runtime's arena during the profiled run
            (initializers held in the arena included), or None if the provider does not
            report it.
    """

    provider: str
    runs: int
    median_ms: float
    arena_peak_mb: float | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "provider": self.provider,
            "runs": self.runs,
            "median_ms": self.median_ms,
            "arena_peak_mb": self.arena_peak_mb,
        }


def random_inputs(graph: GraphAnalysis, seed: int = 0) -> dict[str, np.ndarray]:
    """Return standard-normal inputs (integer inputs get zeros) at the analysed shapes."""
    generator = np.random.default_rng(seed)
    feeds = {}
    for name in graph.input_names:
        info = graph.tensors[name]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.elem_type)
        shape = graph.shape(name)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = generator.standard_normal(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds


def measure(
    graph: GraphAnalysis, *, runs: int = 10, warmup: int = 2, device: str = "auto"
) -> Measurement:
    """Run the model in onnxruntime and time it.

    One extra profiled run (memory pattern off, so the arena peak is stable from run to
    run) gives the arena peak; the timed runs are not profiled.
    """
    ort = runtime.import_onnxruntime()
    providers = runtime.available_providers(device)
    feeds = random_inputs(graph)
    with contextlib.ExitStack() as stack:
        source = _session_source(graph.model, stack)
        session = runtime.make_session(source, providers=providers)
        times, provider = _time_runs(session, feeds, runs, warmup)
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="ranp-profile-"))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_mem_pattern = False
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        profiled = runtime.make_session(source, providers=providers, options=options)
        _run(profiled, feeds)
        events = json.loads(Path(profiled.end_profiling()).read_text())
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
    )


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
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UnsupportedModelError(f"onnxruntime failed to run the model: {message}") from error
