"""What ``ranp-onnx regularize`` prints: the progress line and the summary under the table."""

from __future__ import annotations

import time
from typing import Any

import click

#: Seconds between progress lines when stderr is not a terminal (a log file).
LOG_PERIOD = 60.0
#: Seconds between rewrites of the progress line on a terminal.
TERMINAL_PERIOD = 0.25


class ProgressLine:
    """The progress line on stderr: rewritten in place on a terminal, a line a minute in a log."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.last = 0.0
        self.phase = ""

    def __call__(self, progress: Any) -> None:
        """Show a :class:`~ranp_onnx.regularization.loop.RunProgress` if it is time to."""
        now = time.monotonic()
        period = TERMINAL_PERIOD if self.terminal else LOG_PERIOD
        new_phase = progress.phase != self.phase
        if not new_phase and now - self.last < period:
            return
        if new_phase and self.phase and self.terminal:
            click.echo("", err=True)
        self.last, self.phase = now, progress.phase
        text = format_progress(progress)
        if self.terminal:
            click.echo(f"\r{text:<100}", err=True, nl=False)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        """End the terminal line."""
        if self.terminal and self.phase:
            click.echo("", err=True)


def format_progress(progress: Any) -> str:
    """One progress line: phase, iteration, loss, groups removed, coefficients, time left."""
    of = f"/{progress.limit}" if progress.limit is not None else ""
    parts = [
        f"{progress.phase:<10}",
        f"iteration {progress.iteration}{of}",
        f"loss {progress.loss:.4f}",
    ]
    if progress.phase == "regularize":
        low, high = progress.coefficients
        parts += [
            f"removed {progress.removed}/{progress.due}",
            f"coefficients {low:.2g}..{high:.2g}",
        ]
    if progress.seconds_left is not None:
        parts.append(f"~{_duration(progress.seconds_left)} left")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def summary_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The lines under the comparison: speedup, allocation, removals, iterations, proof."""
    from ..regularization.checkpoint import validation_from_json  # imports torch

    removed = record["removed"]
    allocation = record["allocation"]
    sparse = record["granularity"] == "shape"
    lines = [
        (
            "speedup",
            f"{record['speedup']:.2f}x in FLOPs ({record['before']['gflops']:.4g} -> "
            f"{record['sparse_flops'] / 1e9:.4g} G"
            + (", zero columns not counted, as the paper counts)" if sparse else ")"),
        ),
        (
            "allocation",
            f"{allocation['method']}, pr {allocation['prune_ratio']:.4f} over "
            f"{len(allocation['layers'])} layers: {removed['groups']} of {removed['due']} "
            f"due groups removed ({removed['forced']} before they were gone)",
        ),
    ]
    if removed["max_ratio_to_kept_mean"] is not None:
        lines.append(
            (
                "removed",
                f"groups were at most {removed['max_ratio_to_kept_mean']:.3g} of their layer's "
                "kept mean L1 norm when set to 0 (median "
                f"{removed['median_ratio_to_kept_mean']:.3g})",
            )
        )
    if sparse:
        lines.append(("channels", f"{removed['channels_removed']} removed with all their columns"))
    iterations = record["iterations"]
    lines.append(
        (
            "iterations",
            f"{iterations['regularize']} regularizing, {iterations['finetune']} fine-tuning",
        )
    )
    validation = record["validation"]
    if validation is not None:
        proof = validation_from_json(validation)
        assert proof is not None
        lines.append(("validated", proof.describe()))
    return lines
