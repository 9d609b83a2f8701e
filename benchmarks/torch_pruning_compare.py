"""(e) Torch-Pruning's global gradient-Taylor pruning against RANP-f on the same 3D-UNet.

Torch-Pruning (``pip install 'ranp-onnx[bench]'``) prunes the torch module in place:
``MetaPruner`` with ``TaylorImportance``, ``global_pruning=True``, the class head ignored,
after one forward + cross-entropy + backward on the first scoring batch (training mode, so
BatchNorm uses batch statistics, as RANP scores). Its time to prune covers the dependency
graph, the gradient pass and the pruning step. The pruned module is exported and counted
by ranp-onnx's own counter, so both tools' FLOPs and activation memory are counted alike.

RANP-f's time is the scoring on the same single batch (shared by the three sparsities)
plus each selection and rewrite; validation is left out on both sides (Torch-Pruning has
none).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np

SPARSITIES = (0.5, 0.8, 0.95)


def torch_pruning_available() -> bool:
    """True if the ``torch_pruning`` package imports."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def _counted(module: Any, shape: tuple[int, ...]) -> tuple[float, float, int]:
    """GFLOPs, activation memory (MB) and conv output channels of a torch module."""
    import torch

    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.zoo import to_onnx

    module.eval()
    proto = to_onnx(module, torch.zeros((1, *shape)))
    graph = analyse(proto)
    totals = count_costs(graph).totals
    neurons = sum(
        int(graph.shape(node.outputs[0])[1]) for node in graph.nodes if node.op_type == "Conv"
    )
    return totals.gflops, totals.memory_mb, neurons


def _taylor_prune(width: float, shape: tuple[int, ...], data: Path, sparsity: float) -> Any:
    """Prune a fresh UNet with Torch-Pruning; return the module and the seconds it took."""
    import torch
    import torch_pruning as tp

    from ranp_onnx.zoo import build_model

    module = build_model("unet3d-15", preset="shapenet", width_mult=width, input_shape=shape).module
    arrays = np.load(data)
    inputs = torch.from_numpy(arrays["inputs"][:1])
    labels = torch.from_numpy(arrays["labels"][:1])
    start = time.perf_counter()
    module.train()
    pruner = tp.pruner.MetaPruner(
        module,
        inputs,
        importance=tp.importance.TaylorImportance(),
        global_pruning=True,
        pruning_ratio=sparsity,
        ignored_layers=[module.head],
    )
    module.zero_grad()
    loss = torch.nn.functional.cross_entropy(module(inputs), labels, ignore_index=255)
    loss.backward()
    pruner.step()
    return module, time.perf_counter() - start


def run_comparison(
    width: float, shape: tuple[int, ...], model: Path, data: Path
) -> list[dict[str, Any]]:
    """Both tools at each sparsity: achieved GFLOPs, memory, neuron sparsity, seconds."""
    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.pipeline import PruneOptions, prune_scored
    from ranp_onnx.zoo import build_model

    from .inference import score_unet

    scored = score_unet(model, data, batches=1)
    full = count_costs(scored.graph).totals
    base = PruneOptions(method="ranp-f", lam=11.0, validate=False)
    rows = []
    for sparsity in SPARSITIES:
        start = time.perf_counter()
        result = prune_scored(
            scored.graph, scored.scoring, dataclasses.replace(base, sparsity=sparsity)
        )
        ranp_seconds = scored.seconds + time.perf_counter() - start
        rows.append(
            {
                "tool": "RANP-f",
                "sparsity": sparsity,
                "gflops": result.after.totals.gflops,
                "memory_mb": result.after.totals.memory_mb,
                "neuron_sparsity": result.plan.achieved["neuron_sparsity"],
                "seconds": ranp_seconds,
                "full_gflops": full.gflops,
                "full_memory_mb": full.memory_mb,
            }
        )
    original = build_model("unet3d-15", preset="shapenet", width_mult=width, input_shape=shape)
    _, _, neurons = _counted(original.module, shape)
    for sparsity in SPARSITIES:
        module, seconds = _taylor_prune(width, shape, data, sparsity)
        gflops, memory, kept = _counted(module, shape)
        rows.append(
            {
                "tool": "Torch-Pruning Taylor",
                "sparsity": sparsity,
                "gflops": gflops,
                "memory_mb": memory,
                "neuron_sparsity": 1 - kept / neurons,
                "seconds": seconds,
                "full_gflops": full.gflops,
                "full_memory_mb": full.memory_mb,
            }
        )
    return rows


def monotone(rows: list[dict[str, Any]], tool: str, key: str) -> bool:
    """True if the tool's achieved ``key`` never increases with the sparsity."""
    values = [row[key] for row in sorted(rows, key=lambda r: r["sparsity"]) if row["tool"] == tool]
    return all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(values))
