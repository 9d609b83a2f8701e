"""What an op rule receives besides its node: the rewrite and evaluation contexts.

The channel union-find the rules write into while coupling is
:class:`~ranp_onnx.ops.channel_graph.ChannelGraph`; the two contexts here are what
``rewrite`` and ``evaluate`` see. They sit below every stage, beside the rule contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ir.graph import GraphAnalysis, NodeInfo
from ..ir.static import static_value

if TYPE_CHECKING:
    import torch


@dataclass
class RewriteContext:
    """What op rules see and change while the model is rewritten.

    Attributes:
        graph: The analysed original model.
        kept: Sorted kept indices of every space that loses elements, keyed by
            (tensor, axis).
        values: New values of static tensors, keyed by tensor name.
        attributes: Attribute updates, keyed by node name (None removes one).
        inputs: New constant inputs of single nodes, keyed by (node name, position).
        removed: Inputs dropped from their node, as (node name, position).
    """

    graph: GraphAnalysis
    kept: Mapping[tuple[str, int], np.ndarray]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[tuple[str, int], tuple[str, np.ndarray]] = field(default_factory=dict)
    removed: set[tuple[str, int]] = field(default_factory=set)
    _changed_tensors: frozenset[str] | None = field(default=None, repr=False)

    def kept_channels(self, tensor: str, axis: int = 1) -> np.ndarray | None:
        """Return the kept indices of ``tensor``'s ``axis``, or None if it keeps all."""
        size = len(self.graph.shape(tensor))
        return self.kept.get((tensor, axis % size if size else 0))

    def new_size(self, tensor: str, axis: int = 1) -> int:
        """Return the length of ``tensor``'s ``axis`` after pruning."""
        kept = self.kept_channels(tensor, axis)
        return int(kept.size) if kept is not None else self.graph.shape(tensor)[axis]

    def changed(self, node: NodeInfo) -> bool:
        """Return True if any tensor the node reads or writes loses channels."""
        if self._changed_tensors is None:
            self._changed_tensors = frozenset(tensor for tensor, _ in self.kept)
        return any(name in self._changed_tensors for name in (*node.inputs, *node.outputs))

    def value(self, name: str) -> np.ndarray:
        """Return the current value of a static tensor (its new value if already changed)."""
        if name in self.values:
            return self.values[name]
        return static_value(self.graph, name)

    def set_value(self, name: str, value: np.ndarray) -> None:
        """Replace the value of a static tensor."""
        self.values[name] = np.ascontiguousarray(value)

    def set_attribute(self, node: NodeInfo, key: str, value: Any) -> None:
        """Set (or, with None, remove) an attribute of ``node`` in the rewritten model."""
        self.attributes.setdefault(node.name, {})[key] = value

    def replace_input(self, node: NodeInfo, position: int, value: np.ndarray) -> None:
        """Give ``node`` a new constant input of its own at ``position``.

        For shape constants (Reshape targets, Split sizes, Slice bounds): exporters share
        equal constants between nodes, so patching the shared tensor would change others.
        """
        self.inputs[(node.name, position)] = (f"{node.name}__ranp_input{position}", value)

    def remove_input(self, node: NodeInfo, position: int) -> None:
        """Drop input ``position`` of ``node`` (a Concat's part that lost every channel)."""
        self.removed.add((node.name, position))


@dataclass(frozen=True)
class EvalContext:
    """Settings for one forward pass, handed to every rule's ``evaluate``.

    Attributes:
        opset: The default-domain opset of the model.
        batchnorm_training: True: BatchNormalization uses batch statistics; False: running
            statistics; None: as each node says (its ``training_mode``).
        dropout_training: True: Dropout drops; False: it is an identity unless the node's
            own ``training_mode`` input is a static true.
        device: Where constants the rules create are placed (the inputs' device).
        buffers: Initializer names held as buffers; batch-statistics BatchNormalization
            updates these running statistics in place, the way torch's BatchNorm does.
        update_running_stats: False to leave running statistics untouched.
    """

    opset: int
    batchnorm_training: bool | None
    dropout_training: bool
    device: torch.device
    buffers: frozenset[str] = frozenset()
    update_running_stats: bool = True
