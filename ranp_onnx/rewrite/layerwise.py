"""The oracle's proof, node by node: every tensor of the pruned graph against its counterpart.

The pruned model must compute what the original computes with the removed channels zeroed
where they are consumed (the *masked original*). Comparing graph outputs alone cannot
prove that at initialization: activations shrink through the network, so a whole wrong
channel in the middle hardly moves the output. This module proves it one node at a time.

Both models are evaluated with the torch op rules (``TorchGraph``), in float32, in
inference mode, on the same inputs. The masked original runs forward as a whole. Each
pruned node runs on *the masked original's own values* of its inputs, restricted to the
kept channels (the pruned graph's own parameters and shape values where it has them), and
each floating-point tensor it outputs must equal the masked original's tensor of the same
name, restricted to the kept channels, to ``tolerance`` of that tensor's largest magnitude.

Because every node starts from the reference values, rounding never accumulates: the
only difference an exact rewrite leaves is one node's float32 rounding (a sum over fewer,
reordered terms), about 1e-7 of the tensor's scale, while a wrong channel, offset, group
or bias differs at the node that computes it by a sizeable fraction of that tensor. By
induction over the topological order, agreement at every node is agreement of the whole
graph. The first tensor that differs is named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..errors import InternalError, ValidationError

if TYPE_CHECKING:
    import torch

    from ..ir.graph import NodeInfo
    from ..ops.base import OpRule
    from ..scoring.evaluator import TorchGraph


@dataclass(frozen=True)
class LayerCheck:
    """What the node-by-node comparison found.

    Attributes:
        tensors: Floating-point tensors of the pruned graph compared with their
            counterpart.
        worst: The tensor with the largest relative error, and that error.
        degenerate: Compared tensors whose reference was all zero where channels were
            removed or sliced (no evidence either way), by name.
        outputs: The masked original's graph outputs (the runtime check compares with
            them), as numpy arrays.
    """

    tensors: int
    worst: tuple[str, float]
    degenerate: tuple[str, ...]
    outputs: Mapping[str, np.ndarray]


def compare_layers(
    reference: onnx.ModelProto,
    pruned: onnx.ModelProto,
    kept: Mapping[tuple[str, int], np.ndarray],
    feeds: Mapping[str, np.ndarray],
    *,
    tolerance: float,
) -> LayerCheck:
    """Compare every floating-point tensor of ``pruned`` with its counterpart in ``reference``.

    Args:
        reference: The masked original.
        pruned: The rewritten model.
        kept: Kept indices of every space that lost elements, keyed by (tensor, axis).
        feeds: The graph inputs.
        tolerance: Largest accepted max |difference| / max |reference| per tensor.

    Raises:
        ValidationError: A tensor differs by more than ``tolerance`` of its scale, or has
            another shape than its counterpart; the message names the first in
            topological order.
        UnsupportedModelError: An op cannot be evaluated with torch.
    """
    import torch

    from ..scoring.evaluator import TorchGraph

    with torch.no_grad():
        original = TorchGraph(reference).eval()
        rewritten = TorchGraph(pruned).eval()
        walk = _Walk(original, rewritten, kept, tolerance)
        return walk.run({name: torch.from_numpy(np.asarray(v)) for name, v in feeds.items()})


class _Walk:
    """One pass over the masked original, evaluating each pruned node as it comes."""

    def __init__(
        self,
        original: TorchGraph,
        rewritten: TorchGraph,
        kept: Mapping[tuple[str, int], np.ndarray],
        tolerance: float,
    ) -> None:
        import torch

        self.original = original
        self.tolerance = tolerance
        self.device = torch.device("cpu")
        self.context = original.context(self.device)
        self.pruned_context = rewritten.context(self.device)
        self.pruned_steps = {node.name: (node, rule) for node, rule in rewritten.steps}
        self.pruned_parameters = dict(rewritten.named_initializers())
        self.slices: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for (name, axis), indices in kept.items():
            self.slices.setdefault(name, []).append((axis, torch.as_tensor(indices)))
        self.reference_names = {node.name for node, _ in original.steps}
        # Values of the pruned graph itself: shapes and indices (not compared), and the
        # outputs of nodes only the pruned graph has (the rewrite's constants).
        self.own: dict[str, torch.Tensor] = {}
        self.compared = 0
        self.worst: tuple[str, float] = ("", 0.0)
        self.degenerate: list[str] = []

    def run(self, feeds: Mapping[str, torch.Tensor]) -> LayerCheck:
        """Evaluate both graphs and compare; see :func:`compare_layers`."""
        self._check_parameters()
        for node, rule in self.pruned_steps.values():
            if node.name not in self.reference_names:
                self._evaluate_own(node, rule)
        values: dict[str, Any] = {**feeds, **dict(self.original.named_initializers())}
        last_use = self._last_use()
        for position, (node, rule) in enumerate(self.original.steps):
            inputs = [values[name] if name else None for name in node.inputs]
            outputs = rule.evaluate(node, inputs, self.context)
            for name, value in zip(node.outputs, outputs):
                if name:
                    values[name] = value
            pruned = self.pruned_steps.get(node.name)
            if pruned is not None:
                self._check_node(*pruned, values)
            for name in [n for n in node.inputs if n and last_use.get(n) == position]:
                values.pop(name, None)
        results = {name: values[name].detach().cpu().numpy() for name in self.original.output_names}
        return LayerCheck(self.compared, self.worst, tuple(self.degenerate), results)

    def _check_parameters(self) -> None:
        """Every stored tensor of the original must be its kept channels in the pruned model.

        The rewrite only slices stored tensors along channel spaces, so this holds exactly
        wherever the slice has the pruned tensor's shape (a grouped convolution's weight,
        sliced per group, is left to the values). It sees what no value can: a weight read
        only through activations that are zero on the inputs run.
        """
        import torch

        original = dict(self.original.named_initializers())
        for name, got in self.pruned_parameters.items():
            want = original.get(name)
            if want is None:
                continue
            want = self._restrict(name, want)
            if tuple(want.shape) == tuple(got.shape) and not torch.equal(want, got):
                steps = self.pruned_steps.values()
                reader = next((node.name for node, _ in steps if name in node.inputs), "?")
                raise ValidationError(
                    f"validation failed: tensor '{name}' (read by node '{reader}') is not the "
                    "original's kept channels; no model was written"
                )

    def _last_use(self) -> dict[str, int]:
        """Where each value is read last, by either graph (a pruned node runs beside its twin)."""
        position_of = {node.name: i for i, (node, _) in enumerate(self.original.steps)}
        last: dict[str, int] = {}
        for position, (node, _) in enumerate(self.original.steps):
            for name in node.inputs:
                last[name] = position
        for node, _ in self.pruned_steps.values():
            twin = position_of.get(node.name)
            if twin is None:
                continue
            for name in node.inputs:
                last[name] = max(last.get(name, twin), twin)
        for name in self.original.output_names:
            last[name] = len(position_of)
        return last

    def _evaluate_own(self, node: NodeInfo, rule: OpRule) -> None:
        inputs = [self.own.get(name, self.pruned_parameters.get(name)) for name in node.inputs]
        for name, value in zip(node.outputs, rule.evaluate(node, inputs, self.pruned_context)):
            self.own[name] = value

    def _input(self, name: str, values: Mapping[str, Any]) -> Any:
        if not name:
            return None
        if name in self.own:
            return self.own[name]
        if name in self.pruned_parameters:
            return self.pruned_parameters[name]
        if name in values:
            return self._restrict(name, values[name])
        raise InternalError(f"tensor '{name}' of the pruned model has no counterpart")

    def _restrict(self, name: str, value: torch.Tensor) -> torch.Tensor:
        for axis, indices in self.slices.get(name, ()):
            value = value.index_select(axis, indices.to(value.device))
        return value

    def _check_node(self, node: NodeInfo, rule: OpRule, values: Mapping[str, Any]) -> None:
        inputs = [self._input(name, values) for name in node.inputs]
        outputs = rule.evaluate(node, inputs, self.pruned_context)
        for name, got in zip(node.outputs, outputs):
            if not name or got is None:
                continue
            if not got.is_floating_point():
                self.own[name] = got  # a shape or an index: the pruned graph's own
                continue
            if name not in values:
                raise InternalError(f"tensor '{name}' of the pruned model has no counterpart")
            self._compare(node, name, self._restrict(name, values[name]), got)

    def _compare(self, node: NodeInfo, name: str, want: torch.Tensor, got: torch.Tensor) -> None:
        if tuple(want.shape) != tuple(got.shape):
            raise ValidationError(
                f"validation failed: tensor '{name}' (node '{node.name}', {node.op_type}) has "
                f"shape {list(got.shape)} after pruning, {list(want.shape)} in the masked "
                "original; no model was written"
            )
        self.compared += 1
        error, zero = relative_error(want, got)
        if zero:
            self.degenerate.append(name)
        if error > self.worst[1] or not self.worst[0]:
            self.worst = (name, error)
        if not error <= self.tolerance:
            raise ValidationError(
                f"validation failed: tensor '{name}' (node '{node.name}', {node.op_type}) "
                f"differs from the masked original by {error:.3g} of its scale (tolerance "
                f"{self.tolerance:g}); no model was written"
            )


def relative_error(want: torch.Tensor, got: torch.Tensor) -> tuple[float, bool]:
    """Max |want - got| / max |want| (absolute where want is all 0), and whether it was.

    Non-finite values must match exactly (NaN where NaN, the same infinity) or the error
    is infinite.
    """
    want, got = want.detach(), got.detach()
    if not want.numel():
        return 0.0, False
    scale = float(want.abs().amax())
    difference = float((want - got).abs().amax())
    if not (math.isfinite(scale) and math.isfinite(difference)):
        return _non_finite_error(want.double(), got.double())
    if scale == 0.0:
        return difference, True
    return difference / scale, False


def _non_finite_error(want: torch.Tensor, got: torch.Tensor) -> tuple[float, bool]:
    """:func:`relative_error` where a tensor holds NaN or infinities."""
    import torch

    finite = torch.isfinite(want)
    if not torch.equal(finite, torch.isfinite(got)) or not torch.equal(
        want[~finite].nan_to_num(0.0), got[~finite].nan_to_num(0.0)
    ):
        return float("inf"), False
    if not finite.any():
        return 0.0, False
    difference = float((want - got)[finite].abs().max())
    scale = float(want[finite].abs().max())
    if scale == 0.0:
        return difference, True
    return difference / scale, False
