"""The round trip: ``to_torch`` (ONNX -> trainable module) and ``to_onnx`` (and back).

Oracles: onnxruntime on the original model. ``to_onnx(to_torch(m))`` is ``m`` (same nodes,
initializer names, opsets; bit-equal outputs); ``torch.onnx.export(to_torch(m))``
reproduces ``m``'s outputs; a trained module written back runs in onnxruntime as it runs
in torch. Networks: small zoo models and 3D networks the project did not write.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from builders import export_module
from torch_api_models import (
    ResidualNet3D,
    SEResNeXt3D,
    TinyUNet3D,
    VNetBlock3D,
    randomize_statistics,
)
from torch_graph_oracle import assert_close, onnxruntime_outputs

import ranp_onnx
from ranp_onnx import PruneOptions, to_onnx, to_torch
from ranp_onnx.ops.aliases import separate_aliases
from ranp_onnx.scoring.data import open_data
from ranp_onnx.scoring.evaluator import TorchGraph
from ranp_onnx.zoo.registry import ZOO, build_model

onnxruntime.set_default_logger_severity(3)

#: Networks written here (not by the project's zoo), and their input shapes.
THIRD_PARTY = {
    "vnet": (VNetBlock3D, (2, 1, 8, 8, 8)),
    "se_resnext": (SEResNeXt3D, (2, 3, 8, 8, 8)),
    "unet": (TinyUNet3D, (2, 1, 8, 8, 8)),
    "resnet": (ResidualNet3D, (2, 2, 8, 8, 8)),
}
#: Zoo models at 1/16 width: (name, preset, spatial input).
ZOO_MODELS = {
    "unet3d-15": ("brats", (8, 8, 8)),
    "mobilenetv2-3d": (None, (4, 16, 16)),
    "resnet3d-18": (None, (4, 16, 16)),
}
NETWORKS = sorted(THIRD_PARTY) + sorted(ZOO_MODELS)
#: Networks without shape sub-graphs or Resize, which torch.export can trace through.
DYNAMO_EXPORTABLE = ("resnet", "unet")


def network(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module (eval mode, non-trivial BatchNorm statistics) and an input batch of 2."""
    torch.manual_seed(0)
    if name in THIRD_PARTY:
        kind, shape = THIRD_PARTY[name]
        module = randomize_statistics(kind())
    else:
        preset, spatial = ZOO_MODELS[name]
        channels = ZOO[name].preset(preset).input_shape[0]
        shape = (2, channels, *spatial)
        built = build_model(
            name, preset=preset, input_shape=shape[1:], width_mult=0.0625, classes=4
        )
        module = randomize_statistics(built.module)
    return module.eval(), torch.randn(shape, generator=torch.Generator().manual_seed(1))


def exported(name: str) -> tuple[onnx.ModelProto, torch.nn.Module, torch.Tensor]:
    module, x = network(name)
    dynamic = {"input": {0: "batch"}}
    model = export_module(module, x, input_names=["input"], dynamic_axes=dynamic)
    return separate_aliases(model), module, x


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = max(float(np.abs(expected).max()), 1e-3)
    return float(np.abs(actual.astype(np.float64) - expected).max()) / scale


@pytest.mark.parametrize("name", NETWORKS)
def test_to_onnx_of_to_torch_is_the_model(name: str) -> None:
    model, module, x = exported(name)
    graph = to_torch(model)
    assert isinstance(graph, torch.nn.Module)
    assert list(graph.state_dict()) == [tensor.name for tensor in model.graph.initializer]
    expected_keys = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(graph.state_dict()) == expected_keys
    back = to_onnx(graph)
    onnx.checker.check_model(back, full_check=True)
    assert [n.SerializeToString() for n in back.graph.node] == [
        n.SerializeToString() for n in model.graph.node
    ]
    assert [t.name for t in back.graph.initializer] == [t.name for t in model.graph.initializer]
    assert back.opset_import == model.opset_import and back.ir_version == model.ir_version
    feeds = {"input": x.numpy()}
    np.testing.assert_array_equal(
        onnxruntime_outputs(back, feeds)[0], onnxruntime_outputs(model, feeds)[0]
    )
    with torch.no_grad():
        assert_close(graph(x).numpy(), module(x).numpy(), 1e-5)


