"""Stage report: the training-memory breakdown as text and JSON, alone or side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..analysis.training_memory import TrainingMemory
from ..analysis.training_memory.timeline import CATEGORIES
from ..ir.units import GB, MB
from ..ops import conv_memory
from .tables import format_table, reduction_percent

if TYPE_CHECKING:
    from .training_step import MeasuredStep


def _shapes(memory: TrainingMemory) -> str:
    return ", ".join(
        f"{name}={'x'.join(map(str, shape))}" for name, shape in memory.input_shapes.items()
    )


def _setup(memory: TrainingMemory) -> str:
    setup = memory.setup
    precision = "float32" if setup.precision == "float32" else f"autocast {setup.precision}"
    return (
        f"batch {memory.batch_size} ({_shapes(memory)}), {setup.optimizer}, {precision}, "
        f"torch on {setup.device}"
    )


def _setup_line(memory: TrainingMemory) -> str:
    return f"training step: {_setup(memory)}"


def _where(memory: TrainingMemory) -> str:
    return f"{memory.phase}, at {memory.node}" if memory.node else memory.phase


def format_training(memory: TrainingMemory, measured: MeasuredStep | None = None) -> str:
    """The predicted peak of a training step and what it is made of."""
    rows = [[category, f"{memory.breakdown[category] / MB:.1f}"] for category in CATEGORIES]
    rows.append(["peak", f"{memory.peak_bytes / MB:.1f}"])
    lines = [
        f"model: {memory.model}",
        _setup_line(memory),
        "",
        format_table(["predicted at the peak", "MB"], rows, right={1}),
        "",
        f"peak          {memory.peak_bytes / GB:.3f} GB during the {_where(memory)}",
        f"saved         {memory.saved_after_forward / GB:.3f} GB of activations kept by "
        "autograd once the loss is computed",
    ]
    if measured is not None:
        lines.append(_measured_line(memory, measured))
    lines.extend(unverified_cpu_note(memory))
    return "\n".join(lines)


def unverified_cpu_note(memory: TrainingMemory) -> list[str]:
    """One line where the prediction is for a CPU unlike those the model was checked on."""
    if memory.setup.device != "cpu" or conv_memory.cpu_is_verified():
        return []
    return [
        f"note          convolution scratch is modelled on oneDNN's AVX-512 kernels; this "
        f"CPU runs {conv_memory.cpu_capability()} ones, which may need more (a 3D-UNet step "
        "measured 11% more, one thin-volume layer 3.4x)"
    ]


def _measured_line(memory: TrainingMemory, measured: MeasuredStep) -> str:
    ratio = memory.peak_bytes / measured.peak_bytes if measured.peak_bytes else float("nan")
    time = f", {measured.seconds:.2f} s per step" if measured.seconds is not None else ""
    return (
        f"measured      {measured.peak_bytes / GB:.3f} GB peak of a real step on "
        f"{measured.device}{time} (predicted / measured {ratio:.3f})"
    )


def format_training_comparison(
    before: TrainingMemory,
    after: TrainingMemory,
    measured: tuple[MeasuredStep, MeasuredStep] | None = None,
) -> str:
    """Two models' training steps side by side (``report --training --compare``)."""
    rows = []
    pairs = [(c, before.breakdown[c], after.breakdown[c]) for c in CATEGORIES]
    pairs.append(("peak", before.peak_bytes, after.peak_bytes))
    if measured is not None:
        pairs.append(("measured peak", measured[0].peak_bytes, measured[1].peak_bytes))
    for label, a, b in pairs:
        reduction = reduction_percent(a, b)
        rows.append(
            [
                label,
                f"{a / MB:.1f}",
                f"{b / MB:.1f}",
                f"{reduction:.1f}%" if reduction is not None else "-",
            ]
        )
    if measured is not None and measured[0].seconds and measured[1].seconds:
        a_time, b_time = measured[0].seconds, measured[1].seconds
        rows.append(["step time (s)", f"{a_time:.3f}", f"{b_time:.3f}", f"{a_time / b_time:.2f}x"])
    header = ["MB", before.model, after.model, "reduction"]
    return "\n".join(
        [
            _setup_line(after),
            "",
            format_table(header, rows, right={1, 2, 3}),
            "",
            f"peak          {before.model}: {_where(before)}; {after.model}: {_where(after)}",
            *unverified_cpu_note(after),
        ]
    )


def training_json(
    memory: TrainingMemory,
    measured: MeasuredStep | None = None,
    *,
    compare: TrainingMemory | None = None,
    compare_measured: MeasuredStep | None = None,
) -> dict[str, Any]:
    """The ``report --training --json`` document (``compare`` for ``--compare``)."""
    document: dict[str, Any] = memory.to_json()
    document["notes"] = [line.removeprefix("note").strip() for line in unverified_cpu_note(memory)]
    if measured is not None:
        document["measured"] = measured.to_json()
    if compare is not None:
        other = compare.to_json()
        if compare_measured is not None:
            other["measured"] = compare_measured.to_json()
        document["compare"] = other
        document["reduction_percent"] = reduction_percent(compare.peak_bytes, memory.peak_bytes)
    return document


def fit_lines(before: TrainingMemory, after: TrainingMemory, budget: int) -> list[str]:
    """What ``prune --fit-training`` prints under the cost comparison."""
    return [
        f"training      {_setup(after)}",
        f"              predicted peak {before.peak_bytes / GB:.2f} GB before, "
        f"{after.peak_bytes / GB:.2f} GB after pruning (budget {budget / GB:.2f} GB)",
    ]


def fit_json(before: TrainingMemory, after: TrainingMemory, budget: int) -> Mapping[str, Any]:
    """The ``training`` entry of ``prune --fit-training --json``."""
    return {"budget_bytes": budget, "before": before.to_json(), "after": after.to_json()}
