"""The pruning pipeline as a library: prune, budgets, constraints, plans, apply, Algorithm 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from builders import export_module
from click.testing import CliRunner
from pruning_models import CLASSES, segmentation_npz, zoo_model
from torch import nn

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.cli.main import cli
from ranp_onnx.errors import DataError, PlanError, UnsupportedModelError, ValidationError
from ranp_onnx.ir import runtime
from ranp_onnx.ir.graph import GraphAnalysis
from ranp_onnx.ir.load import load_model
from ranp_onnx.ir.save import save_model
from ranp_onnx.pipeline import (
    PruneOptions,
    PruneResult,
    Scoring,
    apply_plan,
    prune,
    prune_scored,
    score_model,
)
from ranp_onnx.rewrite.oracle import validate
from ranp_onnx.scoring.data import Batch, open_data
from ranp_onnx.selection.constraints import global_keep
from ranp_onnx.selection.criteria import method_names
from ranp_onnx.selection.plan import PLAN_FORMAT, PrunePlan
from ranp_onnx.selection.search import (
    SEARCH_TOLERANCE,
    predicted_costs,
    search_max_sparsity,
    select_at,
)

UNET_SHAPE = (1, 16, 16, 16)


@pytest.fixture(scope="module")
def unet() -> GraphAnalysis:
    return analyse(zoo_model("unet3d-15"))


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    return segmentation_npz(folder / "train.npz", UNET_SHAPE, CLASSES, samples=2)


@pytest.fixture(scope="module")
def scoring(unet: GraphAnalysis, data_path: Path) -> Scoring:
    data = open_data(data_path, unet, ignore_index=255)
    return score_model(unet, data, PruneOptions(method="ranp-f", ignore_index=255))


def _kept_counts(result: PruneResult) -> dict[str, int]:
    return {layer["node"]: len(layer["kept"]) for layer in result.plan.layers}


def test_prune_writes_a_valid_smaller_model_and_leaves_the_input_alone(
    unet: GraphAnalysis, data_path: Path
) -> None:
    original = unet.model.proto.SerializeToString()
    data = open_data(data_path, unet, ignore_index=255)
    calls: list[tuple[int, int | None]] = []
    result = prune(
        unet,
        data,
        PruneOptions(method="ranp-f", sparsity=0.5, ignore_index=255),
        total_batches=len(data),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 2), (2, 2)]
    assert unet.model.proto.SerializeToString() == original
    onnx.checker.check_model(result.model, full_check=True)
    assert list(result.model.opset_import) == list(unet.model.proto.opset_import)
    assert result.model.ir_version <= runtime.max_ir_version()
    runtime.make_session(result.model)
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    assert result.validation.conclusive
    assert result.after.totals.flops < result.before.totals.flops
    assert result.after.totals.params < result.before.totals.params
    achieved = result.plan.achieved
    assert achieved["neuron_sparsity"] == pytest.approx(
        1 - achieved["neurons_kept"] / achieved["neurons"]
    )
    # The output layer (kept whole) counts in N, so the achieved sparsity may fall short.
    assert 0.35 < achieved["neuron_sparsity"] <= 0.5


def test_costs_never_increase_with_sparsity(scoring: Scoring) -> None:
    for method in method_names():
        options = PruneOptions(method=method)
        previous = None
        for sparsity in np.linspace(0.0, 0.99, 12):
            selection = select_at(scoring, method, float(sparsity), options.selection)
            totals = predicted_costs(scoring, selection.keep, "standard").totals
            current = (totals.flops, totals.memory_mb, totals.params)
            if previous is not None:
                assert all(a <= b for a, b in zip(current, previous)), (method, sparsity)
            previous = current


def test_zero_scores_are_taken_in_a_seeded_order_to_reach_k(scoring: Scoring) -> None:
    """Ties at a threshold of 0 would keep everything; k is reached instead (select.py)."""
    channels = scoring.channels
    scores = np.zeros(channels.unit_count)
    first = channels.layers[0].units
    scores[first[:2]] = 1.0  # two units with signal, the rest none
    excluded = np.zeros(channels.unit_count, bool)
    previous = None
    for sparsity in (0.2, 0.5, 0.9):
        keep, threshold = global_keep(channels, scores, sparsity, excluded, seed=3)
        assert threshold == 0.0 and keep[first[:2]].all()
        target = int(np.floor(channels.neuron_count * (1 - sparsity)))
        assert int(channels.unit_neurons[keep].sum()) == target
        if previous is not None:
            assert not (keep & ~previous).any()  # a subset as the sparsity rises
        previous = keep
    again, _ = global_keep(channels, scores, 0.5, excluded, seed=3)
    other, _ = global_keep(channels, scores, 0.5, excluded, seed=4)
    assert (again == global_keep(channels, scores, 0.5, excluded, seed=3)[0]).all()
    assert (again != other).any()


def test_achieved_costs_match_the_prediction_and_fall(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    flops = []
    for sparsity in (0.3, 0.5, 0.8, 0.95):
        result = prune_scored(unet, scoring, PruneOptions(method="ranp-m", sparsity=sparsity))
        predicted = predicted_costs(scoring, result.selection.keep, "standard").totals
        assert result.after.totals.flops == predicted.flops
        assert result.after.totals.memory_mb == pytest.approx(predicted.memory_mb)
        flops.append(result.after.totals.flops)
    assert flops == sorted(flops, reverse=True)


@pytest.mark.parametrize(
    ("target", "metric"), [("target_flops", "flops"), ("target_memory", "memory_mb")]
)
def test_budget_is_met_with_the_least_pruning(
    unet: GraphAnalysis, scoring: Scoring, target: str, metric: str
) -> None:
    options = PruneOptions(method="ranp-f", **{target: 0.3})  # type: ignore[arg-type]
    result = prune_scored(unet, scoring, options)
    full = float(getattr(result.before.totals, metric))
    assert float(getattr(result.after.totals, metric)) <= 0.3 * full
    assert result.plan.achieved["fraction_kept"][metric] <= 0.3
    sparsity = result.plan.settings["sparsity"]
    assert 0 < sparsity < 1
    less = select_at(scoring, "ranp-f", sparsity - 2 * SEARCH_TOLERANCE, options.selection)
    assert float(getattr(predicted_costs(scoring, less.keep, "standard").totals, metric)) > (
        0.3 * full
    )


def test_unreachable_budget_and_contradictory_targets_are_refused(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    with pytest.raises(PlanError, match=r"not reachable .* smallest model it can make keeps"):
        prune_scored(unet, scoring, PruneOptions(method="ranp-f", target_flops=1e-6))
    for options in (
        PruneOptions(),
        PruneOptions(sparsity=0.5, target_flops=0.5),
        PruneOptions(target_flops=0.5, target_memory=0.5),
    ):
        with pytest.raises(PlanError, match="exactly one of"):
            prune_scored(unet, scoring, options)
    with pytest.raises(PlanError, match=r"`sparsity` 1\.0"):
        prune_scored(unet, scoring, PruneOptions(sparsity=1.0))
    with pytest.raises(PlanError, match="unknown method 'magic'"):
        prune(unet, None, PruneOptions(method="magic", sparsity=0.5))
    with pytest.raises(PlanError, match="needs `data`"):
        prune(unet, None, PruneOptions(method="ranp-f", sparsity=0.5))


def test_min_channels_keeps_every_layer_and_round_to_rounds_up(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    options = PruneOptions(method="vanilla", sparsity=0.95, min_channels=3)
    result = prune_scored(unet, scoring, options)
    assert not result.selection.feasible  # vanilla empties layers at 95%: rescued
    for layer in result.plan.layers:
        assert len(layer["kept"]) >= min(3, layer["channels"])
    for group in result.plan.groups:
        assert group["kept_count"] >= min(3, group["width"])
    rounded = prune_scored(unet, scoring, dataclasses.replace(options, min_channels=1, round_to=4))
    for group in rounded.plan.groups:
        assert group["kept_count"] % 4 == 0 or group["kept_count"] == group["width"]
    assert rounded.validation is not None and rounded.validation.worst[1] <= 1e-4


def test_keep_and_ignore_name_layers(unet: GraphAnalysis, data_path: Path) -> None:
    first, second = "encoders.0.conv2.conv.weight", "/decoders.2/conv1/conv/Conv"
    data = open_data(data_path, unet, ignore_index=255)
    options = PruneOptions(
        method="ranp-f", sparsity=0.8, ignore_index=255, keep=(first,), ignore=(second,)
    )
    result = prune(unet, data, options)
    by_weight = {layer["weight"]: layer for layer in result.plan.layers}
    by_node = {layer["node"]: layer for layer in result.plan.layers}
    assert len(by_weight[first]["kept"]) == by_weight[first]["channels"]
    assert len(by_node[second]["kept"]) == by_node[second]["channels"]
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    for option in ("keep", "ignore"):
        bad = dataclasses.replace(options, **{option: ("nope",)})
        with pytest.raises(PlanError, match=f"`{option}` nope: no scored layer"):
            prune(unet, data, bad)


def test_reinit_redraws_kept_weights_after_validation(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    options = PruneOptions(method="ranp-f", sparsity=0.5)
    kept = prune_scored(unet, scoring, options)
    fresh = prune_scored(unet, scoring, dataclasses.replace(options, reinit=True))
    # Validation ran on the rewrite, before the weights were redrawn.
    assert fresh.validation is not None and fresh.validation.worst[1] <= 1e-4
    old = {t.name: onnx.numpy_helper.to_array(t) for t in kept.model.graph.initializer}
    new = {t.name: onnx.numpy_helper.to_array(t) for t in fresh.model.graph.initializer}
    assert old.keys() == new.keys()
    assert all(old[name].shape == new[name].shape for name in old)
    weight = "encoders.1.conv1.conv.weight"
    assert not np.allclose(old[weight], new[weight])
    assert fresh.after.totals == kept.after.totals
    # The masked original no longer predicts the re-initialised model.
    indices = kept.selection.keep
    with pytest.raises(ValidationError, match="validation failed"):
        validate(unet, fresh.model, scoring.channels.kept_indices(indices))


def test_plan_json_describes_groups_settings_and_results(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    result = prune_scored(unet, scoring, PruneOptions(method="ranp-f", sparsity=0.6))
    document = json.loads(result.plan.dumps())
    assert document["format"] == PLAN_FORMAT
    assert document["settings"]["method"] == "ranp-f" and document["settings"]["sparsity"] == 0.6
    achieved = document["achieved"]
    for key in ("neurons", "neurons_kept", "neuron_sparsity", "before", "after", "fraction_kept"):
        assert key in achieved
    for totals in (achieved["before"], achieved["after"]):
        assert {"params", "flops", "memory_mb"} <= totals.keys()
    assert len(document["groups"]) == len(scoring.channels.groups)
    for group in document["groups"]:
        assert group["members"] and group["layers"]
        assert len(group["kept"]) == group["kept_count"] <= group["width"]
        assert {"kept_min", "kept_mean", "removed_max", "removed_mean"} == group["scores"].keys()
        assert group["gflops_after"] <= group["gflops_before"]
        assert group["memory_mb_after"] <= group["memory_mb_before"]
        if group["prunable"] and group["scores"]["removed_max"] is not None:
            assert group["scores"]["kept_min"] >= 0
    (unprunable,) = document["unprunable"]
    assert unprunable["layers"] == ["/head/Conv"] and "Softmax" in unprunable["reason"]
    assert PrunePlan.from_json(document).layers == result.plan.layers
    with pytest.raises(PlanError, match="not a ranp-onnx plan"):
        PrunePlan.from_json({"format": "something else"})


def test_plan_applies_to_the_same_model_and_to_a_larger_export(
    unet: GraphAnalysis, scoring: Scoring
) -> None:
    result = prune_scored(unet, scoring, PruneOptions(method="ranp-f", sparsity=0.7))
    plan = PrunePlan.from_json(json.loads(result.plan.dumps()))
    again = apply_plan(unet, plan)
    assert again.model.graph.initializer == result.model.graph.initializer
    larger = apply_plan(zoo_model("unet3d-15", input_shape=(1, 32, 32, 32)), plan)
    assert larger.validation is not None and larger.validation.worst[1] <= 1e-4
    assert _kept_counts(larger) == _kept_counts(result)
    assert larger.after.totals.params == result.after.totals.params
    assert larger.after.totals.flops == pytest.approx(8 * result.after.totals.flops, rel=0.01)
    dynamic = zoo_model("unet3d-15", dynamic=True)
    applied = apply_plan(dynamic, plan, input_shapes={"": (2, 1, 32, 16, 16)})
    assert applied.validation is not None and applied.validation.worst[1] <= 1e-4


def test_a_plan_that_does_not_fit_is_refused(scoring: Scoring, unet: GraphAnalysis) -> None:
    result = prune_scored(unet, scoring, PruneOptions(method="random", sparsity=0.5))
    document = result.plan.to_json()
    with pytest.raises(PlanError, match="is not in the plan"):
        apply_plan(zoo_model("c3d"), result.plan)
    wider = dict(document["layers"][0], channels=99)
    bad = PrunePlan.from_json({**document, "layers": [wider, *document["layers"][1:]]})
    with pytest.raises(PlanError, match="has 4 channels; the plan was made for 99"):
        apply_plan(unet, bad)
    head = next(layer for layer in document["layers"] if layer["node"] == "/head/Conv")
    emptied = [dict(layer, kept=[]) if layer is head else layer for layer in document["layers"]]
    with pytest.raises(PlanError, match="cannot remove"):
        apply_plan(unet, PrunePlan.from_json({**document, "layers": emptied}))


def test_algorithm2_finds_the_largest_feasible_sparsity(scoring: Scoring) -> None:
    options = PruneOptions(method="ranp-f")
    sparsity, selection = search_max_sparsity(scoring, options.selection)
    assert selection.feasible and 0 < sparsity < 1
    assert select_at(scoring, "ranp-f", sparsity, options.selection).feasible
    assert not select_at(
        scoring, "ranp-f", sparsity + 2 * SEARCH_TOLERANCE, options.selection
    ).feasible


@pytest.mark.parametrize("method", method_names())
def test_every_method_prunes_exactly(unet: GraphAnalysis, scoring: Scoring, method: str) -> None:
    # SNIP's sparsity is over parameters: at 50% every neuron keeps a weight.
    sparsity = 0.9 if method == "snip" else 0.5
    result = prune_scored(unet, scoring, PruneOptions(method=method, sparsity=sparsity))
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    assert result.after.totals.flops < result.before.totals.flops
    assert all(len(layer["kept"]) >= 1 for layer in result.plan.layers)


def test_a_graph_without_convolution_is_refused() -> None:
    linear = export_module(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), torch.randn(2, 4)
    )
    with pytest.raises(UnsupportedModelError, match="no convolution"):
        prune(linear, None, PruneOptions(method="random", sparsity=0.5))
    with pytest.raises(UnsupportedModelError, match="no convolution"):
        apply_plan(linear, PrunePlan("m", {}, (), ()))


def test_a_model_with_nothing_to_prune_is_refused() -> None:
    single = export_module(nn.Conv3d(2, 4, 3), torch.randn(1, 2, 4, 4, 4))
    with pytest.raises(PlanError, match=r"nothing to prune: .*graph output"):
        prune(single, None, PruneOptions(method="l1", sparsity=0.5))


class AliasedNorms(nn.Module):
    """Default BatchNorm parameters: the exporter feeds ``bn_b`` Identity aliases of ``bn_a``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv3d(2, 6, 3, padding=1), nn.BatchNorm3d(6)
        self.b, self.bn_b = nn.Conv3d(6, 6, 3, padding=1), nn.BatchNorm3d(6)
        self.head = nn.Conv3d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn_a(self.a(x)))
        return self.head(torch.relu(self.bn_b(self.b(y))))


