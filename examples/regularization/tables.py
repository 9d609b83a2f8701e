"""The reproduction's tables (the paper's Tables 1-3) and its Fig. 4, from ``results.json``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The paper's Table 1: DPR's ratios for C3D's eight convolutions.
PAPER_TABLE1 = {
    "2": [0.5129, 0.5279, 0.4684, 0.5273, 0.4414, 0.4676, 0.4222, 0.4222],
    "4": [0.7694, 0.7918, 0.7026, 0.7909, 0.6621, 0.7015, 0.6333, 0.6333],
}
C3D_LAYERS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
#: The paper's Tables 2 (C3D, UCF101) and 3 (3D-ResNet-18): increased error at 2x and 4x.
PAPER_ERRORS = {
    "c3d": {"TP": (11.50, 21.19), "FP": (4.92, 10.96), "SPR": (3.56, 7.02), "DPR": (3.28, 6.56)},
    "resnet3d-18": {
        "TP": (5.72, 14.24),
        "FP": (1.60, 6.92),
        "SPR": (0.91, 3.50),
        "DPR": (0.41, 2.87),
    },
}
NAMES = {
    "TP": "TP (Taylor, one shot)",
    "FP": "FP (filter L1, one shot)",
    "SPR": "Ours (SPR, channels)",
    "DPR": "Ours (DPR, channels)",
    "DPR shape": "Ours (DPR, columns: the paper's groups)",
    "DPR one-shot": "DPR ratios, lowest L1 removed at once (control)",
    "RANP-f": "RANP-f (at init, DPR's FLOPs, from scratch)",
}


def _row(values: Sequence[float], digits: int = 4) -> str:
    return " | ".join(f"{v:.{digits}f}" for v in values)


def table1(entry: Mapping[str, Any]) -> list[str]:
    """Table 1 beside the paper's."""
    data = entry["table1"]
    header = "| pruning ratio | " + " | ".join(C3D_LAYERS) + " |"
    lines = [header, "|---|" + "---:|" * len(C3D_LAYERS)]
    for speedup in ("2", "4"):
        lines.append(f"| paper, {speedup}x | {_row(PAPER_TABLE1[speedup])} |")
        if "zoo_112" in data:
            zoo = data["zoo_112"][speedup + ".0"]
            lines.append(f"| zoo C3D at 3x16x112x112, {speedup}x | {_row(zoo)} |")
        trained = data["trained"][speedup + ".0"]
        lines.append(f"| trained digits C3D, {speedup}x | {_row(trained)} |")
    if "zoo_112_flops_share" in data:
        lines.append(f"| FLOPs share, zoo at 112 | {_row(data['zoo_112_flops_share'])} |")
    lines.append(f"| FLOPs share, digits C3D | {_row(data['flops_share'])} |")
    return lines


def _errors(runs: Sequence[Mapping[str, Any]], base: float) -> tuple[str, str, str]:
    """Increased error mean ± std, the FLOPs counted, and the regularization steps."""
    trained = [run for run in runs if run["top1"] is not None]
    if not trained:
        note = runs[0]["note"] if runs else "not run"
        return ("not reachable" if note.startswith("not reachable") else note, "-", "-")
    increases = [base - run["top1"] for run in trained]
    spread = statistics.stdev(increases) if len(increases) > 1 else 0.0
    flops = statistics.mean(run["counted_flops"] for run in trained)
    steps = statistics.mean(run["regularize_steps"] for run in trained)
    return (
        f"{statistics.mean(increases):.2f} ± {spread:.2f}",
        f"{flops / 1e9:.4f}",
        f"{steps:.0f}" if steps else "-",
    )


def error_table(name: str, entry: Mapping[str, Any], speedups: Sequence[float]) -> list[str]:
    """Tables 2 / 3: increased error (points of top-1) at each speedup, with the paper's."""
    base = entry["base"]["top1"]
    header = "| method |"
    rule = "|---|"
    for speedup in speedups:
        header += f" {speedup:g}x: increased err. (%) | GFLOPs | reg. steps | paper |"
        rule += "---:|---:|---:|---:|"
    lines = [header, rule]
    methods = sorted(
        dict.fromkeys(run["method"] for run in entry["runs"]),
        key=lambda method: list(NAMES).index(method) if method in NAMES else len(NAMES),
    )
    for method in methods:
        cells = []
        for column, speedup in enumerate(speedups):
            runs = [r for r in entry["runs"] if r["method"] == method and r["speedup"] == speedup]
            paper = PAPER_ERRORS.get(name, {}).get(method) or (
                PAPER_ERRORS.get(name, {}).get("DPR") if method == "DPR shape" else None
            )
            cells += [*_errors(runs, base), f"{paper[column]:.2f}" if paper else ""]
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


