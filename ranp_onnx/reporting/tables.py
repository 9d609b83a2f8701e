"""Stage 7, report: cost reports as readable tables, side-by-side comparisons and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.costs import CostReport, LayerCost
from .profiling import Measurement

_TOTAL_ROWS = (
    ("params (MB)", "params_mb"),
    ("GFLOPs", "gflops"),
    ("memory (MB)", "memory_mb"),
    ("peak memory (MB)", "peak_memory_mb"),
    ("GMACs", "gmacs"),
)


def reduction_percent(before: float, after: float) -> float | None:
    """Return the reduction from ``before`` to ``after`` in percent (None if before is 0)."""
    return (1.0 - after / before) * 100.0 if before else None


def _shape(shape: Sequence[int] | None) -> str:
    return "x".join(map(str, shape)) if shape is not None else "?"


def _layer_row(index: int, layer: LayerCost) -> list[str]:
    geometry = layer.geometry
    channels = ""
    if geometry is not None and geometry.channels_in is not None:
        channels = f"{geometry.channels_in}->{geometry.channels_out}"
    kernel = _shape(geometry.kernel) if geometry is not None and geometry.kernel else ""
    strides = _shape(geometry.strides) if geometry is not None and geometry.strides else ""
    groups = str(geometry.groups) if geometry is not None and geometry.groups else ""
    return [
        str(index),
        layer.name,
        layer.op_type,
        _shape(layer.output_shapes[0] if layer.output_shapes else None),
        channels,
        kernel,
        strides,
        groups,
        f"{layer.params:,}" if layer.params else "",
        f"{layer.flops / 1e9:.4f}" if layer.flops else "",
        f"{layer.memory_bytes / float(1 << 20):.2f}" if layer.memory_bytes else "",
    ]


def format_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Render rows as aligned columns under a header; columns in ``right`` align right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _total(report: CostReport, key: str) -> float:
    if key == "gmacs":
        return report.totals.macs / 1e9
    value: float = getattr(report.totals, key)
    return value


def _headline(report: CostReport) -> str:
    shapes = ", ".join(f"{name}={_shape(shape)}" for name, shape in report.input_shapes.items())
    return f"model: {report.model}   convention: {report.convention}   inputs: {shapes}"


def format_report(report: CostReport, measurement: Measurement | None = None) -> str:
    """Render a per-layer table and the totals."""
    header = [
        "#",
        "node",
        "op",
        "output",
        "channels",
        "kernel",
        "stride",
        "groups",
        "params",
        "GFLOPs",
        "memory MB",
    ]
    rows = [_layer_row(i, layer) for i, layer in enumerate(report.layers)]
    totals = report.totals
    lines = [
        _headline(report),
        "",
        format_table(header, rows, right={0, 8, 9, 10}),
        "",
        f"params        {totals.params:,} ({totals.params_mb:.2f} MB)",
        f"GFLOPs        {totals.gflops:.2f}   (GMACs {totals.macs / 1e9:.2f})",
        f"memory        {totals.memory_mb:.2f} MB   (peak live {totals.peak_memory_mb:.2f} MB)",
    ]
    if report.uncounted:
        listed = ", ".join(f"{op} x{n}" for op, n in report.uncounted.items())
        lines.append(
            f"not counted   {listed}: no cost rule, their FLOPs are missing from the totals"
        )
    if measurement is not None:
        lines.append(_measurement_line(measurement))
        shares = measurement.op_shares()
        if shares:
            named = [f"{op} {100 * share:.0f}%" for op, share in list(shares.items())[:_TOP_OPS]]
            rest = sum(list(shares.values())[_TOP_OPS:])
            if rest > 0:
                named.append(f"others {100 * rest:.0f}%")
            lines.append(f"time by op    {', '.join(named)} (of the kernel time)")
    return "\n".join(lines)


def _measurement_line(measurement: Measurement) -> str:
    peak = (
        f"{measurement.arena_peak_mb:.2f} MB"
        if measurement.arena_peak_mb is not None
        else "not reported"
    )
    return (
        f"measured      {measurement.median_ms:.2f} ms median of {measurement.runs} runs, "
        f"arena peak {peak} ({measurement.provider})"
    )


def format_comparison(
    before: CostReport,
    after: CostReport,
    measured: tuple[Measurement, Measurement] | None = None,
) -> str:
    """Render two models side by side with reductions in %, as the paper's tables do."""
    header = ["", before.model, after.model, "reduction"]
    rows = []
    for label, key in _TOTAL_ROWS:
        a, b = _total(before, key), _total(after, key)
        reduction = reduction_percent(a, b)
        rows.append(
            [label, f"{a:.2f}", f"{b:.2f}", f"{reduction:.1f}%" if reduction is not None else "-"]
        )
    if measured is not None:
        for label, attr in (("latency (ms)", "median_ms"), ("arena peak (MB)", "arena_peak_mb")):
            a_value, b_value = getattr(measured[0], attr), getattr(measured[1], attr)
            if a_value is None or b_value is None:
                continue
            reduction = reduction_percent(a_value, b_value)
            rows.append(
                [
                    label,
                    f"{a_value:.2f}",
                    f"{b_value:.2f}",
                    f"{reduction:.1f}%" if reduction is not None else "-",
                ]
            )
    lines = [f"convention: {before.convention}", "", format_table(header, rows, right={1, 2, 3})]
    if measured is not None and measured[0].op_ms and measured[1].op_ms:
        lines += ["", *op_time_lines(*measured)]
    changed = _changed_layers(before, after)
    if changed:
        lines += [
            "",
            format_table(
                ["node", "op", "channels before", "channels after"], changed, right={2, 3}
            ),
        ]
    return "\n".join(lines)