@pytest.mark.parametrize("kept", ["a.weight", "b.weight"])
def test_an_alias_keeps_its_value_when_its_source_is_sliced(kept: str) -> None:
    torch.manual_seed(0)
    model = export_module(AliasedNorms().eval(), torch.randn(1, 2, 4, 4, 4))
    assert any(node.op_type == "Identity" for node in model.graph.node)
    options = PruneOptions(method="l1", sparsity=0.8, keep=(kept,))
    result = prune(model, None, options)
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    by_weight = {layer["weight"]: layer for layer in result.plan.layers}
    assert len(by_weight[kept]["kept"]) == 6


class ViewWithBatchFromShape(nn.Module):
    """``y.view(y.size(0), 8, -1)``: a Reshape target from Shape with a constant channel count."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv3d(2, 6, 3, padding=1), nn.Conv3d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(y.view(y.size(0), 8, -1).mean(-1))


def test_a_reshape_target_from_shape_gets_its_constant_channel_count_patched() -> None:
    torch.manual_seed(0)
    model = export_module(
        ViewWithBatchFromShape().eval(),
        torch.randn(2, 2, 4, 4, 4),
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    assert any(node.op_type == "Shape" for node in model.graph.node)
    options = PruneOptions(method="l1", sparsity=0.6)
    result = prune(model, None, options, input_shapes={"x": (2, 2, 4, 4, 4)})
    assert result.validation is not None and result.validation.worst[1] <= 1e-4
    by_weight = {layer["weight"]: layer for layer in result.plan.layers}
    assert len(by_weight["b.weight"]["kept"]) < 8
    session = runtime.make_session(result.model)  # the batch stays dynamic
    (y,) = session.run(None, {"x": np.zeros((5, 2, 4, 4, 4), np.float32)})
    assert y.shape == (5, 3)


def test_a_selection_that_removes_nothing_is_refused(unet: GraphAnalysis, scoring: Scoring) -> None:
    with pytest.raises(PlanError, match=r"snip at `sparsity` 0\.1 \(a fraction of the weights\)"):
        prune_scored(unet, scoring, PruneOptions(method="snip", sparsity=0.1))
    with pytest.raises(PlanError, match="already meets the budget"):
        prune_scored(unet, scoring, PruneOptions(method="ranp-f", target_flops=1.0))


def test_batch_statistics_over_one_value_are_refused_with_a_hint() -> None:
    graph = analyse(zoo_model("c3d"))  # 1x1x1 after the last pooling
    data = open_data("random", graph)
    with pytest.raises(DataError, match=r"one value per channel.*`batch_size` 2"):
        prune(graph, data, PruneOptions(method="vanilla", sparsity=0.5))


# -- the RANP steps against a hand-written re-implementation of the reference ---------------


class Chain(nn.Module):
    """Three convs, no coupling, smooth activations (no score is exactly 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(2, 6, 3, padding=1)
        self.c2 = nn.Conv3d(6, 5, 3, padding=1)
        self.c3 = nn.Conv3d(5, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(torch.tanh(self.c2(torch.tanh(self.c1(x)))))


def reference_keep(
    module: Chain, batches: list[Batch], sparsity: float, lam: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RANP-f as the reference computes it, with torch autograd (shared reference, 1)."""
    layers = [module.c1, module.c2, module.c3]
    with torch.no_grad():
        for layer in layers:
            layer.bias.zero_()  # the scoring copy has no bias terms
    accumulated = [torch.zeros_like(layer.weight) for layer in layers]
    for batch in batches:
        module.zero_grad()
        x = torch.from_numpy(batch.inputs["x"])
        loss = nn.functional.cross_entropy(module(x), torch.from_numpy(batch.labels))
        loss.backward()
        for total, layer in zip(accumulated, layers):
            total += (layer.weight.grad * layer.weight).abs().detach()
    mean = [total / len(batches) for total in accumulated]
    scores = [g.reshape(g.shape[0], -1).sum(dim=1).abs().double().numpy() for g in mean]
    means = [s.mean() for s in scores]
    scores = [s * max(means) / m for s, m in zip(scores, means)]
    spatial = 4 * 4 * 4  # r_l: the layer's FLOPs, out_numel * (C_in * prod(k) + bias)
    flops = [layer.out_channels * spatial * (layer.weight[0].numel() + 1) for layer in layers]
    tau = np.array(flops) / max(flops)
    softmax = np.exp(-tau) / np.exp(-tau).sum()
    scores = [s * (1 + lam * w) for s, w in zip(scores, softmax)]
    everything = np.concatenate(scores)
    k = int(np.floor(everything.size * (1 - sparsity)))
    threshold = np.sort(everything)[::-1][k - 1]
    keep = [s >= threshold for s in scores]
    keep[-1][:] = True  # the output layer is always kept
    for flags, s in zip(keep, scores):
        if not flags.any():
            flags[np.argmax(s)] = True
    return scores, keep


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_ranp_f_matches_the_reference_computation(sparsity: float) -> None:
    torch.manual_seed(0)
    module = Chain()
    model = export_module(module, torch.randn(1, 2, 4, 4, 4), input_names=["x"])
    rng = np.random.default_rng(0)
    batches = [
        Batch(
            inputs={"x": rng.standard_normal((1, 2, 4, 4, 4)).astype(np.float32)},
            labels=rng.integers(0, 3, size=(1, 4, 4, 4)),
        )
        for _ in range(2)
    ]
    result = prune(model, batches, PruneOptions(method="ranp-f", sparsity=sparsity, lam=11.0))
    scores, keep = reference_keep(module, batches, sparsity, lam=11.0)
    graph = analyse(model)
    channels = score_model(graph, None, PruneOptions(method="random")).channels
    for layer, expected in zip(channels.layers, scores):
        np.testing.assert_allclose(result.selection.scores[layer.units], expected, rtol=1e-4)
    for entry, flags in zip(result.plan.layers, keep):
        assert entry["kept"] == np.flatnonzero(flags).tolist(), entry["node"]


# -- external data ----------------------------------------------------------------------------


def test_external_data_models_stay_external(tmp_path: Path) -> None:
    source = tmp_path / "unet.onnx"
    save_model(zoo_model("unet3d-15"), source, external_data=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    out = tmp_path / "slim.onnx"
    arguments = ["prune", str(source), "--method", "l1", "--sparsity", "0.5", "-o", str(out)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "slim.onnx.data").exists()
    assert load_model(out).external_data
    onnx.checker.check_model(str(out), full_check=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before

    again = CliRunner().invoke(cli, arguments)  # both files exist
    assert again.exit_code == 1 and "exists" in again.stderr
    (tmp_path / "slim.onnx").unlink()  # only the data file is left: still refused
    stale = CliRunner().invoke(cli, arguments)
    assert stale.exit_code == 1 and "slim.onnx.data exists" in stale.stderr
    assert not out.exists()
    forced = CliRunner().invoke(cli, [*arguments, "--force"])
    assert forced.exit_code == 0, forced.output


def test_the_input_external_data_is_never_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "a.onnx"
    save_model(zoo_model("unet3d-15"), source, external_data=True)
    # An output named like the file the input's data lives in would write over it.
    renamed = tmp_path / "b.onnx"
    (tmp_path / "a.onnx.data").rename(tmp_path / "b.onnx.data")
    proto = onnx.load_model(str(source), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "b.onnx.data"
    onnx.save_model(proto, str(source))
    data_before = (tmp_path / "b.onnx.data").read_bytes()
    for target in (renamed, tmp_path / "b.onnx.data"):
        result = CliRunner().invoke(
            cli,
            [
                "prune",
                str(source),
                "--method",
                "l1",
                "--sparsity",
                "0.5",
                "-o",
                str(target),
                "--force",
            ],
        )
        assert result.exit_code == 1
        assert "refusing to overwrite the input" in result.stderr
    assert (tmp_path / "b.onnx.data").read_bytes() == data_before
    assert not renamed.exists()
