"""The scoring statistics equal torch autograd on the original module, batch by batch."""

from __future__ import annotations

import copy

import numpy as np
import torch
from builders import export_module
from torch import nn

from ranp_onnx.analysis.channels import analyse_channels
from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.scoring.data import Batch
from ranp_onnx.scoring.losses import make_loss
from ranp_onnx.scoring.statistics import accumulate_gradients

CLASSES = 3


def _module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.Conv3d(4, 5, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv3d(5, CLASSES, 1),
    ).eval()


def _reference(module: nn.Module, batches: list[Batch]) -> dict[str, list[np.ndarray]]:
    """Mean |g*w| and mean |mean(a * dL/da)| per conv, by autograd on the module."""
    scoring = copy.deepcopy(module).train()  # batch statistics, as RANP scores
    convs = [m for m in scoring if isinstance(m, nn.Conv3d)]
    with torch.no_grad():
        convs[-1].bias.zero_()  # the scoring copy zeroes biases
    loss_function = make_loss("cross-entropy", classes=CLASSES)
    sums: dict[str, list[np.ndarray]] = {
        "magnitude": [np.zeros(c.weight.shape) for c in convs],
        "taylor": [np.zeros(c.out_channels) for c in convs],
    }
    for batch in batches:
        scoring.zero_grad()
        outputs: list[torch.Tensor] = []
        handles = [
            c.register_forward_hook(lambda _m, _i, o, sink=outputs: sink.append(o)) for c in convs
        ]
        logits = scoring(torch.from_numpy(batch.inputs["input"]))
        for handle in handles:
            handle.remove()
        for output in outputs:
            output.retain_grad()
        loss_function(logits, torch.from_numpy(batch.labels)).backward()
        for i, (conv, output) in enumerate(zip(convs, outputs)):
            assert conv.weight.grad is not None and output.grad is not None
            sums["magnitude"][i] += (conv.weight.grad * conv.weight).abs().detach().numpy()
            term = (output * output.grad).mean(dim=(0, 2, 3, 4)).abs()
            sums["taylor"][i] += term.detach().numpy()
    return {key: [v / len(batches) for v in values] for key, values in sums.items()}


def test_statistics_equal_autograd_on_the_module() -> None:
    module = _module()
    model = export_module(module, torch.randn(2, 1, 6, 6, 6), input_names=["input"])
    graph = analyse(model)
    rng = np.random.default_rng(1)
    batches = [
        Batch(
            {"input": rng.standard_normal((2, 1, 6, 6, 6)).astype(np.float32)},
            rng.integers(0, CLASSES, size=(2, 6, 6, 6)),
        )
        for _ in range(3)
    ]
    stats = accumulate_gradients(analyse_channels(graph), batches, "cross-entropy")
    expected = _reference(module, batches)
    assert stats.batches == 3
    for got, want in zip(stats.magnitude, expected["magnitude"]):
        np.testing.assert_allclose(got, want.reshape(want.shape[0], -1), rtol=1e-4, atol=1e-9)
    for got, want in zip(stats.taylor, expected["taylor"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-12)
