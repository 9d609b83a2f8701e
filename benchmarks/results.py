"""Render the measurements as ``RESULTS.md``: tables, ratios and the targets met or missed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _verdict(value: float, limit: float, *, at_most: bool = True) -> str:
    met = value <= limit if at_most else value >= limit
    return "**met**" if met else "**missed**"


def _pipeline(result: dict[str, Any]) -> list[str]:
    case = result["case"]
    total = result["total"].median
    lines = [
        "## (a) Prune pipeline against plain torch forward+backward passes",
        "",
        f"3D-UNet-15, ShapeNet preset, width x{case.width:g}, "
        f"input {'x'.join(map(str, case.shape))}, "
        f"batch 1, {case.batches} batches, RANP-f at sparsity {case.sparsity:g}; torch uses "
        f"{result['threads']} threads. Seconds, median (+-half range, runs).",
        "",
        "| stage | seconds | share of prune |",
        "|---|---|---|",
    ]
    for stage, timing in result["stages"].items():
        lines.append(f"| {stage} | {timing.text()} | {100 * timing.median / total:.1f}% |")
    native, evaluator = result["native"], result["evaluator"]
    ratio, eval_ratio = result["total_ratio"], result["evaluator_ratio"]
    lines += [
        f"| **prune total** | {result['total'].text()} | 100% |",
        "",
        f"- one native torch forward+backward pass: {native.text()} s; "
        f"{case.batches} passes: {case.batches * native.median:.3g} s",
        f"- one graph-evaluator (TorchGraph) forward+backward pass: {evaluator.text()} s",
        f"- prune total / {case.batches} native passes: **{ratio.text()}** (target <= 1.3: "
        f"{_verdict(ratio.median, 1.3)})",
        f"- graph evaluator / native torch, forward+backward: **{eval_ratio.text()}** "
        f"(target <= 1.15: {_verdict(eval_ratio.median, 1.15)})",
    ]
    others = {k: v.median for k, v in result["stages"].items() if k != "gradient passes"}
    worst = max(others, key=lambda k: others[k])
    lines.append(
        f"- outside the gradient passes the largest stage is {worst} "
        f"({others[worst]:.3g} s, {others[worst] / native.median:.2f} native passes)"
    )
    return [*lines, ""]


def _scale(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## (b) Analysis and rewrite on generated graphs",
        "",
        "Conv+Relu blocks (8 channels, 4^3), a residual Add every second block, a Concat with "
        "the block input and a 1x1x1 Conv every third. Analysis = shapes + costs + channel "
        "groups; rewrite = random selection at 0.5, constraints, rewrite.",
        "",
        "| convs | nodes | analysis s | rewrite s | total s | ms per conv |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['convs']} | {row['nodes']} | {row['analysis'].text()} | "
            f"{row['rewrite'].text()} | {row['total'].text()} | {row['per_conv_ms'].text()} |"
        )
    at_2000 = [row for row in rows if row["convs"] == 2000]
    if at_2000:
        total = at_2000[0]["total"].median
        lines += ["", f"- 2000 convs: {total:.2f} s (target < 5 s: {_verdict(total, 5.0)})"]
    return [*lines, ""]


def _inference(rows: list[dict[str, Any]]) -> list[str]:
    full = rows[0]
    openvino = "openvino" in full
    header = ["model", "neuron sparsity", "latency ms", "speedup", "FLOPs factor"]
    header += ["speedup / FLOPs factor", "arena MB", "arena factor", "activation-memory factor"]
    if openvino:
        header += ["OpenVINO ms", "OpenVINO speedup"]
    lines = [
        "## (c) Full against pruned inference in onnxruntime",
        "",
        f"Provider: {full['provider']}. Latency in ms, median (+-half range, runs); the arena "
        "peak as `report --measure` reads it (initializers in the arena included). FLOPs and "
        "activation memory counted by ranp-onnx (`standard`). RANP-f scored on the first batch. "
        "Each speedup and factor is against the full model; the logits rows against the full "
        "model's logits."
        + (" OpenVINO: its CPU plugin, latency hint, f32, the same inputs." if openvino else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        speedup = row["speedup"].median
        cells = [
            row["model"],
            f"{row['neuron_sparsity']:.4f}",
            row["latency"].text(1e3),
            "1" if row.get("baseline") else row["speedup"].text(),
            f"{row['flops_factor']:.1f}",
            f"{speedup / row['flops_factor']:.2f}",
            f"{row['arena_mb']:.0f}",
            f"{row['arena_factor']:.2f}",
            f"{row['memory_factor']:.2f}",
        ]
        if openvino:
            baseline = row.get("baseline")
            cells += [
                row["openvino"].text(1e3),
                "1" if baseline else row["openvino_speedup"].text(),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", *_inference_verdict(rows), ""]


def _inference_verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The target at 0.8, where the pruned model's time goes, and what bounds it."""
    from ranp_onnx.reporting.profiling import Measurement
    from ranp_onnx.reporting.tables import op_time_lines

    at = {row["model"]: row for row in rows}
    if "0.8" not in at:
        return []
    full, pruned = rows[0], at["0.8"]
    flops, speedup = pruned["flops_factor"], pruned["speedup"].median
    lines = [
        f"- at 0.8: speedup {speedup:.2f} against a FLOPs factor of {flops:.1f}: the target "
        f"(speedup >= half the FLOPs factor, {flops / 2:.1f}) is "
        f"{_verdict(speedup, flops / 2, at_most=False)}",
    ]
    if "openvino_speedup" in pruned:
        value = pruned["openvino_speedup"].median
        lines.append(
            f"- in OpenVINO at 0.8: speedup {value:.2f} ({value / flops:.2f} of the FLOPs factor)"
        )
    if "0.8, logits" in at:
        cut = at["0.8, logits"]
        value = cut["speedup"].median
        lines.append(
            f"- without the final Softmax (logits) at 0.8: speedup {value:.2f} against a FLOPs "
            f"factor of {cut['flops_factor']:.1f} ({value / cut['flops_factor']:.2f})"
        )
    if full.get("convs") and pruned.get("convs"):
        lines += ["", *_conv_lines(full, pruned)]
    if full["op_ms"] and pruned["op_ms"]:
        before, after = (
            Measurement(
                row["provider"],
                len(row["latency"].values),
                row["latency"].median * 1e3,
                None,
                row["op_ms"],
            )
            for row in (full, pruned)
        )
        lines += [
            "",
            "Where the time goes, full against 0.8 in onnxruntime, as "
            "`ranp-onnx report PRUNED --compare FULL --measure` prints it:",
            "",
            "```",
            *op_time_lines(before, after),
            "```",
        ]
    return lines