#: Operator types listed by name in the time breakdowns; the rest are summed.
_TOP_OPS = 6

#: An operator type whose time in the pruned model is at least this share of its time in
#: the original did not get (much) faster: less than 1.33x, within the noise of a run.
_UNCHANGED = 0.75


def op_time_lines(before: Measurement, after: Measurement) -> list[str]:
    """Kernel time by operator type side by side, and what the ops pruning missed bound.

    Args:
        before: The original model's measurement.
        after: The pruned model's measurement.

    Returns:
        A table (ms per run; the speedup of each op type), and a line
        naming the op types that got less than 1.33x faster, with their speedups, when they
        take a tenth or more of the pruned model's time, and the speedup they cap the model
        at: the original's latency over the pruned model's latency spent in them.
    """
    ops = sorted(
        set(before.op_ms) | set(after.op_ms),
        key=lambda op: -max(before.op_ms.get(op, 0.0), after.op_ms.get(op, 0.0)),
    )
    rows = []
    for op in ops[:_TOP_OPS]:
        a, b = before.op_ms.get(op, 0.0), after.op_ms.get(op, 0.0)
        rows.append([op, f"{a:.2f}", f"{b:.2f}", f"{a / b:.1f}x" if a and b else "-"])
    if len(ops) > _TOP_OPS:
        a = sum(before.op_ms.get(op, 0.0) for op in ops[_TOP_OPS:])
        b = sum(after.op_ms.get(op, 0.0) for op in ops[_TOP_OPS:])
        rows.append(["others", f"{a:.2f}", f"{b:.2f}", f"{a / b:.1f}x" if a and b else "-"])
    lines = [
        "kernel time by op (ms per run, median of profiled runs)",
        format_table(["op", "before", "after", "speedup"], rows, right={1, 2, 3}),
    ]
    shares = after.op_shares()
    unchanged = [
        op
        for op in after.op_ms
        if before.op_ms.get(op, 0.0) > 0 and after.op_ms[op] >= _UNCHANGED * before.op_ms[op]
    ]
    share = sum(shares[op] for op in unchanged)
    if share >= 0.1 and after.median_ms > 0:
        bound = before.median_ms / (after.median_ms * share)
        named = ", ".join(f"{op} ({before.op_ms[op] / after.op_ms[op]:.1f}x)" for op in unchanged)
        lines.append(
            f"not faster    {named} {'takes' if len(unchanged) == 1 else 'take'} "
            f"{100 * share:.0f}% of the pruned model's time: with "
            f"{'it' if len(unchanged) == 1 else 'them'}, at most {bound:.1f}x faster than the "
            "original here"
        )
    return lines


def _changed_layers(before: CostReport, after: CostReport) -> list[list[str]]:
    remaining = {layer.name: layer for layer in after.layers}
    rows = []
    for layer in before.layers:
        other = remaining.get(layer.name)
        if other is None or layer.geometry is None or other.geometry is None:
            continue
        if (layer.geometry.channels_in, layer.geometry.channels_out) != (
            other.geometry.channels_in,
            other.geometry.channels_out,
        ):
            rows.append(
                [
                    layer.name,
                    layer.op_type,
                    f"{layer.geometry.channels_in}->{layer.geometry.channels_out}",
                    f"{other.geometry.channels_in}->{other.geometry.channels_out}",
                ]
            )
    return rows


def comparison_json(before: CostReport, after: CostReport) -> dict[str, Any]:
    """The ``report --compare --json`` document.

    The report of ``after`` (the model the command names) with two more keys: ``compare``,
    the report of ``before``, and ``reduction_percent`` of each total.
    """
    reductions = {
        key: reduction_percent(_total(before, key), _total(after, key)) for _, key in _TOTAL_ROWS
    }
    return {**after.to_json(), "compare": before.to_json(), "reduction_percent": reductions}
