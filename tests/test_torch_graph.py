"""TorchGraph on exported torch modules: outputs, gradients, modes and the module contract.

Outputs are checked against onnxruntime for both torch exporters. Gradients are checked
against torch autograd on the original module: the loss gradient w.r.t. every parameter,
in eval mode and in train mode (BatchNorm with batch statistics), and the running
statistics that train mode updates.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from builders import export_module
from onnx import helper
from torch_graph_models import MODELS, build
from torch_graph_oracle import (
    assert_close,
    check_against_onnxruntime,
    onnxruntime_outputs,
    random,
    single_node_model,
    torch_outputs,
)

from ranp_onnx.errors import UnsupportedModelError
from ranp_onnx.scoring.evaluator import TorchGraph

onnxruntime.set_default_logger_severity(3)

#: Models whose dynamo export keeps every parameter (no BatchNorm to fold).
UNFOLDED = ("conv_stack", "grouped", "conv_transpose", "squeeze_excite", "linear_head")


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_matches_onnxruntime(name: str, exporter: str) -> None:
    module, x = build(name)
    model = export_module(module, x, exporter=exporter)
    check_against_onnxruntime(model, {model.graph.input[0].name: x.numpy()})


def check_gradients(name: str, exporter: str, train: bool) -> None:
    """Outputs, d(loss)/d(parameter) for every torch parameter and, in train mode, the
    updated running statistics of TorchGraph equal torch's on the original module."""
    module, x = build(name)
    model = export_module(module, x, exporter=exporter)
    graph = TorchGraph(model).train(train)
    module.train(train)
    for layer in module.modules():  # the inference export has no Dropout left
        if isinstance(layer, torch.nn.Dropout):
            layer.eval()
    for net in (module, graph):
        net.zero_grad(set_to_none=True)
    expected_y, actual_y = module(x), graph(x)
    weights = torch.randn(expected_y.shape, generator=torch.Generator().manual_seed(1))
    for y in (expected_y, actual_y):
        ((y * weights).sum() + y.square().mean()).backward()
    assert_close(actual_y.detach().numpy(), expected_y.detach().numpy(), 1e-5)
    expected = {name: p.grad for name, p in module.named_parameters() if p.grad is not None}
    assert len(expected) == len(list(module.parameters()))
    overall = max(float(g.abs().max()) for g in expected.values())  # zero gradients are noise
    for parameter_name, expected_gradient in expected.items():
        gradient = graph.parameter(parameter_name).grad
        assert gradient is not None, parameter_name
        assert_close(gradient.numpy(), expected_gradient.numpy(), 1e-5, scale=overall)
    if train:
        for buffer_name, buffer in module.named_buffers():
            if buffer_name.endswith(("running_mean", "running_var")):
                assert_close(graph.parameter(buffer_name).numpy(), buffer.numpy(), 1e-5)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_torch(name: str, train: bool) -> None:
    check_gradients(name, "torchscript", train)


@pytest.mark.parametrize("name", UNFOLDED)
def test_gradients_match_torch_on_dynamo_exports(name: str) -> None:
    check_gradients(name, "dynamo", train=False)


def test_fresh_batchnorm_parameters_are_not_tied() -> None:
    """torchscript stores equal tensors once; each torch parameter still gets its gradient."""
    module, x = build("residual", fresh_statistics=True)
    model = export_module(module, x)
    assert any(node.op_type == "Identity" for node in model.graph.node)
    graph = TorchGraph(model)
    assert set(graph.state_dict()) >= {name for name, _ in module.named_parameters()}
    check_gradients("residual", "torchscript", train=True)


def test_batch_statistics_without_dropout_for_scoring() -> None:
    module, x = build("unet")
    graph = TorchGraph(export_module(module, x), batchnorm="batch").eval()
    reference = module.train()(x)
    assert_close(graph(x).detach().numpy(), reference.detach().numpy(), 1e-5)
    running = TorchGraph(export_module(module.eval(), x), batchnorm="running").train()
    assert_close(running(x).detach().numpy(), module(x).detach().numpy(), 1e-5)
    frozen = TorchGraph(export_module(module, x), batchnorm="batch")
    frozen.update_running_stats = False
    before = {name: tensor.clone() for name, tensor in frozen.state_dict().items()}
    frozen(x)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def test_dropout_of_a_training_export_uses_torch_random_numbers() -> None:
    """A training export keeps Dropout with a static training_mode=True: it always drops."""
    module, x = build("linear_head")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), buffer, dynamo=False, training=torch.onnx.TrainingMode.TRAINING
        )
    model = onnx.load_from_string(buffer.getvalue())
    assert "Dropout" in {node.op_type for node in model.graph.node}
    graph = TorchGraph(model)
    module.train()
    for net in (graph.train(), graph.eval()):
        torch.manual_seed(3)
        expected = module(x)
        torch.manual_seed(3)
        assert_close(net(x).detach().numpy(), expected.detach().numpy(), 1e-5)