def reasons(entry: Mapping[str, Any]) -> list[str]:
    """The tool's one-line reasons for the targets a method could not reach."""
    seen: dict[tuple[str, float], str] = {}
    for run in entry["runs"]:
        if run["note"] and run["note"] not in seen.values():
            seen[(run["method"], run["speedup"])] = run["note"]
    return [f"- {method} at {speedup:g}x: {note}" for (method, speedup), note in seen.items()]


def loss_figure(results: Mapping[str, Any], path: Path, speedup: float = 2.0) -> bool:
    """Fig. 4: training loss from the start of pruning, TP, FP and the method (seed 0)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return False
    models = list(results["models"])
    figure, axes = pyplot.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    seed = results["seeds"][0]
    for axis, name in zip(axes[0], models):
        runs = results["models"][name]["runs"]
        for method in ("TP", "FP", "DPR", "DPR shape"):
            found = [
                r
                for r in runs
                if r["method"] == method
                and r["speedup"] == speedup
                and r["seed"] == seed
                and r["losses"]
            ]
            if not found:
                continue
            losses = np.array(found[0]["losses"])
            window = max(1, min(10, losses.size // 10))
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            axis.plot(np.arange(smooth.size) + window, smooth, label=NAMES[method])
            steps = found[0]["regularize_steps"]
            if steps:
                axis.axvline(steps, color="0.7", linestyle=":", linewidth=0.8)
        axis.set_title(f"{name}, {speedup:g}x (dotted: the method's rewrite)", fontsize=9)
        axis.set_xlabel("iteration since pruning started")
        axis.set_ylabel("training loss")
        axis.set_yscale("log")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return True


def write(results: Mapping[str, Any], folder: Path) -> None:
    """Write ``tables.md`` and ``fig4_loss.png``."""
    speedups = sorted({run["speedup"] for e in results["models"].values() for run in e["runs"]})
    lines = [f"Command: `{results['command']}`", ""]
    for name, entry in results["models"].items():
        base = entry["base"]
        lines += [
            f"## {name} x{entry['width']}",
            "",
            f"Pre-trained: top-1 {base['top1']:.2f}% after {base['steps']} steps "
            f"({base['cpu_seconds']:.0f} s CPU); {entry['full_flops'] / 1e9:.4f} GFLOPs.",
            "",
        ]
        if "table1" in entry:
            lines += ["### Table 1: DPR's ratios", "", *table1(entry), ""]
        lines += ["### Increased error", "", *error_table(name, entry, speedups), ""]
        lines += [*reasons(entry), ""]
    lines.append(f"CPU: {results['cpu_seconds']:.0f} s; wall: {results['wall_seconds']:.0f} s.")
    (folder / "tables.md").write_text("\n".join(lines) + "\n")
    loss_figure(results, folder / "fig4_loss.png")


def merged(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several runs of the study as one: the runs of each model together.

    Raises:
        ValueError: Two runs pre-trained a model differently (different base accuracy).
    """
    first = dict(documents[0])
    models: dict[str, Any] = {
        name: {**entry, "runs": list(entry["runs"])} for name, entry in first["models"].items()
    }
    for document in documents[1:]:
        for name, entry in document["models"].items():
            if name not in models:
                models[name] = dict(entry)
                continue
            if entry["base"]["top1"] != models[name]["base"]["top1"]:
                raise ValueError(f"{name}: the runs start from different pre-trained models")
            models[name]["runs"] += entry["runs"]
    commands = [document["command"] for document in documents]
    return {
        **first,
        "models": models,
        "command": "` and `".join(commands),
        "cpu_seconds": sum(document["cpu_seconds"] for document in documents),
        "wall_seconds": sum(document["wall_seconds"] for document in documents),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Render ``tables.md`` and Fig. 4 from one or more ``results.json`` of the study."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "results",
        nargs="+",
        help="results.json files; PATH:MODEL[,MODEL] takes only those models from PATH",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables")
    args = parser.parse_args(argv)
    documents = []
    for argument in args.results:
        path, _, names = argument.partition(":")
        document = json.loads(Path(path).read_text())
        if names:
            wanted = names.split(",")
            document["models"] = {n: e for n, e in document["models"].items() if n in wanted}
        documents.append(document)
    args.out.mkdir(parents=True, exist_ok=True)
    write(merged(documents), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