def _conv_lines(full: dict[str, Any], pruned: dict[str, Any]) -> list[str]:
    """The convolutions that take longest in the full model: MACs against time, both cut."""
    before, after = full["convs"], pruned["convs"]
    names = sorted(set(before) & set(after), key=lambda name: -before[name]["ms"])
    lines = [
        "The six convolutions that take longest in the full model, 0.8 (onnxruntime kernel "
        "time, median of 3 profiled runs):",
        "",
        "| node | channels | MACs factor | ms full | ms 0.8 | time factor |",
        "|---|---|---|---|---|---|",
    ]
    for name in names[:6]:
        a, b = before[name], after[name]
        lines.append(
            f"| {name} | {a['channels']} -> {b['channels']} | {a['macs'] / b['macs']:.1f} | "
            f"{a['ms']:.3g} | {b['ms']:.3g} | {a['ms'] / b['ms']:.1f} |"
        )
    conv_ms = sum(item["ms"] for item in after.values())
    total = full["latency"].median * 1e3
    lines += [
        "",
        f"- every convolution of the 0.8 model together: {conv_ms:.0f} ms in its kernels; "
        f"the full model's latency over that: {total / conv_ms:.1f}x, what the 0.8 model "
        "would reach if every other op took no time at all",
    ]
    return lines


def _memory(result: dict[str, Any]) -> list[str]:
    ratio = result["ratio"]
    return [
        "## (d) Peak resident memory: prune against a torch training step",
        "",
        "Each in its own process, `ru_maxrss`: `ranp-onnx prune` on one batch (scoring, "
        "rewrite, validation, writing) and one training step of the original torch module "
        "at the same batch (batch 1).",
        "",
        f"- prune: {result['prune_mb']:.0f} MB ({result['prune_s']:.1f} s)",
        f"- torch training step: {result['train_step_mb']:.0f} MB",
        f"- ratio: **{ratio:.2f}** (target <= 1.5: {_verdict(ratio, 1.5)})",
        f"- scoring passes alone: {result['scoring_mb']:.0f} MB resident; the estimate of the "
        "tensors scoring holds (`ranp_onnx.scoring.memory`, without the interpreter and "
        f"libraries) says {result['estimate_mb']:.0f} MB",
        "",
    ]


