"""How much memory scoring needs, how much there is, and the refusal before starting.

The estimate comes from the training-memory model (:mod:`~ranp_onnx.analysis.training_memory`):
the scoring pass is played on its ledger as :mod:`~ranp_onnx.scoring.statistics` runs it.
The model is in evaluation mode with batch-statistics BatchNorm; the forward captures every scored
layer's output and weight and the logits (kept until the pass ends, the logits' gradient
retained), a hook multiplies each layer output's gradient by the output, and after the
backward the weight-gradient products are added to two running sums per layer. No
optimizer. The figure is the bytes of the tensors scoring holds at its peak, which is
what it needs beyond the process as it stands (Python and its libraries are already
loaded when the check runs); ``tests/test_memory.py`` checks it against torch's
allocator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.channels import analyse_channels
from ..analysis.training_memory import loss_input, training_graph
from ..analysis.training_memory.passes import PassSettings, play_step
from ..analysis.training_memory.timeline import PARAMETERS
from ..errors import InsufficientMemoryError
from ..ir.graph import GraphAnalysis
from ..ir.units import MB

if TYPE_CHECKING:
    import torch

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory one scoring pass is expected to need.

    Attributes:
        total_bytes: The estimate: tensors alive at the pass's peak.
        activation_bytes: What autograd keeps once the loss is computed.
        parameter_bytes: The model's parameters and buffers.
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


def estimate_scoring_memory(
    graph: GraphAnalysis,
    batch_size: int,
    *,
    layers: Sequence[tuple[str, str]] | None = None,
    labels: bool = True,
    device: str = "cpu",
) -> MemoryEstimate:
    """Estimate the peak memory of one scoring pass of ``graph`` at ``batch_size``.

    Args:
        graph: The analysed model (at any batch size).
        batch_size: The scoring batch size.
        layers: (output, weight) of every scored layer. Defaults to the model's layers
            as the channel analysis finds them.
        labels: True if the batches carry labels (else the loss makes them).
        device: "cpu" or "cuda". Defaults to "cpu".
    """
    if layers is None:
        layers = [(layer.output, layer.weight) for layer in analyse_channels(graph).layers]
    batched = training_graph(graph.model, graph.input_shapes, batch=batch_size)
    logits = loss_input(batched)
    weights = [batched.tensors[weight].nbytes for _, weight in layers]
    outputs = frozenset(output for output, _ in layers)
    settings = PassSettings(
        device=device,
        optimizer=None,
        autocast=False,
        training=False,
        loss_input=logits,
        kept=frozenset({logits, *outputs, *(weight for _, weight in layers)}),
        retained=frozenset({logits}),
        hooked=outputs,
        labels=labels,
        update_scratch=2 * max(weights, default=0),
    )
    played = play_step(batched, settings)
    sums = 2 * sum(weights)  # the two running sums per layer
    return MemoryEstimate(
        total_bytes=played.ledger.peak + sums,
        activation_bytes=played.saved_after_forward,
        parameter_bytes=played.ledger.total(PARAMETERS),
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


def check_scoring_memory(
    graph: GraphAnalysis,
    batch_size: int,
    device: torch.device,
    *,
    layers: Sequence[tuple[str, str]] | None = None,
    labels: bool = True,
    passes: int = 1,
) -> None:
    """Refuse to start scoring when the estimate exceeds the memory available.

    Nothing is refused where the available memory cannot be read. ``batch_size`` is the
    size of one forward pass; where a node fixes the batch, a batch runs in ``passes``
    micro-batches whose activations are all kept for its one backward pass, so the
    estimate of one pass is taken ``passes`` times (its parameters too, which errs on the
    side of refusing).

    Raises:
        InsufficientMemoryError: One line with the estimate and the memory available.
    """
    estimate = estimate_scoring_memory(
        graph, batch_size, layers=layers, labels=labels, device=device.type
    )
    needed = estimate.total_bytes * passes
    where = f"{device} memory free" if device.type == "cuda" else "memory available"
    available = available_memory(device)
    if available is None or needed <= available:
        return
    raise InsufficientMemoryError(
        f"scoring at batch size {batch_size * passes} needs about {needed / MB / 1024:.1f} GB "
        f"({estimate.activation_bytes * passes / MB / 1024:.1f} GB of activations), "
        f"{available / MB / 1024:.1f} GB {where}: lower `batch_size`, score on a smaller "
        "input, or skip this check (`memory_check`)"
    )
