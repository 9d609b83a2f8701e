"""How much memory scoring needs, how much there is, and the refusal before starting.

A scoring pass keeps what autograd saves for the backward pass: roughly every activation
of the forward pass (a conv saves its input, a training-mode BatchNormalization its input,
a Relu its output, a MaxPool its indices), plus the gradients in flight during the
backward pass and the parameters with their gradients and the two running sums. The
estimate is linear in those sizes, which the analysis knows before anything runs:

``bytes = BASE + PARAMETER_COPIES x parameters + batch x (ACTIVATION_FACTOR x activations
+ GRADIENT_FACTOR x largest activation)``

where ``activations`` is the sum of the bytes of every node output that depends on the
inputs, per sample (the ``standard`` activation memory of ``ranp-onnx report``). The
constants were fitted to the peak resident memory (``ru_maxrss``) of ``ranp-onnx prune``
on CPU, measured on 3D-UNets of several widths and input sizes (see
``benchmarks/RESULTS.md``); :func:`estimate_scoring_memory` is meant to be within a factor
1.5 of the measured peak either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InsufficientMemoryError
from ..ir.graph import GraphAnalysis
from ..ir.units import MB

if TYPE_CHECKING:
    import torch

#: Resident memory of the process before scoring: Python, torch, onnx and onnxruntime.
BASE_BYTES = 440 * (1 << 20)
#: Copies of the parameters alive while scoring: the ONNX model, the torch copy, its
#: gradients, the two running sums, and the products of one batch.
PARAMETER_COPIES = 4.0
#: Activation bytes autograd holds per byte of forward activations.
ACTIVATION_FACTOR = 1.2
#: Gradient buffers in flight during the backward pass, in largest activations.
GRADIENT_FACTOR = 1.0

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory one scoring pass is expected to need.

    Attributes:
        total_bytes: The estimate.
        activation_bytes: Forward activations of one batch.
        parameter_bytes: The model's parameters.
        batch_size: The batch size estimated for.
    """

    total_bytes: int
    activation_bytes: int
    parameter_bytes: int
    batch_size: int

    @property
    def total_mb(self) -> float:
        """The estimate in MB (2^20 bytes)."""
        return self.total_bytes / MB


def activation_bytes_per_sample(graph: GraphAnalysis) -> tuple[int, int]:
    """Return (sum, largest) bytes of the node outputs that depend on the inputs, per sample.

    The model is analysed at some batch size (the first axis of its first input); the sums
    are divided by it.
    """
    total = largest = 0
    for node in graph.nodes:
        for name in node.outputs:
            info = graph.tensors.get(name) if name else None
            if info is None or info.static:
                continue
            total += info.nbytes
            largest = max(largest, info.nbytes)
    first = graph.input_shapes.get(graph.input_names[0]) if graph.input_names else None
    batch = max(int(first[0]), 1) if first else 1
    return total // batch, largest // batch


def parameter_bytes(graph: GraphAnalysis) -> int:
    """Return the bytes of the model's float initializers."""
    return sum(
        graph.tensors[name].nbytes
        for name in graph.initializer_names
        if name in graph.tensors and graph.tensors[name].itemsize >= 2
    )


def estimate_scoring_memory(graph: GraphAnalysis, batch_size: int) -> MemoryEstimate:
    """Estimate the peak resident memory of scoring ``graph`` at ``batch_size`` on CPU."""
    activations, largest = activation_bytes_per_sample(graph)
    parameters = parameter_bytes(graph)
    total = (
        BASE_BYTES
        + PARAMETER_COPIES * parameters
        + batch_size * (ACTIVATION_FACTOR * activations + GRADIENT_FACTOR * largest)
    )
    return MemoryEstimate(
        total_bytes=int(total),
        activation_bytes=activations * batch_size,
        parameter_bytes=parameters,
        batch_size=batch_size,
    )


def available_memory(device: torch.device | None = None) -> int | None:
    """Return the bytes available to this process, or None where that cannot be read.

    On CPU: ``MemAvailable`` of ``/proc/meminfo``, lowered to what the cgroup (v2
    ``memory.max`` less ``memory.current``) still allows. On CUDA: the device's free
    memory.
    """
    if device is not None and device.type == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    available = _meminfo_available()
    limit = _cgroup_headroom()
    if available is None:
        return limit
    return available if limit is None else min(available, limit)


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int((_CGROUP / "memory.current").read_text().strip())
        return max(int(limit) - current, 0)
    except (OSError, ValueError):
        return None


def check_scoring_memory(graph: GraphAnalysis, batch_size: int, device: torch.device) -> None:
    """Refuse to start scoring when the estimate exceeds the memory available.

    Nothing is refused where the available memory cannot be read.

    Raises:
        InsufficientMemoryError: One line with the estimate and the memory available.
    """
    estimate = estimate_scoring_memory(graph, batch_size)
    if device.type == "cuda":
        # On a GPU the activations and parameter copies live in device memory.
        needed = estimate.total_bytes - BASE_BYTES
        where = f"{device} memory free"
    else:
        needed, where = estimate.total_bytes, "memory available"
    available = available_memory(device)
    if available is None or needed <= available:
        return
    raise InsufficientMemoryError(
        f"scoring at batch size {batch_size} needs about {needed / MB / 1024:.1f} GB "
        f"({estimate.activation_bytes / MB / 1024:.1f} GB of activations), "
        f"{available / MB / 1024:.1f} GB {where}: lower `batch_size`, score on a smaller "
        "input, or skip this check (`memory_check`)"
    )
