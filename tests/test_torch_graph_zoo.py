"""TorchGraph on the paper's models (the zoo, at small widths): gradients equal torch's.

Train mode is the scoring regime: BatchNorm with batch statistics (the running statistics
update too) and Dropout off. Every parameter's loss gradient and every running statistic
must match torch autograd on the original module.
"""

from __future__ import annotations

import onnxruntime
import pytest
import torch
from torch_graph_oracle import assert_close

from ranp_onnx.scoring.evaluator import TorchGraph
from ranp_onnx.torch_api.export import export_module as to_onnx
from ranp_onnx.zoo.registry import ZOO, build_model

onnxruntime.set_default_logger_severity(3)

#: (zoo name, preset): the 3D-UNet without its inference-only softmax.
MODELS = [("unet3d-15", "brats"), ("mobilenetv2-3d", None), ("i3d", None), ("c3d", None),
          ("resnet3d-18", None)]  # fmt: skip


@pytest.mark.parametrize(("name", "preset"), MODELS, ids=[name for name, _ in MODELS])
def test_zoo_gradients_with_batch_statistics(name: str, preset: str | None) -> None:
    entry = ZOO[name]
    channels = entry.preset(preset).input_shape[0]
    shape = (channels, *entry.smallest_input)
    built = build_model(name, preset=preset, input_shape=shape, width_mult=0.0625, classes=4)
    module = built.module
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    graph = TorchGraph(to_onnx(module, x[:1])).train()
    module.train()
    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.eval()
    expected, actual = module(x), graph(x)
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    for y in (expected, actual):
        (y * weights).sum().backward()
    assert_close(actual.detach().numpy(), expected.detach().numpy(), 1e-5)
    gradients = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    overall = max(float(g.abs().max()) for g in gradients.values())
    for parameter_name, gradient in gradients.items():
        actual_gradient = graph.parameter(parameter_name).grad
        assert actual_gradient is not None, parameter_name
        assert_close(actual_gradient.numpy(), gradient.numpy(), 1e-5, scale=overall)
    for buffer_name, buffer in module.named_buffers():
        if buffer_name.endswith(("running_mean", "running_var")):
            assert_close(graph.parameter(buffer_name).numpy(), buffer.numpy(), 1e-5)
