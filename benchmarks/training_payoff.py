"""(g), the payoff: a training step's time and peak memory, pruned against full.

The ShapeNet 3D-UNet-15 at 64^3 and the BraTS one at 128^3, at RANP-f 0.5 / 0.8 and 0.8
with ``--round-to 8`` (the plan made at a scoring size, applied at the training size as
``ranp-onnx apply`` does), beside the FLOPs factor, and the largest batch whose predicted
step fits a budget: the paper's "fast training with increased batch size", in numbers.
:func:`run_training` and :func:`render_training` are section (g) of ``benchmarks.run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx
import torch

from ranp_onnx.analysis.training_memory import (
    TrainingSetup,
    predict_training_memory,
    training_graph,
)
from ranp_onnx.ir.units import GB
from ranp_onnx.pipeline import PruneOptions, apply_plan

from .training import compare_step, pruned_models, ratio_lines, run_ratios


def largest_batch(
    model: onnx.ModelProto, setup: TrainingSetup, budget: int, limit: int = 512
) -> int:
    """The largest batch whose predicted step fits ``budget`` (0 if not even 1 does)."""

    def fits(batch: int) -> bool:
        graph = training_graph(model, batch=batch)
        return predict_training_memory(graph, setup).peak_bytes <= budget

    if not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, 2 * high
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@dataclass(frozen=True)
class PayoffCase:
    """One model of the payoff table.

    Attributes:
        title: Its name in the table.
        preset: The zoo preset.
        shape: The training patch (C, D, H, W).
        score_shape: The patch RANP-f scores at (the plan is applied at ``shape``).
        batch: The training batch predicted at.
        measure_batch: The batch a real step is measured at (None: not measured).
        width: Width multiplier.
        sparsities: RANP-f sparsities.
        round_to: Also 0.8 with ``--round-to 8``.
        measured: The variants measured (None: all).
    """

    title: str
    preset: str
    shape: tuple[int, int, int, int]
    score_shape: tuple[int, int, int, int]
    batch: int
    measure_batch: int | None
    width: float = 1.0
    sparsities: tuple[float, ...] = (0.5, 0.8)
    round_to: bool = True
    measured: tuple[str, ...] | None = None


def payoff_cases(quick: bool) -> list[PayoffCase]:
    """The ShapeNet UNet at 64^3 and the BraTS one at 128^3 (a tiny one with ``quick``)."""
    if quick:
        tiny = (1, 16, 16, 16)
        return [
            PayoffCase(
                "ShapeNet 3D-UNet-15 x0.125", "shapenet", tiny, tiny, 2, 2, 0.125, (0.8,), False
            )
        ]
    return [
        PayoffCase("ShapeNet 3D-UNet-15", "shapenet", (1, 64, 64, 64), (1, 64, 64, 64), 2, 2),
        PayoffCase(
            "BraTS 3D-UNet-15",
            "brats",
            (4, 128, 128, 128),
            (4, 64, 64, 64),
            2,
            1,
            measured=("full", "0.8"),
        ),
    ]


def run_payoff(quick: bool, budget: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Full against pruned: FLOPs factor, predicted and measured peak, step time, batch."""
    from ranp_onnx.analysis.costs import count_costs

    rows = []
    setup = TrainingSetup(optimizer="adam")
    for case in payoff_cases(quick):
        full, small = _exported(case, case.shape), _exported(case, case.score_shape)
        plans = {key: r.plan for key, r in pruned_models(small, case.sparsities).items()}
        rounded = pruned_models(small, (0.8,), round_to=8) if case.round_to else {}
        if "0.8" in rounded:
            plans["0.8 --round-to 8"] = rounded["0.8"].plan
        full_flops = count_costs(training_graph(full, batch=case.batch)).totals.flops
        for variant in ("full", *plans):
            log(f"  {case.title}: {variant}")
            large = full
            if variant != "full":  # the plan made at the scoring size, applied at this one
                options = PruneOptions(validate=False)
                large = apply_plan(
                    training_graph(full, batch=1), plans[variant], options=options
                ).model
            graph = training_graph(large, batch=case.batch)
            row = {
                "model": case.title, "variant": variant, "batch": case.batch,
                "shape": case.shape, "flops_factor": full_flops / count_costs(graph).totals.flops,
                "predicted": predict_training_memory(graph, setup).peak_bytes,
                "largest_batch": largest_batch(large, setup, budget),
            }  # fmt: skip
            if case.measure_batch is not None and variant in (case.measured or (variant,)):
                start = time.perf_counter()
                row["measured"] = compare_step(large, case.measure_batch, setup, timed_steps=1)
                row["measure_batch"] = case.measure_batch
                log(f"    measured in {time.perf_counter() - start:.0f} s")
            rows.append(row)
    return rows


def _exported(case: PayoffCase, shape: tuple[int, ...]) -> onnx.ModelProto:
    from ranp_onnx.zoo import build_model, export_built

    built = build_model("unet3d-15", preset=case.preset, width_mult=case.width, input_shape=shape)
    return export_built(built)


def run_training(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Section (g): the ratios and the payoff."""
    budget = (64 << 20) if quick else (11 << 30)
    return {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "budget": budget,
        "ratios": run_ratios(quick, log),
        "payoff": run_payoff(quick, budget, log),
    }


def render_training(result: dict[str, Any]) -> list[str]:
    """The section's Markdown."""
    return [*ratio_lines(result), "", *payoff_lines(result["payoff"], result["budget"]), ""]


def payoff_lines(rows: list[dict[str, Any]], budget: int) -> list[str]:
    """The payoff table."""
    lines = [
        "Payoff: Adam, float32. The plan is made by RANP-f at the scoring size and applied "
        "at the training size (`ranp-onnx apply`). Predicted peak at the training batch; "
        "measured peak and step time (one timed step after the measured one) at the batch "
        f"named; largest batch: the largest whose predicted step fits {budget / GB:g} GB.",
        "",
        "| model | variant | FLOPs factor | predicted GB | measured GB (batch) | ratio | "
        "step s | speedup | largest batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fulls = {row["model"]: row for row in rows if row["variant"] == "full"}
    for row in rows:
        shape = "x".join(map(str, row["shape"]))
        measured = row.get("measured")
        full = fulls[row["model"]].get("measured")
        if measured:
            speedup = full["seconds"] / measured["seconds"] if full else float("nan")
            cells = (
                f"{measured['measured'] / GB:.3f} ({row['measure_batch']}) | "
                f"{measured['ratio']:.3f} | {measured['seconds']:.1f} | {speedup:.2f}x"
            )
        else:
            cells = "- | - | - | -"
        lines.append(
            f"| {row['model']} {shape} batch {row['batch']} | {row['variant']} | "
            f"{row['flops_factor']:.1f} | {row['predicted'] / GB:.3f} | {cells} | "
            f"{row['largest_batch']} |"
        )
    return lines
