"""Rendering the study: Markdown tables in the form of the paper's Table II, and the plot.

:func:`summarise` turns the per-seed runs of ``results.json`` into one row per network
(metric mean and sample standard deviation over seeds, costs, median step time, peak step
memory); :func:`write` writes ``table_<task>.md`` per task, ``tables.md`` with all of them,
and ``metric_vs_gflops.png``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMES = {
    "full": "Full",
    "random": "Random NP",
    "layerwise": "Layer-wise NP",
    "vanilla": "Vanilla NP",
    "weighted": "Weighted NP",
    "ranp-m": "RANP-m",
    "ranp-f": "RANP-f",
}
GROUPS = ("main", "high", "equal-flops", "scale", "transfer")


@dataclass(frozen=True)
class Row:
    """One network over its seeds."""

    group: str
    method: str
    variant: str
    note: str
    sparsity: float
    params_mb: float
    gflops: float
    memory_mb: float
    metric_mean: float
    metric_std: float
    seeds: int
    step_ms: float
    peak_step_mb: float

    @property
    def name(self) -> str:
        """The method's display name, with its variant."""
        base = NAMES.get(self.method, self.method)
        return f"{base} ({self.variant})" if self.variant else base


def environment() -> dict[str, str]:
    """Versions and hardware, for the record."""
    import numpy
    import onnx
    import onnxruntime
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "ranp_onnx_commit": commit,
        "machine": f"{platform.machine()}, {_cpu_name()}, torch threads {torch.get_num_threads()}",
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def summarise(entry: Mapping[str, Any]) -> list[Row]:
    """One row per network of a task entry (its costs and its runs over seeds)."""
    runs: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for run in entry["runs"]:
        runs.setdefault((run["group"], run["method"], run["variant"]), []).append(run)
    rows = []
    for network in entry["networks"]:
        seeds = runs.get((network["group"], network["method"], network["variant"]), [])
        metrics = [float(s["metric"]) for s in seeds]
        nan = float("nan")
        rows.append(
            Row(
                group=network["group"],
                method=network["method"],
                variant=network["variant"],
                note=network["note"],
                sparsity=float(network["neuron_sparsity"]),
                params_mb=float(network["params_mb"]),
                gflops=float(network["gflops"]),
                memory_mb=float(network["memory_mb"]),
                metric_mean=statistics.fmean(metrics) if metrics else nan,
                metric_std=statistics.stdev(metrics) if len(metrics) > 1 else nan,
                seeds=len(metrics),
                step_ms=1000 * statistics.median(float(s["step_seconds"]) for s in seeds)
                if seeds
                else nan,
                peak_step_mb=statistics.fmean(float(s["peak_step_mb"]) for s in seeds)
                if seeds
                else nan,
            )
        )
    return rows


