"""``make bench``: run the benchmarks and write ``benchmarks/RESULTS.md``.

``python -m benchmarks.run`` measures, in one run: (a) the prune pipeline stage by stage
against native torch passes, (b) analysis and rewrite on generated graphs, (c) full
against pruned inference in onnxruntime, (d) peak memory against a torch training step,
(e) Torch-Pruning against RANP-f, (f) the full-width BraTS UNet pruned on CPU and (g) the
training-memory model against real training steps, with the payoff of pruning for training.
``--quick`` runs every section on small sizes with two repeats (seconds to a minute; the
harness test uses it); ``--sections`` picks sections.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import machine, segmentation_data

SECTIONS = ("a", "b", "c", "d", "e", "f", "g")


@dataclass(frozen=True)
class Sizes:
    """The sizes of one benchmark run."""

    width: float
    shape: tuple[int, int, int, int]
    batches: int
    repeats: int
    graph_sizes: tuple[int, ...]
    brats_shape: tuple[int, int, int, int]
    quick: bool = False


FULL = Sizes(1.0, (1, 64, 64, 64), 4, 5, (100, 500, 2000, 5000), (4, 128, 128, 128))
QUICK = Sizes(0.125, (1, 16, 16, 16), 2, 2, (20, 60), (4, 16, 16, 16), quick=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Small sizes, two repeats.")
    parser.add_argument(
        "--sections", default="".join(SECTIONS), help="Sections to run, e.g. 'ab' (default all)."
    )
    parser.add_argument("--out", type=Path, default=None, help="Where to write the results.")
    parser.add_argument("--repeats", type=int, default=None, help="Override the repeat count.")
    parser.add_argument(
        "--update",
        action="store_true",
        help="Replace only the sections run in an existing results file (the header says so).",
    )
    return parser.parse_args(argv)


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(
    sections: str, sizes: Sizes, folder: Path, done: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Run the chosen sections, quickest first; call ``done`` with the results after each."""
    import onnx

    from ranp_onnx.zoo import build_model, export_built

    results: dict[str, Any] = {}
    built = build_model(
        "unet3d-15", preset="shapenet", width_mult=sizes.width, input_shape=sizes.shape
    )
    model = folder / "unet.onnx"
    onnx.save(export_built(built), model)
    data = segmentation_data(folder / "score.npz", sizes.shape, built.config.classes, sizes.batches)
    steps: dict[str, tuple[str, Callable[[], Any]]] = {
        "b": ("analysis and rewrite on generated graphs", lambda: _scale(sizes)),
        "d": (
            "peak memory against a torch training step",
            lambda: _memory(sizes, model, data, folder),
        ),
        "f": ("the BraTS UNet on CPU", lambda: _brats(sizes, folder)),
        "g": ("training memory and the payoff", lambda: _training(sizes)),
        "e": ("Torch-Pruning against RANP-f", lambda: _compare(sizes, model, data)),
        "c": ("full against pruned inference", lambda: _inference(sizes, model, data)),
        "a": ("prune pipeline against torch passes", lambda: _pipeline(sizes, folder)),
    }
    for key, (title, step) in steps.items():
        if key in sections:
            _log(f"({key}) {title}")
            results[key] = step()
            done(results)
    return results


def _scale(sizes: Sizes) -> Any:
    from .scale import run_scale

    return run_scale(sizes.graph_sizes, sizes.repeats)


def _memory(sizes: Sizes, model: Path, data: Path, folder: Path) -> Any:
    from .memory import run_memory

    return run_memory(model, data, sizes.width, "shapenet", sizes.shape, folder)


def _brats(sizes: Sizes, folder: Path) -> Any:
    from .memory import run_brats

    return run_brats(folder, sizes.brats_shape)


def _training(sizes: Sizes) -> Any:
    from .training_payoff import run_training

    return run_training(sizes.quick, _log)


def _compare(sizes: Sizes, model: Path, data: Path) -> Any:
    from .torch_pruning_compare import run_comparison, torch_pruning_available

    if not torch_pruning_available():
        return None
    return run_comparison(sizes.width, sizes.shape, model, data)


def _inference(sizes: Sizes, model: Path, data: Path) -> Any:
    from .inference import run_inference, score_unet

    return run_inference(score_unet(model, data, 1), sizes.repeats)


def _pipeline(sizes: Sizes, folder: Path) -> Any:
    from .pipeline import PipelineCase, run_pipeline

    case = PipelineCase(sizes.width, sizes.shape, sizes.batches)
    return run_pipeline(case, folder, sizes.repeats)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks and write the results file."""
    from .results import merge, render

    args = _parse(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats is not None:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    out = args.out or Path(__file__).with_name("RESULTS-quick.md" if args.quick else "RESULTS.md")
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine()
    start = time.perf_counter()
    original = out.read_text() if args.update and out.exists() else None

    def write(results: dict[str, Any]) -> None:
        """Write what is measured so far (a stopped run leaves its finished sections)."""
        now = {
            **info,
            "load at end": Path("/proc/loadavg").read_text().strip(),
            "wall time": f"{time.perf_counter() - start:.0f} s",
        }
        text = render(command.strip(), now, sizes, results)
        if original is not None:
            text = merge(original, text, command.strip(), now)
        out.write_text(text)

    with tempfile.TemporaryDirectory(prefix="ranp-bench-") as folder:
        write(run(args.sections, sizes, Path(folder), write))
    _log(f"wrote {out}")


if __name__ == "__main__":
    main()
