"""``prune_module``: the user's own module comes back smaller, equal to the pruned ONNX.

Oracles: onnxruntime on the pruned model (the shrunk module must reproduce it), the
initial weights (kept channels keep them unless re-initialised), torch's FlopCounterMode
(the shrunk module's FLOPs fall as the pruned model's MACs do), and a few SGD steps.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from torch_api_models import (
    FlattenHead3D,
    HardCodedChannels,
    ResidualNet3D,
    TinyUNet3D,
    randomize_statistics,
)
from torch_graph_oracle import assert_close, onnxruntime_outputs

import ranp_onnx
from ranp_onnx import PruneOptions, prune_module
from ranp_onnx.errors import DataError, PlanError
from ranp_onnx.scoring.data import Batch
from ranp_onnx.scoring.evaluator import TorchGraph
from ranp_onnx.zoo.registry import ZOO, build_model

onnxruntime.set_default_logger_severity(3)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:ranp_onnx.scoring.statistics")

#: User networks: builder, input shape (batch 2), labels per voxel (True) or per sample.
USER = {
    "unet": (TinyUNet3D, (2, 1, 8, 8, 8), 3, True),
    "resnet": (ResidualNet3D, (2, 2, 8, 8, 8), 5, False),
    "flatten_head": (FlattenHead3D, (2, 1, 8, 8, 8), 4, False),
}


def user_network(name: str) -> tuple[torch.nn.Module, torch.Tensor, list[tuple[Any, Any]]]:
    kind, shape, classes, dense = USER[name]
    torch.manual_seed(0)
    module = randomize_statistics(kind())
    return module, *example_and_data(shape, classes, dense)


def example_and_data(
    shape: tuple[int, ...], classes: int, dense: bool, batches: int = 2
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(1)
    label_shape = (shape[0], *shape[2:]) if dense else (shape[0],)
    data = [
        (
            torch.randn(shape, generator=generator),
            torch.randint(0, classes, label_shape, generator=generator),
        )
        for _ in range(batches)
    ]
    return torch.randn(shape, generator=generator), data


def flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(x)
    return int(counter.get_total_flops())


def train_steps(
    module: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, steps: int = 5
) -> list[float]:
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(module(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def check_layers_agree_with_their_tensors(module: torch.nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.conv._ConvNd):
            w = layer.weight.shape
            cin, cout = (
                (w[0], w[1] * layer.groups) if layer.transposed else (w[1] * layer.groups, w[0])
            )
            assert (layer.in_channels, layer.out_channels) == (cin, cout)
        elif isinstance(layer, torch.nn.BatchNorm3d):
            assert layer.num_features == layer.running_mean.shape[0] == layer.weight.shape[0]
        elif isinstance(layer, torch.nn.Linear):
            assert (layer.out_features, layer.in_features) == tuple(layer.weight.shape)
        elif isinstance(layer, torch.nn.PReLU):
            assert layer.num_parameters == layer.weight.numel()
        elif isinstance(layer, torch.nn.GroupNorm):
            assert layer.num_channels % layer.num_groups == 0
            if layer.weight is not None:
                assert layer.num_channels == layer.weight.shape[0] == layer.bias.shape[0]


@pytest.mark.parametrize("name", sorted(USER))
def test_the_users_module_is_shrunk_in_place(name: str) -> None:
    module, x, data = user_network(name)
    original = copy.deepcopy(module)
    result = prune_module(module, x, data, sparsity=0.5)
    assert result.in_place and result.reason is None
    assert result.module is module and type(result.module) is type(original)
    assert result.module_error <= 1e-4
    check_layers_agree_with_their_tensors(module)
    with torch.no_grad():
        actual = module.eval()(x).numpy()
    assert_close(actual, onnxruntime_outputs(result.onnx_model, {"input": x.numpy()})[0])
    size = sum(p.numel() for p in module.parameters())
    assert size < sum(p.numel() for p in original.parameters())
    stored = {t.name: int(np.prod(t.dims)) for t in result.onnx_model.graph.initializer}
    assert size == sum(stored[n] for n, _ in module.named_parameters())
    first = result.plan.layers[0]
    kept = torch.tensor(first["kept"])
    initial = original.state_dict()[first["weight"]][kept]
    assert torch.equal(module.state_dict()[first["weight"]], initial)  # initial weights kept
    ratio = flops(module, x) / flops(original, x)
    assert ratio < 0.9
    assert ratio == pytest.approx(result.after.totals.macs / result.before.totals.macs, abs=0.02)
    labels = data[0][1]
    losses = train_steps(module, data[0][0], labels)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("name", "preset", "spatial"),
    [("unet3d-15", "brats", (8, 8, 8)), ("mobilenetv2-3d", None, (4, 16, 16))],
)
def test_zoo_models_are_shrunk_in_place(name: str, preset: str | None, spatial: tuple) -> None:
    channels = ZOO[name].preset(preset).input_shape[0]
    shape = (channels, *spatial)
    module = build_model(
        name, preset=preset, input_shape=shape, width_mult=0.0625, classes=4
    ).module
    kind = type(module)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    result = prune_module(module, x, "random", target_flops=0.5, batch_size=2, method="ranp-f")
    assert result.in_place and type(result.module) is kind
    assert result.after.totals.flops <= 0.5 * result.before.totals.flops
    assert result.module_error <= 1e-4
    check_layers_agree_with_their_tensors(module)


def test_hard_coded_channel_counts_fall_back_to_to_torch() -> None:
    torch.manual_seed(0)
    module = HardCodedChannels()
    x, data = example_and_data((2, 1, 8, 8, 8), 3, dense=False)
    parameters = dict(module.named_parameters())
    state = copy.deepcopy(module.state_dict())
    with pytest.warns(UserWarning, match="hard-codes channel counts"):
        result = prune_module(module, x, data, sparsity=0.5)
    assert not result.in_place
    assert result.reason is not None and "HardCodedChannels" in result.reason
    assert isinstance(result.module, TorchGraph) and result.module is not module
    assert result.module_error <= 1e-4
    # The user's module is untouched: the same Parameter objects, values and attributes.
    assert all(p is parameters[n] for n, p in module.named_parameters())
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert (module.conv2.out_channels, module.fc.in_features) == (16, 16)
    losses = train_steps(result.module, *data[0])
    assert losses[-1] < losses[0]


def test_hard_coded_view_with_the_batch_from_the_shape_falls_back() -> None:
    module = HardCodedChannels(batch_from_shape=True)
    x, data = example_and_data((2, 1, 8, 8, 8), 3, dense=False)
    with pytest.warns(UserWarning, match="hard-codes channel counts"):
        result = prune_module(module, x, data, sparsity=0.5)
    assert not result.in_place and module.conv2.out_channels == 16


def test_reinit_redraws_the_module_and_the_onnx_model_alike() -> None:
    module, x, data = user_network("unet")
    result = prune_module(module, x, data, sparsity=0.5, reinit=True, seed=3)
    assert result.in_place and result.plan.settings["reinit"] is True
    values = {t.name: onnx.numpy_helper.to_array(t) for t in result.onnx_model.graph.initializer}
    state = module.state_dict()
    for key, value in values.items():
        np.testing.assert_array_equal(state[key].numpy(), value)
    gammas = torch.cat(
        [m.weight.detach() for m in module.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    )
    assert abs(float(gammas.mean()) - 1) < 0.02 and float(gammas.std()) < 0.05
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm3d):
            assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))
            assert torch.equal(layer.running_var, torch.ones_like(layer.running_var))
            assert int(layer.num_batches_tracked) == 0
    assert float(module.head.bias.detach().abs().max()) > 0.1  # N(0, 1) biases
    weight = module.dec[0].weight.detach()
    fan = weight[0].numel() + weight.shape[0] * weight[0, 0].numel()
    assert float(weight.std()) == pytest.approx((2 / fan) ** 0.5, rel=0.3)
    assert result.module_error <= 1e-4


DataMaker = Callable[[list[tuple[torch.Tensor, torch.Tensor]], Path], object]
DATA_FORMS: dict[str, DataMaker] = {
    "pairs": lambda pairs, _: pairs,
    "numpy_pairs": lambda pairs, _: [(x.numpy(), y.numpy()) for x, y in pairs],
    "loader": lambda pairs, _: DataLoader(
        TensorDataset(torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])),
        batch_size=2,
    ),
    "batches": lambda pairs, _: [Batch({"input": x.numpy()}, y.numpy()) for x, y in pairs],
    "npz": lambda pairs, folder: save_npz(pairs, folder / "train.npz"),
}


def save_npz(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> Path:
    inputs = torch.cat([x for x, _ in pairs]).numpy()
    np.savez(path, inputs=inputs, labels=torch.cat([y for _, y in pairs]).numpy())
    return path


def test_every_data_form_gives_the_same_plan(tmp_path: Path) -> None:
    plans = {}
    for form, make in DATA_FORMS.items():
        module, x, pairs = user_network("resnet")
        data = make(pairs, tmp_path)
        result = prune_module(module, x, data, sparsity=0.4, batch_size=2, method="ranp-f")
        plans[form] = [layer["kept"] for layer in result.plan.layers]
    assert all(plan == plans["pairs"] for plan in plans.values()), plans


def test_options_batches_and_in_place_false() -> None:
    module, x, pairs = user_network("resnet")
    state = copy.deepcopy(module.state_dict())
    options = PruneOptions(method="ranp-m", lam=15.0)
    result = prune_module(
        module, x, iter(pairs * 5), options=options, sparsity=0.3, batches=1, in_place=False
    )
    assert not result.in_place and isinstance(result.module, TorchGraph)
    assert result.plan.settings["method"] == "ranp-m" and result.plan.settings["lam"] == 15.0
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert result.module.training == module.training
    random = prune_module(module, x, None, sparsity=0.3, method="random")
    assert random.in_place and 0.2 < random.neuron_sparsity < 0.4


def test_user_errors() -> None:
    module, x, pairs = user_network("resnet")
    with pytest.raises(TypeError, match="unknown option 'sparsty'"):
        prune_module(module, x, pairs, sparsty=0.5)
    with pytest.raises(PlanError, match="exactly one of"):
        prune_module(module, x, pairs, sparsity=0.5, target_flops=0.5)
    with pytest.raises(DataError, match=r"input 'input' is \[2, 2, 4, 8, 8\]"):
        prune_module(module, x, [(torch.zeros(2, 2, 4, 8, 8), pairs[0][1])], sparsity=0.5)
    with pytest.raises(DataError, match="integer class indices"):
        prune_module(module, x, [(pairs[0][0], pairs[0][1].float())], sparsity=0.5)
    assert ranp_onnx.prune_module is prune_module


def test_labels_outside_the_classes_are_a_data_error_and_the_module_is_untouched() -> None:
    module, x, pairs = user_network("resnet")  # 5 classes, one label per sample
    before = copy.deepcopy(module.state_dict())
    bad = pairs[1][1].clone()
    bad[1] = 5
    expected = (
        r"batch 2: labels has label {label} \(in samples 0 to 1\) outside \[0, 5\){ignore}; "
        r"expected integer class indices of shape \(N,\) to match the output '\w+' \[N, 5\]"
    )
    with pytest.raises(DataError) as raised:
        prune_module(module, x, [pairs[0], (pairs[1][0], bad)], sparsity=0.5)
    assert re.fullmatch(expected.format(label=5, ignore=""), str(raised.value))
    by_hand = Batch(inputs={"input": pairs[1][0].numpy()}, labels=bad.numpy())
    with pytest.raises(DataError) as raised:
        prune_module(module, x, [pairs[0], by_hand], sparsity=0.5, ignore_index=255)
    ignore = " or the ignore index 255"
    assert re.fullmatch(expected.format(label=5, ignore=ignore), str(raised.value))
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())
    bad[1] = 255  # the ignore index is no error
    result = prune_module(module, x, [pairs[0], (pairs[1][0], bad)], sparsity=0.5, ignore_index=255)
    assert result.in_place and result.validation is not None