def _comparison(rows: list[dict[str, Any]] | None) -> list[str]:
    from .torch_pruning_compare import monotone

    lines = ["## (e) Torch-Pruning (global Taylor) against RANP-f", ""]
    if rows is None:
        return [*lines, "torch-pruning is not installed (`pip install -e '.[bench]'`).", ""]
    full = rows[0]
    lines += [
        f"Full model: {full['full_gflops']:.2f} GFLOPs, {full['full_memory_mb']:.0f} MB "
        "activation memory (`standard`). Time to prune: one gradient pass on one batch "
        "plus the pruning; RANP-f's scoring pass is shared by its three sparsities and "
        "counted in each.",
        "",
        "| tool | sparsity asked | neuron sparsity | GFLOPs (factor) | memory MB (factor) | "
        "seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['tool']} | {row['sparsity']:g} | {row['neuron_sparsity']:.4f} | "
            f"{row['gflops']:.3f} ({row['full_gflops'] / row['gflops']:.1f}x) | "
            f"{row['memory_mb']:.1f} ({row['full_memory_mb'] / row['memory_mb']:.2f}x) | "
            f"{row['seconds']:.1f} |"
        )
    lines.append("")
    for tool in ("RANP-f", "Torch-Pruning Taylor"):
        flags = [monotone(rows, tool, key) for key in ("gflops", "memory_mb")]
        lines.append(
            f"- {tool}: FLOPs {'monotone' if flags[0] else '**not monotone**'}, memory "
            f"{'monotone' if flags[1] else '**not monotone**'} in the sparsity"
        )
    return [*lines, ""]


def _brats(result: dict[str, Any]) -> list[str]:
    shape = "x".join(map(str, result["shape"]))
    return [
        "## (f) The full-width BraTS 3D-UNet-15 pruned on CPU",
        "",
        "`ranp-onnx export unet3d-15 --preset brats --input-shape "
        f"{','.join(map(str, result['shape']))}`, "
        f"then `ranp-onnx prune` on one batch of 1 x {shape} at sparsity 0.8, `--device cpu`.",
        "",
        f"- peak resident memory: **{result['peak_rss_mb'] / 1024:.2f} GB**; wall time "
        f"{result['seconds']:.0f} s",
        f"- the estimate before scoring: {result['estimate_mb'] / 1024:.2f} GB; memory "
        f"available at the end: {result['available_mb'] / 1024:.1f} GB",
        "",
    ]


def _training(result: dict[str, Any]) -> list[str]:
    from .training_payoff import render_training

    return render_training(result)


def _blocks(text: str) -> tuple[str, dict[str, str]]:
    """Split a results file into its header and its ``## `` sections, keyed by heading."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    return parts[0], {part.splitlines()[0]: part for part in parts[1:]}


def merge(old: str, new: str, command: str, info: dict[str, str]) -> str:
    """The old results with the sections of ``new`` put in, and a header line saying so."""
    header, blocks = _blocks(old)
    _, fresh = _blocks(new)
    measured = [key for key in fresh if key.startswith("## (")]
    for key, block in fresh.items():
        blocks[key] = block if block.endswith("\n\n") else block.rstrip("\n") + "\n\n"
    names = ", ".join(key[3:6] for key in measured)
    header = header.rstrip("\n") + (
        f"\n\n{'Sections' if len(measured) > 1 else 'Section'} {names} "
        f"{'were' if len(measured) > 1 else 'was'} measured again by `{command}` "
        f"(load at start {info['load at start']}, at end {info['load at end']}, "
        f"wall time {info['wall time']}).\n\n"
    )
    ordered = sorted(blocks, key=lambda key: (not key.startswith("## ("), key))
    return header + "".join(blocks[key] for key in ordered)


def render(command: str, info: dict[str, str], sizes: Any, results: dict[str, Any]) -> str:
    """The whole results file."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench`. Every number below was measured by the command below, "
        "except the sections a line under the table names as measured again, and the notes "
        "at the end, which give their own commands.",
        "",
        f"Command: `{command}`",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        "",
    ]
    renderers: dict[str, Callable[[Any], list[str]]] = {
        "a": _pipeline,
        "b": _scale,
        "c": _inference,
        "d": _memory,
        "e": _comparison,
        "f": _brats,
        "g": _training,
    }
    for key, function in renderers.items():
        if key in results:
            lines += function(results[key])
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines)
