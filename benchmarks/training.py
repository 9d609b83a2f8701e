"""(g) The training-memory model against real torch training steps, and what pruning buys.

This module: for each network (the zoo's six, MONAI's eight of ``tests/test_third_party.py``),
full and pruned with RANP-f at 0.5 and 0.9, at two batch sizes, with SGD and Adam, the peak
:func:`ranp_onnx.analysis.training_memory.predict_training_memory` predicts against the
peak :func:`ranp_onnx.reporting.training_step.measure_training_step` measures for the
``to_torch`` module (and for the original torch module, where there is one, full models
only). On CPU the truth is torch's allocator (profiler memory events); on CUDA
``max_memory_allocated``.

The payoff and the section's entry points are in :mod:`benchmarks.training_payoff`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch

from ranp_onnx.analysis.training_memory import (
    TrainingSetup,
    loss_input,
    predict_training_memory,
    training_graph,
)
from ranp_onnx.errors import PlanError, RanpError
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.ir.units import MB
from ranp_onnx.pipeline import PruneOptions, PruneResult, prune_scored, score_model
from ranp_onnx.reporting.training_step import measure_graph_step, measure_training_step
from ranp_onnx.scoring.data import Batch


@dataclass(frozen=True)
class Network:
    """A network of the ratio table.

    Attributes:
        name: Its name in the table.
        build: Makes (torch module in eval mode, input shape without the batch).
    """

    name: str
    build: Callable[[], tuple[torch.nn.Module, tuple[int, ...]]]


def zoo_networks(quick: bool) -> list[Network]:
    """The six zoo networks, narrowed and on small clips so that 2 CPU cores manage."""
    from ranp_onnx.zoo import build_model

    width, clip = (0.125, (3, 8, 32, 32)) if quick else (0.5, (3, 16, 56, 56))
    volume = (1, 16, 16, 16) if quick else (1, 48, 48, 48)
    cases = [
        ("unet3d-15", "shapenet", width, volume, 8),
        ("unet3d-23", "shapenet", width / 2, (1, 32, 32, 32) if quick else (1, 64, 64, 64), 8),
        ("mobilenetv2-3d", None, width, clip, 10),
        ("i3d", None, width, clip, 10),
        ("c3d", None, width, clip, 10),
        ("resnet3d-18", None, width, clip, 10),
    ]
    if quick:
        cases = cases[:1]

    def builder(name: str, preset: str | None, w: float, shape: tuple[int, ...], classes: int):
        def build() -> tuple[torch.nn.Module, tuple[int, ...]]:
            built = build_model(
                name, preset=preset, width_mult=w, input_shape=shape, classes=classes
            )
            return built.module, shape

        return build

    return [
        Network(f"{name} x{w:g} {'x'.join(map(str, shape))}", builder(name, preset, w, shape, k))
        for name, preset, w, shape, k in cases
    ]


def monai_networks(quick: bool) -> list[Network]:
    """MONAI's networks of ``tests/test_third_party.py``, at twice the tests' size."""
    try:
        from monai.networks import nets
    except ImportError:
        return []
    constructors: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
        "UNet-residual-batchnorm": (
            lambda: nets.UNet(3, 1, 3, (8, 16, 32), (2, 2), num_res_units=2, norm="batch"),
            32,
        ),
        "UNet-instancenorm": (lambda: nets.UNet(3, 1, 3, (8, 16, 32), (2, 2)), 32),
        "BasicUNet": (lambda: nets.BasicUNet(3, 1, 3, features=(8, 8, 16, 16, 32, 8)), 32),
        "DynUNet": (
            lambda: nets.DynUNet(3, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], filters=[8, 16, 32]),
            32,
        ),
        "AttentionUnet": (lambda: nets.AttentionUnet(3, 1, 3, (8, 16, 32), (2, 2)), 32),
        "SegResNet-groupnorm": (
            lambda: nets.SegResNet(3, init_filters=8, in_channels=1, out_channels=3),
            32,
        ),
        "DenseNet": (
            lambda: nets.DenseNet(3, 1, 3, init_features=8, growth_rate=4, block_config=(2, 2)),
            32,
        ),
        "ResNet10": (
            lambda: nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=3),
            32,
        ),
    }
    if quick:
        constructors = {"UNet-instancenorm": constructors["UNet-instancenorm"]}

    def builder(make: Callable[[], torch.nn.Module], size: int):
        def build() -> tuple[torch.nn.Module, tuple[int, ...]]:
            torch.manual_seed(0)
            return make().eval(), (1, size, size, size)

        return build

    return [
        Network(f"MONAI {name} 1x{size}^3", builder(make, size))
        for name, (make, size) in constructors.items()
    ]


def export(module: torch.nn.Module, shape: tuple[int, ...]) -> onnx.ModelProto:
    """Export a module with the torchscript exporter, batch axis dynamic, constants unfolded."""
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(2, *shape),), buffer, dynamo=False,
            do_constant_folding=False, input_names=["input"],
            dynamic_axes={"input": {0: "batch"}},
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def random_batch(
    graph: GraphAnalysis, seed: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Random inputs at the graph's shapes and random class labels for its loss input."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        name: torch.randn(graph.input_shapes[name], generator=generator)
        for name in graph.input_names
    }
    shape = graph.shape(loss_input(graph))
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    return inputs, labels


def pruned_models(
    model: onnx.ModelProto, sparsities: tuple[float, ...], *, round_to: int = 1
) -> dict[str, PruneResult]:
    """RANP-f at each sparsity, scored on one random batch of 2 at the export's shapes.

    A sparsity the method cannot reach (it keeps every channel) is left out.
    """
    graph = training_graph(model, batch=2)
    inputs, labels = random_batch(graph)
    data = [Batch({k: v.numpy() for k, v in inputs.items()}, labels.numpy())]
    options = PruneOptions(method="ranp-f", sparsity=0.5, device="cpu", validate=False)
    scoring = score_model(graph, data, options)
    models = {}
    for sparsity in sparsities:
        options = PruneOptions(
            method="ranp-f", sparsity=sparsity, device="cpu", validate=False, round_to=round_to
        )
        try:
            models[f"{sparsity:g}"] = prune_scored(graph, scoring, options)
        except PlanError:
            continue
    return models


def compare_step(
    model: onnx.ModelProto, batch: int, setup: TrainingSetup, *, timed_steps: int = 0
) -> dict[str, Any]:
    """Predict and measure one training step of ``to_torch(model)`` at ``batch``."""
    graph = training_graph(model, batch=batch)
    predicted = predict_training_memory(graph, setup)
    measured = measure_graph_step(graph, setup, timed_steps=timed_steps)
    return {
        "predicted": predicted.peak_bytes,
        "measured": measured.peak_bytes,
        "ratio": predicted.peak_bytes / measured.peak_bytes,
        "phase": predicted.phase,
        "node": predicted.node,
        "seconds": measured.seconds,
    }


def measure_original(
    module: torch.nn.Module, shape: tuple[int, ...], graph: GraphAnalysis, setup: TrainingSetup
) -> int:
    """The measured peak of the original module's step on the same batch."""
    inputs, labels = random_batch(graph)
    return measure_training_step(
        module, inputs, labels, optimizer=setup.optimizer, precision=setup.precision
    ).peak_bytes


