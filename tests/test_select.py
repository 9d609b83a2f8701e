"""Selection: the reference's global top-k, ties, the last layer, and the constraints."""

from __future__ import annotations

import numpy as np
import pytest
from builders import make_model, random_weights
from onnx import helper

from ranp_onnx.analysis.channels import ChannelAnalysis, analyse_channels
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.selection.constraints import apply_constraints, global_keep, per_group_keep


def _chain(widths: tuple[int, ...], groups: tuple[int, ...] | None = None) -> ChannelAnalysis:
    """Conv -> Relu -> Conv ... with the given output widths (the last is the output)."""
    nodes, weights = [], {}
    previous, channels_in = "x", 2
    groups = groups or (1,) * len(widths)
    for i, (width, group) in enumerate(zip(widths, groups)):
        weights |= random_weights(i, **{f"w{i}": (width, channels_in // group, 1, 1, 1)})
        nodes.append(
            helper.make_node("Conv", [previous, f"w{i}"], [f"c{i}"], group=group, name=f"conv{i}")
        )
        if i < len(widths) - 1:
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
            previous = f"r{i}"
        channels_in = width
    last = f"c{len(widths) - 1}"
    model = make_model(nodes, [("x", [1, 2, 2, 2, 2])], [(last, None)], weights)
    return analyse_channels(analyse(model))


def _unit_scores(channels: ChannelAnalysis, per_layer: list[list[float]]) -> np.ndarray:
    scores = np.zeros(channels.unit_count)
    for layer, values in zip(channels.layers, per_layer):
        scores[layer.units] = values
    return scores


def _fixed(channels: ChannelAnalysis) -> np.ndarray:
    return np.array([bool(reason) for reason in channels.unit_fixed_reason])


def test_global_top_k_keeps_ties_and_counts_the_last_layer() -> None:
    channels = _chain((4, 3))
    assert channels.neuron_count == 7
    scores = _unit_scores(channels, [[0.9, 0.1, 0.5, 0.5], [0.3, 0.2, 0.8]])
    keep, threshold = global_keep(channels, scores, 0.5, np.zeros(channels.unit_count, bool))
    # k = floor(7 * 0.5) = 3; the third largest score is 0.5; both 0.5s are kept.
    assert threshold == 0.5
    first, last = channels.layers
    assert keep[first.units].tolist() == [True, False, True, True]
    assert keep[last.units].tolist() == [False, False, True]
    final, emptied = apply_constraints(channels, keep, scores, fixed=_fixed(channels))
    assert final[last.units].all()  # the output layer is always kept in full
    assert final[first.units].tolist() == [True, False, True, True]
    assert emptied == ()


def test_an_emptied_layer_is_infeasible_and_keeps_its_best_channel() -> None:
    channels = _chain((4, 3))
    scores = _unit_scores(channels, [[0.1, 0.3, 0.2, 0.05], [0.9, 0.8, 0.7]])
    keep, _ = global_keep(channels, scores, 0.6, np.zeros(channels.unit_count, bool))
    first = channels.layers[0]
    assert not keep[first.units].any()
    final, emptied = apply_constraints(channels, keep, scores, fixed=_fixed(channels))
    assert emptied == (channels.unit_group[first.units[0]],)
    assert final[first.units].tolist() == [False, True, False, False]
    final, _ = apply_constraints(channels, keep, scores, fixed=_fixed(channels), min_channels=2)
    assert final[first.units].tolist() == [False, True, True, False]


def test_round_to_adds_the_next_best_channels() -> None:
    channels = _chain((6, 3))
    scores = _unit_scores(channels, [[6, 5, 4, 3, 2, 1], [9, 9, 9]])
    keep = np.zeros(channels.unit_count, bool)
    keep[channels.layers[0].units[:3]] = True
    final, _ = apply_constraints(channels, keep, scores, fixed=_fixed(channels), round_to=4)
    assert final[channels.layers[0].units].tolist() == [True] * 4 + [False] * 2


def test_grouped_convolution_blocks_keep_equal_counts() -> None:
    channels = _chain((8, 4, 3), groups=(1, 4, 1))
    feeder = channels.groups[int(channels.unit_group[channels.layers[0].units[0]])]
    assert len(feeder.equal_blocks) == 4
    scores = _unit_scores(channels, [[8, 7, 1, 2, 6, 5, 4, 3], [1, 2, 3, 4], [1, 1, 1]])
    keep = np.zeros(channels.unit_count, bool)
    keep[channels.layers[0].units[[0, 1, 4]]] = True  # blocks {0,1}: 2, {4,5}: 1, others 0
    keep[channels.layers[1].units] = True
    final, _ = apply_constraints(channels, keep, scores, fixed=_fixed(channels))
    counts = [int(final[block].sum()) for block in feeder.equal_blocks]
    assert counts == [2, 2, 2, 2]


def test_per_group_keep_takes_ceil_of_each_group() -> None:
    channels = _chain((5, 4, 3))
    scores = _unit_scores(channels, [[1, 5, 2, 4, 3], [4, 3, 2, 1], [1, 2, 3]])
    fractions = np.full(len(channels.groups), 0.5)
    keep = per_group_keep(channels, scores, fractions)
    assert keep[channels.layers[0].units].tolist() == [False, True, False, True, True]  # ceil(2.5)
    assert keep[channels.layers[1].units].tolist() == [True, True, False, False]


@pytest.mark.parametrize("seed", range(5))
def test_higher_sparsity_keeps_a_subset(seed: int) -> None:
    channels = _chain((7, 5, 6, 3), groups=(1, 1, 1, 1))
    rng = np.random.default_rng(seed)
    scores = rng.random(channels.unit_count).round(1)  # ties on purpose
    fixed = _fixed(channels)
    previous = None
    for sparsity in np.linspace(0.0, 0.99, 23):
        raw, _ = global_keep(channels, scores, float(sparsity), np.zeros(channels.unit_count, bool))
        keep, _ = apply_constraints(channels, raw, scores, fixed=fixed, round_to=2)
        if previous is not None:
            assert not (keep & ~previous).any()
        previous = keep
