"""The rewrite oracle for tests: prune with random scores and prove the rewrite exact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ranp_onnx.analysis.channels import ChannelAnalysis, analyse_channels, pruned_shapes
from ranp_onnx.analysis.costs import count_costs
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ir import runtime
from ranp_onnx.rewrite.oracle import ValidationResult, validate
from ranp_onnx.rewrite.surgery import rewrite
from ranp_onnx.selection.constraints import apply_constraints, global_keep


@dataclass(frozen=True)
class OracleRun:
    """What one random prune did."""

    channels: ChannelAnalysis
    keep: np.ndarray
    pruned: onnx.ModelProto
    error: float
    macs_before: int
    macs_after: int
    validation: ValidationResult


def random_prune(model: onnx.ModelProto, sparsity: float, seed: int = 0) -> OracleRun:
    """Prune at ``sparsity`` with random unit scores, rewrite, check and validate.

    Asserts: the checker passes with full_check, the oracle holds (1e-4), output shapes
    are kept, and the costs predicted from shapes equal the costs of the rewritten model.
    """
    graph = analyse(model)
    channels = analyse_channels(graph)
    scores = np.random.default_rng(seed).random(channels.unit_count)
    raw, _ = global_keep(channels, scores, sparsity, np.zeros(channels.unit_count, bool))
    fixed = np.array([bool(r) for r in channels.unit_fixed_reason])
    for group in channels.groups:
        if not group.prunable:
            fixed[group.units] = True
    keep, _ = apply_constraints(channels, raw, scores, fixed=fixed)
    pruned = rewrite(channels, keep)
    runtime.check_model(pruned, full_check=True)
    result = validate(graph, pruned, channels.kept_indices(keep))
    after = analyse(pruned, graph.input_shapes)
    predicted = count_costs(pruned_shapes(channels, keep))
    actual = count_costs(after)
    assert predicted.totals.macs == actual.totals.macs
    assert predicted.totals.params == actual.totals.params
    return OracleRun(
        channels=channels,
        keep=keep,
        pruned=pruned,
        error=result.worst[1],
        macs_before=count_costs(graph).totals.macs,
        macs_after=actual.totals.macs,
        validation=result,
    )
