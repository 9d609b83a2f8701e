"""The RANP steps on hand-computed tiny cases (shared reference, section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranp_onnx.selection import importance

# The reference's per-layer conv FLOPs of 3D-UNet-15 on ShapeNet (the RANP-f resources).
SHAPENET_FLOPS = [
    226492416, 14495514624, 3623878656, 7247757312, 1811939328, 3623878656, 905969664,
    1811939328, 21743271936, 7247757312, 43486543872, 14495514624, 86973087744, 28991029248,
    851968000,
]  # fmt: skip


def test_neuron_importance_reductions() -> None:
    gradient = np.array([[1.0, -2.0, 0.5], [3.0, 4.0, -1.0]])
    assert importance.neuron_importance(gradient, "sum").tolist() == [0.5, 6.0]
    assert importance.neuron_importance(gradient, "mean").tolist() == pytest.approx([0.5 / 3, 2.0])
    assert importance.neuron_importance(gradient, "max").tolist() == [1.0, 4.0]


def test_mpmg_sums_magnitudes_mnmg_takes_magnitude_of_sum() -> None:
    products = [np.array([[1.0, -3.0]]), np.array([[-1.0, 1.0]])]  # g*w on two batches
    mpmg = np.mean([np.abs(p) for p in products], axis=0)
    mnmg = np.mean(products, axis=0)
    assert importance.split_importance("mpmg-sum") == (False, "sum")
    assert importance.split_importance("mnmg-max") == (True, "max")
    assert importance.neuron_importance(mpmg, "sum").tolist() == [3.0]  # (1+3+1+1)/2
    assert importance.neuron_importance(mnmg, "sum").tolist() == [1.0]  # |0 + (-1)|
    with pytest.raises(ValueError, match="unknown importance"):
        importance.split_importance("mpmg-median")


def test_layer_mean_balance_raises_every_mean_to_the_largest() -> None:
    balanced = importance.layer_mean_balance([np.array([1.0, 3.0]), np.array([10.0]), np.zeros(2)])
    assert balanced[0].tolist() == [5.0, 15.0]
    assert balanced[1].tolist() == [10.0]
    assert balanced[2].tolist() == [0.0, 0.0]


def test_resource_multipliers_divide_by_max_and_softmax_over_layers() -> None:
    multipliers = importance.resource_multipliers([1.0, 2.0, 4.0], lam=2.0)
    tau = np.array([0.25, 0.5, 1.0])
    expected = 1 + 2.0 * np.exp(-tau) / np.exp(-tau).sum()
    assert multipliers == pytest.approx(expected)
    # The largest layer gets the smallest multiplier.
    assert multipliers.argmin() == 2


def test_resource_multipliers_reproduce_the_reference_range_on_shapenet() -> None:
    multipliers = importance.resource_multipliers(SHAPENET_FLOPS, lam=11.0)
    assert round(float(multipliers.min()), 3) == 1.315
    assert round(float(multipliers.max()), 3) == 1.853
    assert multipliers.argmin() == 12  # the decoder conv with 87 GFLOPs


def test_resource_reweight_scales_each_layer_by_its_multiplier() -> None:
    scores = [np.array([1.0, 2.0]), np.array([3.0])]
    out = importance.resource_reweight(scores, [10.0, 10.0], lam=4.0)
    assert out[0].tolist() == pytest.approx([3.0, 6.0])  # 1 + 4 * 0.5
    assert out[1].tolist() == pytest.approx([9.0])


def test_filter_l1_and_taylor_normalisation() -> None:
    assert importance.filter_l1(np.array([[1.0, -2.0], [0.5, 0.5]])).tolist() == [3.0, 1.0]
    normalized = importance.taylor_normalize([np.array([3.0, 4.0]), np.zeros(2)])
    assert normalized[0].tolist() == pytest.approx([0.6, 0.8])
    assert normalized[1].tolist() == [0.0, 0.0]


def test_reconstruction_error_is_zero_with_all_components_and_falls_with_more() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 12))
    assert importance.reconstruction_error(weight, 1.0) == pytest.approx(0.0, abs=1e-12)
    errors = [importance.reconstruction_error(weight, f) for f in (0.25, 0.5, 0.75)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_dpr_ratios_satisfy_eq4() -> None:
    rng = np.random.default_rng(1)
    weights = [
        rng.standard_normal((8, 9)),
        rng.standard_normal((16, 9)),
        rng.standard_normal((4, 30)),
    ]
    flops = [100.0, 300.0, 600.0]
    ratios = importance.dpr_prune_ratios(weights, flops, 0.4)
    # Eq. 4: v sum(G gamma) = pr sum(G), i.e. the FLOPs-weighted mean ratio is pr.
    assert float(np.dot(ratios, flops) / sum(flops)) == pytest.approx(0.4)
    assert all(0 <= r <= 1 for r in ratios)
    # Heavier layers are pruned harder (w_gflops = 0.8 dominates).
    assert ratios[2] > ratios[0]
    assert math.isclose(float(np.sum(ratios * flops)), 0.4 * 1000.0)