def _reduced(value: float, full: float | None, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if full:
        text += f" ({100 * (1 - value / full):.1f}↓)"
    return text


def _gflops_digits(value: float) -> int:
    return 3 if value >= 0.1 else 4


def table(rows: Sequence[Row], full: Row | None, metric: str) -> list[str]:
    """A Markdown table in Table II's columns, plus measured step time and memory."""
    lines = [
        f"| Method | Neuron sparsity (%) | Param (MB) | GFLOPs | Memory (MB) | {metric} "
        "| Step time (ms) | Step peak memory (MB) | Note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        base = None if row is full else full
        std = "n/a" if math.isnan(row.metric_std) else f"{row.metric_std:.2f}"
        metric_text = "not trained" if not row.seeds else f"{row.metric_mean:.2f} ± {std}"
        step = "-" if not row.seeds else f"{row.step_ms:.0f}"
        peak = "-" if not row.seeds else f"{row.peak_step_mb:.1f}"
        lines.append(
            f"| {row.name} | {100 * row.sparsity:.2f} "
            f"| {_reduced(row.params_mb, base.params_mb if base else None, 3)} "
            f"| {_reduced(row.gflops, base.gflops if base else None, _gflops_digits(row.gflops))} "
            f"| {_reduced(row.memory_mb, base.memory_mb if base else None, 2)} "
            f"| {metric_text} | {step} | {peak} "
            f"| {row.note} |"
        )
    return lines


def task_section(name: str, entry: Mapping[str, Any]) -> list[str]:
    """All tables of one task."""
    rows = summarise(entry)
    metric = entry["metric"]
    by_group = {group: [r for r in rows if r.group == group] for group in GROUPS}
    full = next((r for r in by_group["main"] if r.method == "full"), None)
    ranp_f = next((r for r in by_group["main"] if r.method == "ranp-f"), None)
    seeds = max((r.seeds for r in rows), default=0)
    lines = [f"## {name}: {entry['title']}", ""]
    budget = entry["budget"]
    lines += [
        f"Training: {budget['epochs']} epochs, batch {budget['batch_size']}, "
        f"{budget['optimizer']} lr {budget['learning_rate']} (cosine), "
        f"weight decay {budget['weight_decay']}; {entry['counts']['train']} training and "
        f"{entry['counts']['test']} test samples; scored with the first "
        f"{entry['counts']['score']} training samples. {metric}: mean ± std over {seeds} "
        'seeds. Costs at batch 1, paper convention (`count_costs(..., "ranp-paper")`).',
        "",
    ]
    if by_group["main"]:
        lines += [
            f"### At neuron sparsity {100 * entry['sparsity']:.0f}%",
            "",
            *table(by_group["main"], full, metric),
            "",
            f"### At the higher neuron sparsity {100 * entry['high_sparsity']:.1f}%",
            "",
            *table(by_group["high"], full, metric),
            "",
            "### At RANP-f's GFLOPs (the paper's Table III comparison)",
            "",
            *table([*by_group["equal-flops"], *([ranp_f] if ranp_f else [])], full, metric),
            "",
        ]
    lines += [
        "### Largest feasible neuron sparsity (Algorithm 2)",
        "",
        "| Method | Max sparsity (%) |",
        "|---|---:|",
        *(
            f"| {name} | {100 * entry['max_sparsity'][m]:.2f} |"
            for m, name in NAMES.items()
            if m in entry["max_sparsity"]
        ),
        "",
    ]
    if by_group["scale"]:
        shape = "x".join(map(str, entry["scale_shape"]))
        scale_full = next((r for r in by_group["scale"] if r.method == "full"), None)
        lines += [f"### Scalability: trained at input {shape}", ""]
        lines += [*table(by_group["scale"], scale_full, metric), ""]
    if by_group["transfer"]:
        own = [
            dataclasses.replace(r, group="transfer", variant="scored on own data")
            for r in by_group["main"]
            if r.method in {row.method for row in by_group["transfer"]}
        ]
        lines += [
            f"### Transferability: scored with {entry.get('transfer_data', 'other')} data",
            "",
        ]
        lines += [*table(sorted([*own, *by_group["transfer"]], key=_method_order), full, metric)]
        lines += [""]
    elif "transfer" in entry:
        lines += [f"Transferability: {entry['transfer']}", ""]
    return lines


def _method_order(row: Row) -> tuple[int, str]:
    return list(NAMES).index(row.method), row.variant


def plot(results: Mapping[str, Any], path: Path) -> bool:
    """Metric against GFLOPs, one panel per task, error bars = std over seeds.

    Only the main comparison is drawn (the scalability runs are at another input size);
    returns False, writing nothing, when no task has one (``--no-main``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = {
        name: entry
        for name, entry in results["tasks"].items()
        if any(run["group"] == "main" for run in entry["runs"])
    }
    if not tasks:
        return False
    figure, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.8), squeeze=False)
    markers = {"main": "o", "high": "^", "equal-flops": "s"}
    colours = {m: f"C{i}" for i, m in enumerate(NAMES)}
    for axis, (name, entry) in zip(axes[0], tasks.items()):
        for row in summarise(entry):
            if row.group not in markers or not row.seeds:
                continue
            axis.errorbar(
                row.gflops,
                row.metric_mean,
                yerr=0 if math.isnan(row.metric_std) else row.metric_std,
                fmt=markers[row.group],
                color=colours[row.method],
                capsize=3,
                label=f"{row.name}, {row.group}",
            )
        axis.set_xscale("log")
        axis.set_xlabel("GFLOPs per sample (paper convention, log scale)")
        axis.set_ylabel(entry["metric"])
        axis.set_title(
            f"{name}: o {100 * entry['sparsity']:.0f}%, "
            f"^ {100 * entry['high_sparsity']:.1f}%, s equal GFLOPs"
        )
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write(results: Mapping[str, Any], folder: Path) -> None:
    """Write the per-task tables, ``tables.md`` and the plot."""
    everything = []
    for name, entry in results["tasks"].items():
        lines = task_section(name, entry)
        (folder / f"table_{name}.md").write_text("\n".join(lines))
        everything += lines
    (folder / "tables.md").write_text("\n".join(everything))
    path = folder / "metric_vs_gflops.png"
    if not plot(results, path):
        path.unlink(missing_ok=True)
