"""(b) Analysis and rewrite on generated graphs of many convolutions.

The graph repeats one block: ``Conv -> Relu``, a residual ``Add`` with the block input
every second block, and every third block a ``Concat`` of the block's output with its
input followed by a 1x1x1 ``Conv`` back to the block width (so both concat offsets and
residual ties appear all along the graph). The spatial size is tiny (4^3): the
benchmark measures the tool's own work per node, not the convolutions.

Timed: analysis (load + shapes + costs + channel groups) and rewrite (a random selection
at sparsity 0.5, constraints applied, then the rewrite), each per convolution.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .common import Timing

WIDTH = 8
SPATIAL = 4


def generated_graph(convs: int, seed: int = 0) -> onnx.ModelProto:
    """A model with ``convs`` convolutions, residual additions and concats."""
    generator = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current, made, block = "input", 0, 0

    def conv(source: str, channels_in: int, kernel: int) -> str:
        nonlocal made
        weight = f"w{made}"
        shape = (WIDTH, channels_in, kernel, kernel, kernel)
        scale = 1 / np.sqrt(np.prod(shape[1:]))
        value = (generator.standard_normal(shape) * scale).astype(np.float32)
        initializers.append(numpy_helper.from_array(value, weight))
        out = f"c{made}"
        pad = kernel // 2
        nodes.append(
            helper.make_node("Conv", [source, weight], [out], pads=[pad] * 6, name=f"conv{made}")
        )
        made += 1
        return out

    while made < convs:
        start = current
        out = f"r{block}"
        nodes.append(helper.make_node("Relu", [conv(start, WIDTH, 3)], [out], name=f"relu{block}"))
        if block % 2 == 1:
            nodes.append(helper.make_node("Add", [out, start], [f"a{block}"], name=f"add{block}"))
            out = f"a{block}"
        if block % 3 == 2 and made < convs:
            joined = f"j{block}"
            nodes.append(helper.make_node("Concat", [out, start], [joined], axis=1, name=joined))
            out = conv(joined, 2 * WIDTH, 1)
        current, block = out, block + 1
    shape = [1, WIDTH, SPATIAL, SPATIAL, SPATIAL]
    graph = helper.make_graph(
        nodes,
        f"generated-{convs}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _analyse_and_rewrite(model: onnx.ModelProto) -> tuple[float, float]:
    from ranp_onnx.analysis.channels import analyse_channels
    from ranp_onnx.analysis.costs import count_costs
    from ranp_onnx.analysis.shapes import analyse
    from ranp_onnx.rewrite.surgery import rewrite
    from ranp_onnx.selection.constraints import apply_constraints, global_keep

    start = time.perf_counter()
    graph = analyse(model)
    count_costs(graph)
    channels = analyse_channels(graph)
    middle = time.perf_counter()
    scores = np.random.default_rng(0).random(channels.unit_count)
    excluded = np.zeros(channels.unit_count, dtype=bool)
    raw, _ = global_keep(channels, scores, 0.5, excluded)
    fixed = np.array([bool(reason) for reason in channels.unit_fixed_reason])
    for group in channels.groups:
        if not group.prunable:
            fixed[group.units] = True
    keep, _ = apply_constraints(channels, raw, scores, fixed=fixed)
    rewrite(channels, keep)
    return middle - start, time.perf_counter() - middle


def run_scale(sizes: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    """Time analysis and rewrite at each size, ``repeats`` times (interleaved over sizes)."""
    models = {size: generated_graph(size) for size in sizes}
    analysis: dict[int, list[float]] = {size: [] for size in sizes}
    rewriting: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            first, second = _analyse_and_rewrite(models[size])
            analysis[size].append(first)
            rewriting[size].append(second)
    rows = []
    for size in sizes:
        totals = tuple(a + r for a, r in zip(analysis[size], rewriting[size]))
        rows.append(
            {
                "convs": size,
                "nodes": len(models[size].graph.node),
                "analysis": Timing(tuple(analysis[size])),
                "rewrite": Timing(tuple(rewriting[size])),
                "total": Timing(totals),
                "per_conv_ms": Timing(tuple(1e3 * t / size for t in totals)),
            }
        )
    return rows
