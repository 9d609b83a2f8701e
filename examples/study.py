"""The accuracy study: every pruning method at the same neuron sparsity, trained from scratch.

For each task (``examples/segmentation3d``, ``examples/video3d``) the driver

1. exports the task's zoo model (torchscript, initialisation seed 0) and scores it with
   the first training samples (labelled batches, the task's loss);
2. finds each method's largest feasible sparsity (the paper's Algorithm 2) and picks a
   higher sparsity between vanilla NP's and RANP-f's maxima;
3. prunes with random, layer-wise, vanilla, weighted, RANP-m and RANP-f at the task's
   sparsity and at the higher one, plus random and layer-wise at RANP-f's GFLOPs (the
   paper's Table III comparison); the pruned models are re-initialised (the paper trains
   from scratch);
4. trains every network and the unpruned one ("full") with the same budget, for each
   seed (seed s re-draws the initial weights and the sample order), and evaluates it;
5. writes ``results.json``, a Markdown table per task (the form of the paper's Table II)
   and ``metric_vs_gflops.png``.

Options add the paper's scalability claim (``--scale-to``: prune at the study size,
re-apply the plan to an export at a larger size and train there) and its transferability
claim (``--transfer``: score with another dataset of the same classes, train on the
task's own).

Run from the repository root::

    python -m examples.study --task all --out study-out            # the full study
    python -m examples.study --tiny --out /tmp/study-tiny           # seconds, what CI runs
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from examples import report
from examples.networks import (
    Network,
    export,
    higher_sparsity,
    main_networks,
    max_sparsities,
    scale_networks,
    score,
    scoring_batches,
    transfer_networks,
    unpruned_layers,
)
from examples.tasks import SCALES, Samples, Task
from examples.training import train_and_evaluate
from ranp_onnx.rewrite.reinit import reinitialize

TASKS = ("segmentation3d", "video3d")
#: One torch thread by default: on a 2-core machine shared with other work, two OpenMP
#: threads made the tiny study 13x slower (362 s against 28 s), and the full-size steps no
#: faster; pass ``--threads 2`` on a dedicated machine.
THREADS = 1


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_task(name: str, scale: str) -> Task:
    module = importlib.import_module(f"examples.{name}.task")
    task: Task = module.make_task(scale)
    return task


def describe(network: Network, trained: bool) -> dict[str, Any]:
    return {
        "group": network.group,
        "method": network.method,
        "variant": network.variant,
        "note": network.note,
        "feasible": network.feasible,
        "trained": trained,
        **network.costs,
    }


def train_all(
    task: Task,
    networks: list[Network],
    data: tuple[Samples, Samples],
    seeds: Sequence[int],
    entry: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """Train every network for every seed; infeasible ones at the higher sparsity are not.

    At the task's own sparsity every method is trained, infeasible or not (the pruner
    keeps one channel where a layer would be emptied), so the comparison is complete; at
    the higher sparsity, as in the paper, infeasible networks are listed but not trained.
    """
    for network in networks:
        trained = network.feasible or network.group != "high"
        entry["networks"].append(describe(network, trained))
        if not trained:
            continue
        for seed in seeds:
            label = f"{network.group}/{network.method} {network.variant}".strip()
            log(f"{task.name}: training {label}, seed {seed}")
            run = train_and_evaluate(reinitialize(network.model, seed=seed), task, *data, seed=seed)
            log(f"  {task.metric_name} {run.metric:.2f}, {run.seconds:.1f} s")
            entry["runs"].append(
                {
                    "group": network.group,
                    "method": network.method,
                    "variant": network.variant,
                    "seed": seed,
                    **run.to_json(),
                }
            )
            save()


def run_task(
    task: Task, args: argparse.Namespace, results: dict[str, Any], save: Callable[[], None]
) -> None:
    started = time.perf_counter()
    log(f"{task.name}: generating data, exporting and scoring")
    train = task.load("train", task.train_count, None)
    test = task.load("test", task.test_count, None)
    graph = export(task)
    task = dataclasses.replace(task, ignore=unpruned_layers(task, graph))
    scoring = score(task, graph, scoring_batches(task, train))
    maxima = max_sparsities(task, scoring)
    high = higher_sparsity(task, maxima)
    entry: dict[str, Any] = {
        "title": task.title,
        "metric": task.metric_name,
        "sparsity": task.sparsity,
        "high_sparsity": high,
        "max_sparsity": maxima,
        "input_shape": list(task.input_shape),
        "unpruned_layers": list(task.ignore),
        "budget": dataclasses.asdict(task.budget),
        "counts": {"train": len(train), "test": len(test), "score": task.score_count},
        "networks": [],
        "runs": [],
    }
    results["tasks"][task.name] = entry
    log(f"{task.name}: pruning (maximum sparsities {maxima}; higher sparsity {high})")
    if not args.no_main:
        networks = main_networks(task, graph, scoring, high)
        train_all(task, networks, (train, test), args.seeds, entry, save)
    if args.scale_to:
        log(f"{task.name}: scaling to {args.scale_to}")
        entry["scale_shape"] = list(task.spatial_shape(args.scale_to))
        big = (
            task.load("train", task.train_count, args.scale_to),
            task.load("test", task.test_count, args.scale_to),
        )
        networks = scale_networks(
            task, graph, scoring, args.scale_to, scoring_batches(task, big[0])
        )
        train_all(task, networks, big, args.seeds, entry, save)
    if args.transfer:
        try:
            networks = transfer_networks(task, graph, scoring, with_own=args.no_main)
        except ValueError as error:
            entry["transfer"] = str(error)
        else:
            entry["transfer_data"] = task.transfer_data
            train_all(task, networks, (train, test), args.seeds, entry, save)
    entry["seconds"] = time.perf_counter() - started
    save()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=(*TASKS, "all"), default="all", help="default: all")
    parser.add_argument("--tiny", action="store_true", help="CI size: finishes in seconds")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--scale-to", type=int, help="also train at this spatial size")
    parser.add_argument("--transfer", action="store_true", help="also score on other data")
    parser.add_argument(
        "--no-main",
        action="store_true",
        help="skip the main comparison (run only --scale-to / --transfer)",
    )
    parser.add_argument(
        "--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})"
    )
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0, 1] if args.tiny else [0, 1, 2]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    scale = SCALES[0] if args.tiny else SCALES[1]
    results: dict[str, Any] = {
        "command": " ".join(["python -m examples.study", *(argv or sys.argv[1:])]),
        "scale": scale,
        "seeds": args.seeds,
        "environment": report.environment(),
        "tasks": {},
    }
    started = time.perf_counter()

    def save() -> None:
        results["seconds"] = time.perf_counter() - started
        path = args.out / "results.json"
        path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")

    names = TASKS if args.task == "all" else (args.task,)
    for name in names:
        run_task(load_task(name, scale), args, results, save)
    save()
    report.write(results, args.out)
    log(f"done in {results['seconds']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
