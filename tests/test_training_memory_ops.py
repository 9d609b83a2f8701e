"""What each op rule says autograd keeps, against what torch's autograd actually keeps.

The rules' ``autograd_memory`` was derived by watching ``torch.autograd.graph.saved_tensors_
hooks`` around the torch functions their ``evaluate`` calls; here the same hooks watch a
forward and the loss of ``to_torch`` models that use every family, and the model's bytes
of saved activations must equal the bytes of the distinct storages autograd holds (the
module's parameters and buffers and the batch excluded: the model counts those apart).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import onnx
import pytest
import torch
import torch.nn.functional as F
from builders import export_module
from torch import nn

from ranp_onnx import to_torch
from ranp_onnx.analysis.training_memory import loss_input, predict_training_memory, training_graph
from ranp_onnx.scoring.losses import cross_entropy


class Residual(nn.Module):
    """Mul, Add, Sigmoid, MaxPool, nearest Resize and Concat."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv3d(1, 4, 3, padding=1), nn.Conv3d(4, 4, 3, padding=1)
        self.c = nn.Conv3d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.a(x))
        gate = torch.sigmoid(self.b(h))
        up = F.interpolate(F.max_pool3d(h, 2), scale_factor=2, mode="nearest")
        return self.c(torch.cat([h * gate + h, up], 1))


class Padded(nn.Module):
    """A Pad node between two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Conv3d(1, 4, 3), nn.Conv3d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.pad(self.a(x), (1, 1, 1, 1, 1, 1)))


class Trilinear(nn.Module):
    """A linear Resize (two gathers and their weights per axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Conv3d(1, 4, 3, padding=1, stride=2), nn.Conv3d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.interpolate(self.a(x), scale_factor=2, mode="trilinear"))


class Attention(nn.Module):
    """Two Einsum nodes: voxel-to-voxel affinities, then the values they weigh."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Conv3d(1, 4, 3, padding=1, stride=2) for _ in range(3))
        self.c = nn.Conv3d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (layer(x).flatten(2) for layer in (self.q, self.k, self.v))
        weights = torch.softmax(torch.einsum("ncv,ncw->nvw", q, k), -1)
        out = torch.einsum("nvw,ncw->ncv", weights, v)
        return self.c(out.reshape(-1, 4, 4, 4, 4))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "conv-batchnorm-relu": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 3, 1)
    ),
    "instancenorm-leakyrelu": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.InstanceNorm3d(4, affine=True),
        nn.LeakyReLU(0.1),
        nn.Conv3d(4, 3, 1),
    ),
    "groupnorm-prelu": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.PReLU(), nn.Conv3d(4, 3, 1)
    ),
    "pooling-sigmoid": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.MaxPool3d(2),
        nn.Sigmoid(),
        nn.AvgPool3d(2),
        nn.Conv3d(4, 3, 1),
    ),
    "conv-transpose": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.ConvTranspose3d(4, 3, 2, stride=2)
    ),
    "clip-tanh": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU6(), nn.Conv3d(4, 4, 1), nn.Tanh(), nn.Conv3d(4, 3, 1)
    ),
    "dropout-gemm": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, 3)
    ),
    "elu-global-pool-gemm": lambda: nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.ELU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ),
    "residual-mul-concat-resize": Residual,
    "pad": Padded,
    "trilinear-resize": Trilinear,
    "einsum-attention": Attention,
}


@functools.cache
def exported(name: str) -> onnx.ModelProto:
    torch.manual_seed(0)
    return export_module(MODELS[name]().eval(), torch.randn(2, 1, 8, 8, 8))


def observed_saved_bytes(graph_batch: int, name: str) -> tuple[int, int]:
    """(bytes autograd holds after the forward and loss, the model's figure)."""
    graph = training_graph(exported(name), batch=graph_batch)
    module = to_torch(graph).train()
    logits = loss_input(graph)
    shape = graph.shape(logits)
    inputs = {name: torch.randn(graph.input_shapes[name]) for name in graph.input_names}
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    held = [*module.parameters(), *module.buffers(), *inputs.values(), labels]
    apart = {tensor.untyped_storage().data_ptr() for tensor in held}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in apart:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        cross_entropy(module.capture(inputs, [logits])[logits], labels)
    return sum(saved.values()), predict_training_memory(graph).saved_after_forward


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [2, 3])
def test_saved_activations_are_what_autograd_keeps(name: str, batch: int) -> None:
    observed, predicted = observed_saved_bytes(batch, name)
    assert predicted == observed
