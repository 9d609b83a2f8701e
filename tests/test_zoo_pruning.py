"""Every zoo model, small, pruned with the paper's methods at four sparsities; Algorithm 2.

Each model is exported once (BatchNorm statistics calibrated, see ``pruning_models``) and
scored once per seed on one batch; every (method, sparsity) then selects, rewrites and
validates. Three seeds of data and selection: the oracle must never refuse an exact
rewrite (zoo x {ranp-f, vanilla, random, layerwise, l1} x {0.3, 0.5, 0.8, 0.95} x 3).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from pruning_models import CLASSES, SMALL, segmentation_npz, zoo_model

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.pipeline import PruneOptions, Scoring, prune_scored, score_model
from ranp_onnx.scoring.data import open_data
from ranp_onnx.selection.search import search_max_sparsity

METHODS = ("ranp-f", "vanilla", "random", "layerwise", "l1")
SEEDS = (0, 1, 2)
SPARSITIES = (0.3, 0.5, 0.8, 0.95)
#: (zoo name, exporter): every model with torchscript, one also with the dynamo exporter
#: (BatchNorm folded into the convs, hard-coded Reshape shapes before the classifier).
CASES = [(name, "torchscript") for name in sorted(SMALL)] + [("c3d", "dynamo")]


@functools.cache
def _scored(name: str, exporter: str, folder: Path, seed: int = 0) -> tuple[GraphAnalysis, Scoring]:
    graph = analyse(zoo_model(name, exporter=exporter))
    shape = SMALL[name][1]
    path = folder / f"{name}-{exporter}-{seed}.npz"
    if name.startswith("unet"):
        segmentation_npz(path, shape, CLASSES, samples=1, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        inputs = rng.standard_normal((1, *shape)).astype(np.float32)
        np.savez(path, inputs=inputs, labels=rng.integers(0, CLASSES, size=1))
    data = open_data(path, graph, ignore_index=255)
    # One sample and the smallest inputs leave one value per channel in the deepest
    # BatchNorms of all but the 15-layer UNet: those score on the running statistics.
    batchnorm = "batch" if name == "unet3d-15" else "running"
    options = PruneOptions(method="vanilla", ignore_index=255, batchnorm=batchnorm)
    return graph, score_model(graph, data, options)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", [*METHODS, "ranp-m"])
@pytest.mark.parametrize(("name", "exporter"), CASES, ids=[f"{n}-{e}" for n, e in CASES])
def test_zoo_model_prunes_exactly_at_every_sparsity(
    name: str, exporter: str, method: str, seed: int, folder: Path
) -> None:
    if method == "ranp-m" and seed:
        pytest.skip("RANP-m is swept at one seed")
    graph, scoring = _scored(name, exporter, folder, seed)
    flops = []
    for sparsity in SPARSITIES:
        options = PruneOptions(method=method, sparsity=sparsity, seed=seed)
        result = prune_scored(graph, scoring, options)
        assert result.validation is not None
        assert result.validation.worst[1] <= 1e-4, (sparsity, result.validation)
        if sparsity == SPARSITIES[0]:
            assert result.validation.conclusive, result.validation  # the oracle sees signal
            onnx.checker.check_model(result.model, full_check=True)
        assert result.after.totals.flops < result.before.totals.flops
        for layer in result.plan.layers:
            assert len(layer["kept"]) >= 1, layer["node"]
        for group in result.plan.groups:
            assert group["kept_count"] >= 1
        flops.append(result.after.totals.flops)
    assert flops == sorted(flops, reverse=True)


def test_algorithm2_ranp_f_reaches_a_higher_feasible_sparsity_than_vanilla(tmp_path: Path) -> None:
    """The paper: 98.57% (RANP) vs 78.24% (vanilla) on ShapeNet's 3D-UNet."""
    from ranp_onnx.zoo import build_model, export_built

    shape = (1, 16, 16, 16)
    built = build_model("unet3d-15", width_mult=0.25, input_shape=shape, classes=CLASSES)
    graph = analyse(export_built(built))
    path = segmentation_npz(tmp_path / "shapes.npz", shape, CLASSES, samples=1)
    data = open_data(path, graph, ignore_index=255)
    scoring = score_model(graph, data, PruneOptions(method="vanilla", ignore_index=255))
    found = {
        method: search_max_sparsity(scoring, PruneOptions(method=method).selection)
        for method in ("vanilla", "ranp-f")
    }
    for _, selection in found.values():
        assert selection.feasible
    # Measured on CPU: vanilla 73.47%, RANP-f 92.68%.
    assert found["ranp-f"][0] > found["vanilla"][0] + 0.1
