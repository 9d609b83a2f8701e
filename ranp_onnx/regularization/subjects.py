"""What is trained: an ONNX model as a TorchGraph, or a user's own torch module.

Both give the run the same things: the analysed graph (whose initializer names are the
module's ``state_dict`` keys), the forward pass to the loss's input, an export of the
current weights, and a way to continue with the pruned model. A user's module is
exported with :func:`~ranp_onnx.torch_api.prune_module.export_for_pruning` and, once pruned,
shrunk in place with :func:`~ranp_onnx.torch_api.prune_module.adopt_pruned` (or replaced by
``to_torch`` of the pruned model where its forward cannot follow, with the reason).

This module imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
import torch
from torch import nn

from ..analysis.shapes import analyse
from ..ir.graph import GraphAnalysis
from ..scoring.evaluator import TorchGraph
from ..scoring.statistics import logits_of
from ..torch_api.prune_module import adopt_pruned, export_for_pruning
from ..torch_api.round_trip import to_onnx, to_torch


def resolve_device(device: str) -> torch.device:
    """The torch device of ``--device``: "auto" is CUDA where torch sees it, else CPU."""
    from ..errors import DataError

    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("`device` cuda: torch sees no CUDA device")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def first_tensor(value: Any) -> torch.Tensor:
    """The first tensor of a module's output (a tensor, or a tuple, list or dict of them)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and value:
        return first_tensor(value[0])
    raise TypeError(f"the module returned {type(value).__name__}, not a tensor")


class GraphSubject:
    """An ONNX model, trained as :func:`~ranp_onnx.torch_api.round_trip.to_torch` of it.

    Args:
        graph: The analysed model.
        device: Where it trains.
    """

    output_is_probability = False

    def __init__(self, graph: GraphAnalysis, device: torch.device) -> None:
        self.graph = graph
        self.device = device
        self.module: nn.Module = to_torch(graph).to(device).train()
        self.logits = logits_of(graph, graph.output_names[0])
        self.in_place = True
        self.reason: str | None = None

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits (the input of a final softmax, if there is one)."""
        module = self.module
        assert isinstance(module, TorchGraph)
        return module.capture(inputs, [self.logits])[self.logits]

    def classes(self) -> int:
        """Size of the loss input's axis 1."""
        return self.graph.shape(self.logits)[1]

    def export(self) -> onnx.ModelProto:
        """The model with the current weights."""
        module = self.module
        assert isinstance(module, TorchGraph)
        return to_onnx(module)

    def adopt(self, pruned: onnx.ModelProto, tolerance: float) -> None:
        """Continue with the pruned model."""
        self.module = to_torch(pruned).to(self.device).train()

    def finish(self) -> None:
        """Nothing to restore."""


class ModuleSubject:
    """A user's torch module, trained in place on its own device.

    Args:
        module: The network (trained; its parameters are changed in place).
        example_inputs: What it is exported and checked with.
    """

    def __init__(
        self, module: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]
    ) -> None:
        self.module = module
        self.inputs = (
            (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        )
        exported = export_for_pruning(module, self.inputs)
        shapes = {value.name: tuple(x.shape) for value, x in zip(exported.graph.input, self.inputs)}
        self.graph = analyse(exported, shapes)
        output = self.graph.output_names[0]
        self.output_is_probability = logits_of(self.graph, output) != output
        parameter = next(iter(module.parameters()), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.was_training = module.training
        self.in_place = True
        self.reason: str | None = None
        module.train()

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The module's (first) output."""
        if isinstance(self.module, TorchGraph):
            return first_tensor(self.module(**inputs))
        return first_tensor(self.module(*(inputs[name] for name in self.graph.input_names)))

    def classes(self) -> int:
        """Size of the output's axis 1."""
        return self.graph.shape(self.graph.output_names[0])[1]

    def export(self) -> onnx.ModelProto:
        """An export of the module with its current weights."""
        if isinstance(self.module, TorchGraph):
            return to_onnx(self.module)
        return export_for_pruning(self.module, self.inputs)

    def adopt(self, pruned: onnx.ModelProto, tolerance: float) -> None:
        """Shrink the module in place to the pruned model (or fall back to to_torch)."""
        inputs = tuple(x.to(self.device) for x in self.inputs)
        module, reason, _ = adopt_pruned(
            self.module, pruned, inputs, tolerance=tolerance, caller="regularize_module"
        )
        self.module = module.train()
        self.in_place = reason is None
        self.reason = reason

    def finish(self) -> None:
        """Put the module back in the train/eval mode it came in."""
        self.module.train(self.was_training)
