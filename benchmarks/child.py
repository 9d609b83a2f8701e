"""Work run in a child process, so that its peak resident memory is its own.

``python -m benchmarks.child train-step NAME PRESET WIDTH C,D,H,W BATCH``: one plain torch
training step (forward, cross-entropy, backward, SGD step) of a zoo model.
``python -m benchmarks.child score MODEL.onnx DATA.npz BATCHES``: the scoring passes of
``ranp-onnx prune`` alone (analysis, channels, gradients; no memory check).
``python -m benchmarks.child validate MODEL.onnx arena|no-arena``: L1 pruning at 0.8 and
the validation, the oracle's sessions with or without the CPU arena; prints the seconds.
"""

from __future__ import annotations

import sys


def train_step(name: str, preset: str, width: float, shape: tuple[int, ...], batch: int) -> None:
    """One training step of the original torch module."""
    import torch

    from ranp_onnx.zoo import build_model

    built = build_model(name, preset=preset, width_mult=width, input_shape=shape)
    module = built.module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    inputs = torch.randn(batch, *shape)
    labels = torch.randint(0, built.config.classes, (batch, *shape[1:]))
    logits = module(inputs)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()


def score(model: str, data: str, batches: int) -> None:
    """The scoring passes only."""
    from ranp_onnx.analysis.channels import analyse_channels
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.scoring.data import open_data
    from ranp_onnx.scoring.statistics import accumulate_gradients

    graph = analyse(model)
    channels = analyse_channels(graph)
    source = open_data(data, graph, batches=batches, ignore_index=255)
    accumulate_gradients(channels, source, "cross-entropy", ignore_index=255, memory_check=False)


def validate(model: str, arena: str) -> None:
    """Prune with L1 (no gradients) and validate; print the validation's seconds."""
    import time

    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.pipeline import PruneOptions, score_model
    from ranp_onnx.rewrite import oracle
    from ranp_onnx.rewrite.surgery import rewrite
    from ranp_onnx.selection.search import select_at

    if arena == "arena":
        plain = oracle._oracle_options

        def with_arena() -> object:
            options = plain()
            options.enable_cpu_mem_arena = True
            return options

        oracle._oracle_options = with_arena
    graph = analyse(model)
    options = PruneOptions(method="l1", sparsity=0.8)
    scoring = score_model(graph, None, options)
    keep = select_at(scoring, "l1", 0.8, options.selection).keep
    pruned = rewrite(scoring.channels, keep)
    start = time.perf_counter()
    oracle.validate(graph, pruned, scoring.channels.kept_indices(keep))
    print(f"{time.perf_counter() - start:.1f}")


def main(argv: list[str]) -> None:
    """Dispatch on the first argument."""
    if argv[0] == "train-step":
        shape = tuple(int(d) for d in argv[4].split(","))
        train_step(argv[1], argv[2], float(argv[3]), shape, int(argv[5]))
    elif argv[0] == "score":
        score(argv[1], argv[2], int(argv[3]))
    elif argv[0] == "validate":
        validate(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown work '{argv[0]}'")


if __name__ == "__main__":
    main(sys.argv[1:])
