"""What every benchmark shares: repeated timings, peak memory of a child process, models."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MB = float(1 << 20)


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one quantity (seconds, unless said otherwise).

    Attributes:
        values: Every measurement, in order.
    """

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median."""
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """Half the range, relative to the median (0.05 means +-5%)."""
        if not self.values or self.median == 0:
            return 0.0
        return (max(self.values) - min(self.values)) / 2 / self.median

    def text(self, scale: float = 1.0, digits: int = 3) -> str:
        """``median (+-spread%, n=...)``, the median multiplied by ``scale``."""
        return (
            f"{self.median * scale:.{digits}g} (+-{100 * self.spread:.0f}%, n={len(self.values)})"
        )


def repeat(function: Callable[[], object], repeats: int, warmup: int = 1) -> Timing:
    """Time ``function`` ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        values.append(time.perf_counter() - start)
    return Timing(tuple(values))


@dataclass(frozen=True)
class ChildRun:
    """A command run in a child process.

    Attributes:
        seconds: Wall time.
        peak_rss_mb: Its peak resident memory (``ru_maxrss``), MB.
        returncode: Exit status.
        output: Its stdout and stderr.
    """

    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str


def run_child(command: Sequence[str], *, timeout: float = 3600) -> ChildRun:
    """Run ``command``; its own ``ru_maxrss`` comes from ``os.wait4`` on its pid.

    Raises:
        RuntimeError: The command failed or ran past ``timeout``.
    """
    start = time.perf_counter()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ranp-bench-{os.getpid()}.log"
    with log.open("w+") as sink:
        process = subprocess.Popen(list(command), stdout=sink, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}")
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        output = sink.read()
    log.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"exit {process.returncode}: {' '.join(command)}\n{output[-2000:]}")
    # ru_maxrss is in kilobytes on Linux.
    return ChildRun(seconds, usage.ru_maxrss / 1024, process.returncode, output)


def python_module(module: str, *args: str) -> list[str]:
    """A command line running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def ranp_onnx(*args: str) -> list[str]:
    """A command line running the ``ranp-onnx`` CLI with this interpreter."""
    return [sys.executable, "-c", "from ranp_onnx.cli.main import main; main()", *args]


def machine() -> dict[str, str]:
    """The machine and the versions the numbers were measured with."""
    import onnx
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    providers = onnxruntime.get_available_providers()
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores, {memory} RAM",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "onnx": onnx.__version__,
        "onnxruntime": f"{onnxruntime.__version__} ({', '.join(providers)})",
        "numpy": np.__version__,
        "load at start": Path("/proc/loadavg").read_text().strip()
        if Path("/proc/loadavg").exists()
        else "?",
    }


def segmentation_data(
    path: Path, shape: Sequence[int], classes: int, samples: int, seed: int = 0
) -> Path:
    """Write ``samples`` random volumes with per-voxel labels (a few ignored) to ``path``."""
    generator = np.random.default_rng(seed)
    inputs = generator.standard_normal((samples, *shape)).astype(np.float32)
    labels = generator.integers(0, classes, size=(samples, *shape[1:]), dtype=np.int64)
    labels[generator.random(labels.shape) < 0.5] = 255
    np.savez(path, inputs=inputs, labels=labels)
    return path