def test_state_dict_keys_are_initializer_names_and_round_trip() -> None:
    module, x = build("unet")
    model = export_module(module, x)
    graph = TorchGraph(model)
    names = [tensor.name for tensor in model.graph.initializer]
    assert list(graph.state_dict()) == names
    assert set(names) == set(module.state_dict()) - {
        name for name in module.state_dict() if name.endswith("num_batches_tracked")
    }
    changed = {name: value + 1 for name, value in graph.state_dict().items()}
    other = TorchGraph(model)
    other.load_state_dict(changed)
    for name, value in changed.items():
        assert torch.equal(other.parameter(name), value)
    assert graph.parameter("enc.0.0.weight").requires_grad
    assert not graph.parameter("enc.0.1.running_mean").requires_grad
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*enc\.0\.0\.weight"):
        other.load_state_dict({k: v for k, v in changed.items() if k != "enc.0.0.weight"})


def test_awkward_initializer_names() -> None:
    names = ["a.b", "a_b", "a/b:0", "training", "0"]
    weights = {name: random(3, seed=i) for i, name in enumerate(names)}
    nodes = [helper.make_node("Add", ["x", names[0]], ["t0"])]
    for i, name in enumerate(names[1:], start=1):
        nodes.append(helper.make_node("Mul" if i % 2 else "Add", [f"t{i - 1}", name], [f"t{i}"]))
    graph = helper.make_graph(
        nodes,
        "names",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("t4", onnx.TensorProto.FLOAT, [2, 3])],
        [onnx.numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    module = check_against_onnxruntime(model, {"x": random(2, 3)})
    assert list(module.state_dict()) == names
    assert module.training is False
    module.load_state_dict({name: torch.zeros(3) for name in names})
    assert all(torch.equal(module.parameter(name), torch.zeros(3)) for name in names)


def test_unknown_op_fails_at_construction_naming_the_node() -> None:
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="pick_best")
    model = single_node_model(node, {"x": random(2, 5)}, initializers={"k": np.array([2])})
    with pytest.raises(UnsupportedModelError, match=r"'pick_best'.*TopK"):
        TorchGraph(model)


def test_shape_subgraphs_follow_the_input_size() -> None:
    class Flattening(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(2, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.max_pool3d(self.conv(x), 2)
            return y.reshape(y.shape[0], y.shape[1], -1).mean(-1)

    torch.manual_seed(0)
    module = Flattening().eval()
    dynamic = {"x": {0: "batch", 2: "depth", 3: "height", 4: "width"}}
    model = export_module(
        module, torch.randn(1, 2, 4, 4, 4), input_names=["x"], dynamic_axes=dynamic
    )
    assert {"Shape", "Reshape"} <= {node.op_type for node in model.graph.node}
    graph = TorchGraph(model)
    for shape in ((1, 2, 4, 4, 4), (3, 2, 6, 8, 4)):
        x = random(*shape)
        assert_close(torch_outputs(graph, {"x": x})[0], onnxruntime_outputs(model, {"x": x})[0])


def test_capture_returns_intermediate_tensors_with_gradients() -> None:
    module, x = build("residual")
    model = export_module(module, x, input_names=["x"])
    graph = TorchGraph(model)
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    captured = graph.capture({"x": x}, [conv.output[0], model.graph.output[0].name])
    activation = captured[conv.output[0]]
    activation.retain_grad()
    captured[model.graph.output[0].name].sum().backward()
    assert activation.grad is not None and activation.grad.shape == activation.shape


def test_reexport_of_the_module_reproduces_the_model() -> None:
    module, x = build("unet")
    model = export_module(module, x)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TorchGraph(model), (x,), buffer, dynamo=False, opset_version=17)
    again = onnx.load_from_string(buffer.getvalue())
    feeds = {model.graph.input[0].name: x.numpy()}
    (expected,) = onnxruntime_outputs(model, feeds)
    (actual,) = onnxruntime_outputs(again, {again.graph.input[0].name: x.numpy()})
    assert_close(actual, expected)


def test_double_precision_and_device_moves() -> None:
    module, x = build("unet")
    graph = TorchGraph(export_module(module, x)).double()
    y = graph(x.double())
    assert y.dtype == torch.float64
    assert_close(y.detach().float().numpy(), module(x).detach().numpy(), 1e-5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    moved = graph.float().to(device)
    assert_close(moved(x.to(device)).detach().cpu().numpy(), module(x).detach().numpy(), 1e-5)