@pytest.mark.parametrize(
    ("name", "exporter"),
    [(name, "torchscript") for name in NETWORKS] + [(n, "dynamo") for n in DYNAMO_EXPORTABLE],
)
def test_torch_onnx_export_of_to_torch_reproduces_the_model(name: str, exporter: str) -> None:
    model, _, x = exported(name)
    again = export_module(to_torch(model), x, exporter=exporter)
    (expected,) = onnxruntime_outputs(model, {"input": x.numpy()})
    (actual,) = onnxruntime_outputs(again, {again.graph.input[0].name: x.numpy()})
    assert relative_error(actual, expected) <= 1e-4


def test_a_trained_module_is_written_back_with_its_values() -> None:
    model, _, x = exported("unet")
    graph = to_torch(model).train()
    before = graph.parameter("enc1.1.running_mean").clone()
    optimizer = torch.optim.SGD(graph.parameters(), lr=0.05)
    labels = torch.randint(0, 3, (2, 8, 8, 8), generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(graph(x), labels).backward()
        optimizer.step()
    assert not torch.equal(graph.parameter("enc1.1.running_mean"), before)
    back = to_onnx(graph.eval())
    onnx.checker.check_model(back, full_check=True)
    values = {t.name: onnx.numpy_helper.to_array(t) for t in back.graph.initializer}
    for name, tensor in graph.state_dict().items():
        np.testing.assert_array_equal(values[name], tensor.numpy())
    with torch.no_grad():
        expected = graph(x).numpy()
    assert_close(onnxruntime_outputs(back, {"input": x.numpy()})[0], expected)


def test_identity_shared_parameters_untied_by_training_get_their_own_initializer() -> None:
    torch.manual_seed(0)
    module = TinyUNet3D().eval()  # fresh BatchNorms: equal betas shared through Identity
    x = torch.randn(2, 1, 8, 8, 8)
    model = export_module(module, x, input_names=["input"])
    copies = [n.output[0] for n in model.graph.node if n.op_type == "Identity"]
    assert len(copies) >= 2
    graph = to_torch(model)
    assert to_onnx(graph).graph.node == model.graph.node  # nothing changed: kept as is
    with torch.no_grad():
        graph.parameter(copies[0]).add_(0.5)
    back = to_onnx(graph)
    onnx.checker.check_model(back, full_check=True)
    assert copies[0] in {t.name for t in back.graph.initializer}
    assert copies[1] not in {t.name for t in back.graph.initializer}
    assert len(back.graph.node) == len(model.graph.node) - 1
    with torch.no_grad():
        expected = graph(x).numpy()
    assert_close(onnxruntime_outputs(back, {"input": x.numpy()})[0], expected)
    assert list(to_torch(back).state_dict()) != []


def test_the_pruned_model_trains_and_updates_running_statistics() -> None:
    model, _, _ = exported("unet")
    graph = ranp_onnx.analyse(model, {"": (2, 1, 8, 8, 8)})
    pruned = ranp_onnx.prune(
        graph, open_data("random", graph, batch_size=2), PruneOptions(sparsity=0.5)
    )
    net = to_torch(pruned.model).train()
    assert sum(p.numel() for p in net.parameters()) < sum(
        p.numel() for p in to_torch(model).parameters()
    )
    assert all(p.requires_grad for p in net.parameters())
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 8, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (4, 8, 8, 8), generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(not torch.equal(net.state_dict()[k], v) for k, v in stats.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_to_cuda() -> None:  # pragma: no cover - needs a GPU
    model, module, x = exported("resnet")
    net = to_torch(model).to("cuda")
    with torch.no_grad():
        assert_close(net(x.cuda()).cpu().numpy(), module(x).numpy(), 1e-4)
    back = to_onnx(net)
    assert_close(onnxruntime_outputs(back, {"input": x.numpy()})[0], module(x).detach().numpy())


def test_to_torch_is_a_torch_graph_and_import_stays_torch_free() -> None:
    model, _, _ = exported("resnet")
    assert type(to_torch(model)) is TorchGraph
    assert to_torch(model, batchnorm="batch").batchnorm == "batch"
    code = "import sys, ranp_onnx; ranp_onnx.prune; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