def run_ratios(quick: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every network, variant, batch and optimizer: predicted and measured peaks."""
    rows: list[dict[str, Any]] = []
    for network in [*zoo_networks(quick), *monai_networks(quick)]:
        try:
            rows += _network_rows(network, quick, log)
        except RanpError as error:  # the model cannot be analysed, pruned or trained here
            log(f"  {network.name}: {error}")
            rows.append({"network": network.name, "refused": str(error)})
    return rows


def _network_rows(
    network: Network, quick: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One network's rows: each variant, batch and optimizer (and bfloat16 once)."""
    module, shape = network.build()
    full = export(module, shape)
    pruned = pruned_models(full, (0.5,) if quick else (0.5, 0.9))
    variants = {"full": full, **{key: result.model for key, result in pruned.items()}}
    log(f"  {network.name}: {', '.join(variants)}")
    rows = []
    for variant, model in variants.items():
        for batch in (2,) if quick else (2, 3):
            for optimizer in ("sgd", "adam"):
                setup = TrainingSetup(optimizer=optimizer)
                row = {"network": network.name, "variant": variant, "batch": batch}
                row.update(optimizer=optimizer, **compare_step(model, batch, setup))
                if variant == "full":
                    graph = training_graph(model, batch=batch)
                    row["original"] = measure_original(module.train(), shape, graph, setup)
                rows.append(row)
    if not quick:
        setup = TrainingSetup(precision="bfloat16")
        rows.append(
            {"network": network.name, "variant": "full", "batch": 2, "optimizer": "sgd",
             "precision": "bfloat16", **compare_step(full, 2, setup)}
        )  # fmt: skip
    return rows


def ratio_lines(result: dict[str, Any]) -> list[str]:
    """The ratio table and its summary."""
    refused = [row for row in result["ratios"] if "refused" in row]
    rows = [row for row in result["ratios"] if "refused" not in row]
    lines = [
        "## (g) Training memory: the model against real steps, and the payoff",
        "",
        "Predicted: `ranp-onnx report MODEL --training` (`ranp_onnx.analysis.training_memory`). "
        "Measured: one training step of `to_torch(model)` (the second; forward to the logits, "
        "cross-entropy, backward, optimizer step) from torch's allocator "
        f"({'max_memory_allocated' if result['device'] == 'cuda' else 'profiler memory events'}"
        f", on {result['device']}, {result['threads']} threads); 'original' is the same step "
        "of the torch module the model was exported from. RANP-f pruned on one random batch.",
        "",
        "| network | variant | batch | optimizer | predicted MB | measured MB | ratio | "
        "original MB | ratio to original | peak at |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        optimizer = row["optimizer"] + (f", {row['precision']}" if row.get("precision") else "")
        original = row.get("original")
        versus = f"{original / MB:.1f} | {row['predicted'] / original:.3f}" if original else "- | -"
        lines.append(
            f"| {row['network']} | {row['variant']} | {row['batch']} | {optimizer} | "
            f"{row['predicted'] / MB:.1f} | {row['measured'] / MB:.1f} | **{row['ratio']:.3f}** | "
            f"{versus} | {row['phase']}, {row['node'] or '-'} |"
        )
    ratios = [row["ratio"] for row in rows]
    within = sum(abs(r - 1) <= 0.1 for r in ratios)
    worst = sorted(rows, key=lambda row: -abs(row["ratio"] - 1))[:3]
    lines += [
        "",
        f"- within +-10% of the measured peak: **{within} of {len(rows)}** (target: all); "
        f"ratios from {min(ratios):.3f} to {max(ratios):.3f}, median "
        f"{float(np.median(ratios)):.3f}",
        "- furthest: "
        + "; ".join(
            f"{row['network']} {row['variant']} batch {row['batch']} {row['optimizer']}"
            f"{' ' + row['precision'] if row.get('precision') else ''} "
            f"({row['ratio']:.3f}, peak in the {row['phase']} at {row['node']})"
            for row in worst
        ),
        *(f"- {row['network']}: not measured ({row['refused']})" for row in refused),
    ]
    return lines
