"""``explain``: every weighted layer, its group, and a specific reason wherever it is kept."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import onnx
import pytest
from builders import make_model, random_weights
from click.testing import CliRunner
from onnx import helper
from pruning_models import SMALL, zoo_model

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import PlanError
from ranp_onnx.reporting.explain import Explanation, explain, format_explanation

#: A specific reason names the node or tensor (or the option) that fixes the channels.
NAMED = re.compile(r"'[^']+'")


def assert_specific(explanation: Explanation) -> None:
    for layer in explanation.layers:
        if not layer.prunable:
            assert layer.reasons, layer
        for reason in layer.reasons:
            assert NAMED.search(reason), f"{layer.node}: generic reason {reason!r}"
    for group in explanation.groups:
        assert group.prunable == (not group.reasons)
        assert all(NAMED.search(reason) for reason in group.reasons), group


def two_convs(
    middle: Sequence[onnx.NodeProto], between: str = "m", extra_outputs: Sequence[str] = ()
) -> onnx.ModelProto:
    """x -> Conv c1 (4 channels) -> a -> middle -> ``between`` -> Conv c2 (3 channels) -> y."""
    weights = random_weights(0, w1=(4, 2, 1, 1, 1), w2=(3, 4, 1, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        *middle,
        helper.make_node("Conv", [between, "w2"], ["y"], name="c2"),
    ]
    outputs = [("y", None), *((name, None) for name in extra_outputs)]
    return make_model(nodes, [("x", [1, 2, 4, 4, 4])], outputs, weights)


CASES = {
    "transpose": (
        two_convs(
            [
                helper.make_node("Transpose", ["a"], ["t"], name="t1", perm=[0, 2, 1, 3, 4]),
                helper.make_node("Transpose", ["t"], ["m"], name="t2", perm=[0, 2, 1, 3, 4]),
            ]
        ),
        "Transpose moves the channel axis (node 't1')",
    ),
    "softmax": (
        two_convs([helper.make_node("Softmax", ["a"], ["m"], name="sm", axis=1)]),
        "Softmax over the channel axis (node 'sm')",
    ),
    "unknown op": (
        two_convs([helper.make_node("Shrink", ["a"], ["m"], name="odd")]),
        "no rule for op 'Shrink' (node 'odd')",
    ),
    "graph output": (
        two_convs([helper.make_node("Relu", ["a"], ["m"], name="r")], extra_outputs=["m"]),
        "feeds graph output 'm'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hand_built_blocker_is_named_on_the_layer_it_fixes(case: str) -> None:
    model, reason = CASES[case]
    explanation = explain(analyse(model))
    by_node = {layer.node: layer for layer in explanation.layers}
    assert list(by_node) == ["c1", "c2"]
    assert not by_node["c1"].prunable and reason in by_node["c1"].reasons
    # c2 feeds the graph output y.
    assert by_node["c2"].reasons == ("feeds graph output 'y'",)
    assert by_node["c1"].channels == 4 and by_node["c1"].weight == "w1"
    assert_specific(explanation)


def test_a_residual_pair_is_one_group_with_its_members() -> None:
    weights = random_weights(1, w1=(4, 2, 1, 1, 1), w2=(4, 4, 1, 1, 1), w3=(3, 4, 1, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["b"], name="c2"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Conv", ["s", "w3"], ["y"], name="c3"),
    ]
    model = make_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)], weights)
    explanation = explain(analyse(model))
    layers = {layer.node: layer for layer in explanation.layers}
    assert layers["c1"].groups == layers["c2"].groups
    group = explanation.groups[layers["c1"].groups[0]]
    assert group.layers == ("c1", "c2") and group.prunable and group.width == 4
    assert {"add", "relu", "c1", "c2", "c3"} <= set(group.members)
    assert layers["c1"].status == "prunable"


def test_a_weight_computed_at_run_time_is_listed_with_its_reason() -> None:
    weights = random_weights(2, w2=(3, 4, 1, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="dynamic"),
        helper.make_node("Conv", ["a", "w2"], ["y"], name="c2"),
    ]
    model = make_model(
        nodes, [("x", [1, 2, 4, 4, 4]), ("w", [4, 2, 1, 1, 1])], [("y", None)], weights
    )
    explanation = explain(analyse(model))
    first = explanation.layers[0]
    assert (first.node, first.channels, first.groups, first.prunable) == (
        "dynamic",
        None,
        (),
        False,
    )
    assert first.reasons == (
        "not a scored layer: Conv weight is computed at run time (node 'dynamic')",
    )
    assert_specific(explanation)


def test_keep_and_ignore_are_reasons_and_unknown_names_are_refused() -> None:
    weights = random_weights(3, w1=(4, 2, 1, 1, 1), w2=(4, 4, 1, 1, 1), w3=(3, 4, 1, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="c2"),
        helper.make_node("Conv", ["b", "w3"], ["y"], name="c3"),
    ]
    graph = analyse(make_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)], weights))
    explanation = explain(graph, keep=["w1"], ignore=["c2"])
    reasons = {layer.node: layer.reasons for layer in explanation.layers}
    assert reasons["c1"] == ("kept whole by --keep 'c1'",)
    assert reasons["c2"] == ("left out by --ignore 'c2'",)
    with pytest.raises(PlanError, match="`keep` nope: no scored layer"):
        explain(graph, keep=["nope"])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_models_give_a_specific_reason_for_every_kept_layer(name: str) -> None:
    graph = analyse(zoo_model(name))
    explanation = explain(graph)
    assert_specific(explanation)
    scored = [layer for layer in explanation.layers if layer.channels is not None]
    assert len(scored) == len({layer.node for layer in scored}) > 0
    # The output layer is always kept; ResNet's channel-padding shortcuts fix their chains.
    assert explanation.layers[-1].status == "kept whole"
    prunable = sum(layer.prunable for layer in explanation.layers)
    assert prunable == len(scored) - 1 if name.startswith("unet") else prunable > 0
    assert "kept whole" in format_explanation(explanation)


def test_cli_explain_prints_the_table_and_json(tmp_path: Path) -> None:
    model, _ = CASES["softmax"]
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    text = CliRunner().invoke(cli, ["explain", str(path)])
    assert text.exit_code == 0, text.output
    assert "layers: 2 (0 prunable, 2 kept whole)" in text.output
    assert "Softmax over the channel axis (node 'sm')" in text.output
    result = CliRunner().invoke(cli, ["explain", str(path), "--json"])
    document = json.loads(result.output)
    assert [layer["node"] for layer in document["layers"]] == ["c1", "c2"]
    assert document["unprunable_layers"] == 2
    assert document["groups"][0]["reasons"] == ["Softmax over the channel axis (node 'sm')"]


def test_cli_explain_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save_model(CASES["softmax"][0], str(path))
    result = CliRunner().invoke(cli, ["explain", str(path), "--keep", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "no scored layer" in result.output
    missing = CliRunner().invoke(cli, ["explain", str(tmp_path / "absent.onnx")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output


def test_a_grouped_conv_sharing_its_weight_is_named() -> None:
    weights = random_weights(4, w1=(4, 2, 1, 1, 1), w=(4, 2, 1, 1, 1), w3=(3, 4, 1, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="g1", group=2),
        helper.make_node("Conv", ["b", "w"], ["c"], name="g2", group=2),
        helper.make_node("Conv", ["c", "w3"], ["y"], name="c3"),
    ]
    model = make_model(nodes, [("x", [1, 2, 4, 4, 4])], [("y", None)], weights)
    explanation = explain(analyse(model))
    reasons = {layer.node: layer.reasons for layer in explanation.layers}
    shared = "grouped Conv shares its weight with another node (node 'g1')"
    assert shared in reasons["c1"] and shared in reasons["g2"]
    assert explanation.groups[explanation.layers[1].groups[0]].layers == ("g1", "g2")
    assert_specific(explanation)
