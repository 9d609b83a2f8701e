"""Reproducing Zhang et al.'s Tables 1-3 and Fig. 4 on the moving-digits video task.

For C3D and 3D-ResNet-18 (the zoo's, at widths that train in minutes on 2 CPU cores):

1. generate the digit clips (``examples/video3d``) and pre-train the network from scratch
   with SGD, the "pre-trained" model every method starts from;
2. Table 1: DPR's per-layer ratios of the trained C3D at the paper's ``pr`` for 2x and
   4x (and of the zoo's full-size C3D at the paper's input, where the FLOPs shares are
   exactly the paper's);
3. Tables 2 and 3: for each speedup and seed, TP, FP, SPR, DPR, DPR (shape) and RANP-f
   (see :mod:`examples.regularization.methods`), each network's top-1 on the test clips;
4. Fig. 4: the training loss from the start of pruning, TP, FP and the method, at 2x.

Run from the repository root::

    python -m examples.regularization.study --out examples/results-regularization
    python -m examples.regularization.study --tiny --out /tmp/reg-tiny      # seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples import report as study_report
from examples.regularization import methods, tables
from examples.regularization.methods import Recipe, Run
from examples.regularization.training import fit, top1
from examples.tasks import Samples
from examples.video3d.data import generate
from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.regularization.allocation import paper_ratios
from ranp_onnx.regularization.groups import weight_groups
from ranp_onnx.zoo import build_model, export_built

#: The methods of Tables 2 and 3, in order; RANP-f runs after DPR (it takes DPR's FLOPs).
METHODS = ("TP", "FP", "SPR", "DPR", "DPR shape", "DPR one-shot", "RANP-f")


@dataclass(frozen=True)
class Scale:
    """How big the reproduction is.

    Attributes:
        models: (zoo name, width multiplier) pairs.
        train: Training clips.
        test: Test clips.
        frames: Frames per clip.
        size: Frame height and width.
        noise: Pixel noise of the clips (the video study's 0.3 is too easy for ResNet).
        recipe: The training recipe.
        seeds: Seeds of the pruning and fine-tuning runs.
        speedups: The FLOPs targets.
    """

    models: tuple[tuple[str, float], ...]
    train: int
    test: int
    frames: int
    size: int
    noise: float
    recipe: Recipe
    seeds: tuple[int, ...]
    speedups: tuple[float, ...]


FULL = Scale(
    models=(("c3d", 0.125), ("resnet3d-18", 0.5)),
    train=800,
    test=300,
    frames=16,
    size=32,
    noise=0.7,
    recipe=Recipe(
        batch=8,
        pretrain_steps=2000,
        pretrain_lr=0.05,
        finetune_steps=250,
        lr=0.01,
        a=0.02,
        ceiling=2.0,
        regularize_cap=600,
        score_batches=10,
    ),
    seeds=(0, 1, 2),
    speedups=(2.0, 4.0),
)
TINY = Scale(
    models=(("c3d", 0.125), ("resnet3d-18", 0.125)),
    train=24,
    test=12,
    frames=9,
    size=16,
    noise=0.3,
    recipe=Recipe(
        batch=4,
        pretrain_steps=6,
        pretrain_lr=0.05,
        finetune_steps=3,
        lr=0.05,
        a=0.05,
        ceiling=0.5,
        regularize_cap=8,
        score_batches=2,
    ),
    seeds=(0,),
    speedups=(2.0,),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def clips(scale: Scale, split: str, count: int) -> Samples:
    data = generate(count, frames=scale.frames, size=scale.size, split=split, noise=scale.noise)
    return Samples(data.inputs, data.labels, data.labels)


def pretrain(name: str, width: float, scale: Scale, data: tuple[Samples, Samples]) -> Any:
    """The zoo model (initialisation seed 0) trained from scratch: every method's start."""
    train, test = data
    built = build_model(
        name, input_shape=train.inputs.shape[1:], width_mult=width, classes=10, seed=0
    )
    recipe = scale.recipe
    started = time.process_time()
    fitted = fit(
        export_built(built, dynamic=True),
        train,
        steps=recipe.pretrain_steps,
        batch=recipe.batch,
        lr=recipe.pretrain_lr,
        cosine=True,
        seed=0,
    )
    entry = {
        "top1": top1(fitted.model, test),
        "steps": recipe.pretrain_steps,
        "final_loss": float(np.mean(fitted.losses[-50:])),
        "cpu_seconds": time.process_time() - started,
    }
    return fitted.model, entry


def table1(model: Any, train: Samples, paper_size: bool) -> dict[str, Any]:
    """DPR's per-layer ratios at the paper's pr for 2x and 4x (Table 1).

    Of the trained model, and (``paper_size``) of the zoo's full-width C3D at the paper's
    3 x 16 x 112 x 112 input, whose FLOPs shares are the paper's.
    """
    trained = _conv_groups(analyse(model, methods.shape_of(train)))
    document: dict[str, Any] = {
        "layers": [layer.name for layer in trained.layers],
        "trained": {str(s): paper_ratios(trained, s).tolist() for s in (2.0, 4.0)},
        "flops_share": _shares(trained),
    }
    if paper_size:
        built = export_built(build_model("c3d", seed=0), dynamic=True)
        full = _conv_groups(analyse(built, {"input": (1, 3, 16, 112, 112)}))
        document["zoo_112"] = {str(s): paper_ratios(full, s).tolist() for s in (2.0, 4.0)}
        document["zoo_112_flops_share"] = _shares(full)
    return document


def _conv_groups(graph: Any) -> Any:
    return weight_groups(analyse_channels(graph), "shape", graph.initializer_names)


def _shares(groups: Any) -> list[float]:
    total = sum(layer.flops for layer in groups.layers)
    return [layer.flops / total for layer in groups.layers]


def run_model(
    name: str,
    width: float,
    scale: Scale,
    args: argparse.Namespace,
    entry: dict[str, Any],
    save: Callable[[], None],
) -> None:
    data = (clips(scale, "train", scale.train), clips(scale, "test", scale.test))
    log(f"{name} x{width}: pre-training {scale.recipe.pretrain_steps} steps")
    model, base = pretrain(name, width, scale, data)
    entry.update({"width": width, "base": base, "runs": []})
    log(f"  base top-1 {base['top1']:.2f}%")
    graph = analyse(model, methods.shape_of(data[0]))
    entry["full_flops"] = methods.full_flops(graph)
    if name == "c3d":
        entry["table1"] = table1(model, data[0], paper_size=not args.tiny)
    scoring = methods.score_trained(graph, data[0], scale.recipe)
    save()
    for speedup in scale.speedups:
        for seed in args.seeds:
            dpr: Run | None = None
            for method in args.methods:
                log(f"{name}: {method} at {speedup:g}x, seed {seed}")
                if method in ("TP", "FP"):
                    run = methods.one_shot(
                        method, graph, scoring, data, scale.recipe, speedup, seed
                    )
                elif method == "DPR one-shot":
                    run = methods.one_shot_allocation(model, data, scale.recipe, speedup, seed)
                elif method == "RANP-f":
                    run = ranp_after(name, width, data, scale, entry, dpr, speedup, seed)
                else:
                    run = methods.regularized(method, model, data, scale.recipe, speedup, seed)
                    dpr = run if method == "DPR" else dpr
                shown = f"{run.top1:.2f}%" if run.top1 is not None else run.note
                log(f"  top-1 {shown}, {run.seconds:.0f} s CPU")
                entry["runs"].append(run.to_json(keep_losses=seed == args.seeds[0]))
                save()


def ranp_after(
    name: str,
    width: float,
    data: tuple[Samples, Samples],
    scale: Scale,
    entry: dict[str, Any],
    dpr: Run | None,
    speedup: float,
    seed: int,
) -> Run:
    """RANP-f at DPR's FLOPs, trained for pre-training + DPR's regularization + fine-tuning."""
    recipe = scale.recipe
    reached = dpr is not None and dpr.flops is not None
    target = dpr.flops / entry["full_flops"] if reached else 1.0 / speedup  # type: ignore[union-attr]
    steps = recipe.pretrain_steps + recipe.finetune_steps
    steps += dpr.regularize_steps if dpr is not None else recipe.regularize_cap
    return methods.ranp_from_scratch(name, width, data, recipe, target, steps, speedup, seed)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--tiny", action="store_true", help="CI size: finishes in seconds")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (tiny: 0)")
    parser.add_argument("--models", nargs="+", help="zoo names (default: c3d resnet3d-18)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    scale = TINY if args.tiny else FULL
    args.seeds = args.seeds or list(scale.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["python -m examples.regularization.study", *(argv or sys.argv[1:])]),
        "scale": "tiny" if args.tiny else "full",
        "recipe": scale.recipe.__dict__,
        "clips": {
            "train": scale.train,
            "test": scale.test,
            "frames": scale.frames,
            "size": scale.size,
            "noise": scale.noise,
        },
        "seeds": args.seeds,
        "environment": study_report.environment(),
        "models": {},
    }
    started_wall, started_cpu = time.perf_counter(), time.process_time()

    def save() -> None:
        results["wall_seconds"] = time.perf_counter() - started_wall
        results["cpu_seconds"] = time.process_time() - started_cpu
        (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")

    for name, width in scale.models:
        if args.models and name not in args.models:
            continue
        results["models"][name] = {}
        run_model(name, width, scale, args, results["models"][name], save)
    save()
    tables.write(results, args.out)
    log(
        f"done: {results['cpu_seconds']:.0f} s CPU, {results['wall_seconds']:.0f} s wall; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
