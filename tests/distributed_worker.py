"""Run under torchrun by ``test_distributed.py``: score a model and save the statistics.

``python tests/distributed_worker.py MODEL DATA OUT_PREFIX``: every rank scores its shard
of the batches of DATA (batch size 1, labels with 255 ignored); each rank writes
``OUT_PREFIX.RANK.npz`` with the all-reduced statistics it returns.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.pipeline import PruneOptions, score_model
from ranp_onnx.scoring.data import open_data


def main(model: str, data: str, prefix: str) -> None:
    graph = analyse(model)
    options = PruneOptions(method="ranp-f", sparsity=0.5, ignore_index=255)
    stats = score_model(graph, open_data(data, graph, ignore_index=255), options).stats
    arrays = {"batches": np.array(stats.batches), "loss": np.array(stats.loss)}
    for key in ("magnitude", "signed", "taylor"):
        for i, value in enumerate(getattr(stats, key)):
            arrays[f"{key}{i}"] = value
    np.savez(f"{prefix}.{os.environ.get('RANK', 'single')}.npz", **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:4])
