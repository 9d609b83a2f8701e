"""From a regularized model to the smaller one: which channels go, the rewrite, the proof.

- ``channel``: the removed groups are units; every other unit is kept.
- ``shape``: a unit is freed when every weight that reads it (the input slices of every
  Conv, ConvTranspose, Gemm or MatMul consuming it) is exactly 0, i.e. all its columns
  are gone; its producing filters go with it. The other removed columns stay in the
  written model as zeros.

The rewrite is :func:`ranp_onnx.rewrite.rewrite` and the proof
:func:`ranp_onnx.rewrite.oracle.validate`: the pruned model must equal the regularized model
with the removed channels masked where they are consumed. Removed groups were set to
exactly 0 during training, so that proof covers everything; how far from 0 the groups
were when they were removed is in the schedules (``removed_norm``, ``removed_ratio``).
Costs are counted densely (what a runtime executes) and, for columns, the way the paper
counts them: a convolution that lost a fraction of its columns lost that fraction of its
multiply-accumulates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..analysis.channels import ChannelAnalysis, analyse_channels
from ..analysis.costs import Convention, CostReport, count_costs
from ..analysis.shapes import analyse
from ..errors import InternalError
from ..ir.graph import GraphAnalysis
from ..rewrite.oracle import ValidationResult, validate
from ..rewrite.surgery import rewrite, static_value
from ..selection.constraints import apply_constraints
from .groups import RegularizedLayer, WeightGroups, weight_axes, weight_groups
from .schedule import LayerSchedule


@dataclass(frozen=True)
class Finished:
    """The smaller model and what it took.

    Attributes:
        model: The pruned model (removed columns still zero in it).
        removed_units: Channels removed physically.
        validation: The oracle's result (None: validation off, or nothing removed).
        after: Dense costs of the pruned model.
        sparse_flops: Its FLOPs with zero columns not counted (equal to the dense FLOPs
            for channel granularity).
    """

    model: onnx.ModelProto
    removed_units: int
    validation: ValidationResult | None
    after: CostReport
    sparse_flops: int

    def to_json(self) -> dict[str, Any]:
        """The record's ``result`` entry (without the model)."""
        return {
            "removed_channels": self.removed_units,
            "validation": self.validation.to_json() if self.validation else None,
            "after": self.after.totals.to_json(),
            "sparse_flops": self.sparse_flops,
        }


def finish(
    trained: onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]],
    groups: WeightGroups,
    schedules: Sequence[LayerSchedule],
    *,
    convention: Convention,
    min_keep: int = 1,
    check: bool = True,
    tolerance: float = 1e-4,
    device: str = "auto",
) -> Finished:
    """Rewrite the regularized model without its removed channels, and prove it.

    Args:
        trained: The regularized model (the same graph the groups were found in).
        input_shapes: The analysed input shapes.
        groups: The weight groups.
        schedules: Their schedules (which groups were removed).
        convention: How costs are counted.
        min_keep: Channels every prunable channel group keeps.
        check: Run the oracle.
        tolerance: Its tolerance.
        device: Its onnxruntime device.

    Raises:
        ValidationError: The rewrite does not reproduce the masked model.
    """
    graph = analyse(trained, input_shapes)
    channels = analyse_channels(graph)
    if channels.unit_count != groups.channels.unit_count:
        raise InternalError("the trained model's channels differ from the original's")
    if groups.granularity == "channel":
        removed = np.zeros(channels.unit_count, dtype=bool)
        for layer, schedule in zip(groups.layers, schedules):
            removed[layer.units[schedule.removed]] = True
        regularized = np.concatenate([layer.units for layer in groups.layers])
        fixed = np.ones(channels.unit_count, dtype=bool)
        fixed[regularized] = False
        scores = np.zeros(channels.unit_count)
    else:
        scores = consumer_norms(channels)
        removed = freed_units(channels, scores)
        fixed = ~removed
    keep, _ = apply_constraints(
        channels, ~removed, scores, fixed=fixed & ~removed, min_channels=min_keep
    )
    kept = channels.kept_indices(keep)
    pruned = rewrite(channels, keep) if kept else trained
    validation = (
        validate(graph, pruned, kept, tolerance=tolerance, device=device)
        if check and kept
        else None
    )
    pruned_graph = analyse(pruned, input_shapes)
    after = count_costs(pruned_graph, convention)
    sparse = float(after.totals.flops)
    if groups.granularity == "shape":
        sparse -= zero_column_flops(pruned_graph, convention)
    return Finished(pruned, int((~keep).sum()), validation, after, round(sparse))


def consumer_norms(channels: ChannelAnalysis) -> np.ndarray:
    """Per unit, the L1 norm of every weight slice that reads it (inf where unknown)."""
    graph = channels.graph
    norms = np.zeros(channels.unit_count)
    for layer in channels.layers:
        _, in_axis = weight_axes(channels, layer)
        if in_axis is None:
            norms[layer.units] = np.inf  # no separate input axis: cannot tell, keep
            continue
        weight = np.abs(static_value(graph, layer.weight).astype(np.float64))
        other = tuple(d for d in range(weight.ndim) if d != in_axis)
        np.add.at(norms, channels.spaces[(layer.weight, in_axis)], weight.sum(axis=other))
    return norms


def freed_units(channels: ChannelAnalysis, norms: np.ndarray) -> np.ndarray:
    """Units of prunable groups whose every consuming weight is exactly 0."""
    freed = np.zeros(channels.unit_count, dtype=bool)
    fixed = np.array([bool(reason) for reason in channels.unit_fixed_reason])
    for group in channels.groups:
        if group.prunable:
            units = group.units
            freed[units] = (norms[units] == 0) & ~fixed[units]
    return freed


def column_norms(graph: GraphAnalysis, layer: RegularizedLayer) -> np.ndarray:
    """The L1 norm of every column of a shape layer, from the model's initializers."""
    total = np.zeros(layer.size + 1)
    for piece in layer.slices:
        weight = np.abs(static_value(graph, piece.tensor).astype(np.float64))
        other = tuple(d for d in range(weight.ndim) if d not in piece.axes)
        index = np.where(piece.index >= 0, piece.index, layer.size).reshape(-1)
        np.add.at(total, index, weight.sum(axis=other).reshape(-1))
    return total[:-1]


def zero_column_flops(graph: GraphAnalysis, convention: Convention) -> float:
    """FLOPs of the multiply-accumulates that read zero columns (the paper does not count them)."""
    channels = analyse_channels(graph)
    groups = weight_groups(channels, "shape", graph.initializer_names)
    report = count_costs(graph, convention)
    macs = {layer.name: layer.macs for layer in report.layers}
    per_mac = 1 if convention == "ranp-paper" else 2
    total = 0.0
    for layer in groups.layers:
        zero = int((column_norms(graph, layer) == 0).sum())
        total += per_mac * macs[layer.name] * zero / layer.size
    return total


def zero_column_masks(graph: GraphAnalysis) -> dict[str, np.ndarray]:
    """Per convolution weight with zero columns: 1 where it may train, 0 where it stays 0."""
    channels = analyse_channels(graph)
    groups = weight_groups(channels, "shape", graph.initializer_names)
    masks = {}
    for layer in groups.layers:
        alive = column_norms(graph, layer) > 0
        if alive.all():
            continue
        (piece,) = layer.slices
        shape = graph.shape(piece.tensor)
        view = [shape[d] if d in piece.axes else 1 for d in range(len(shape))]
        flags = alive[piece.index].reshape(view).astype(np.float32)
        masks[piece.tensor] = np.broadcast_to(flags, shape).copy()
    return masks
