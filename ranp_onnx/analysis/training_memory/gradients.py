"""The backward pass on the ledger: each node's input gradients, and where autograd adds them.

:class:`NodeRecord` is what the forward left for a node's backward (its input tensors as
the op saw them, the tensors autograd keeps, the autocast copies it made); its methods
allocate the node's input gradients as its rule says (a view of the output's gradient, or
new) and cast the gradients of autocast copies back. :class:`GradientBuffers` adds each
gradient where autograd does: into a parameter's ``.grad`` (the first one is kept as it
is when nothing else holds it), or into the input buffer of the node that produced the
tensor, in place when one of the two is held by nothing else, else into a new sum.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from ...ir.graph import GraphAnalysis, NodeInfo
from ...ops.base import AutogradMemory
from .timeline import GRADIENTS, Handle, Ledger


@dataclass
class NodeRecord:
    """What the forward left for one node's backward.

    Attributes:
        graph: The analysed graph.
        node: The node.
        memory: Its rule's answer (saved tensors, views, scratch).
        inputs: Its input tensors by position, autocast copies in place of their sources.
        saved: The tensors autograd keeps for it (held until its backward has run).
        casts: Bytes per element of the autocast copies, by input position.
    """

    graph: GraphAnalysis
    node: NodeInfo
    memory: AutogradMemory
    inputs: dict[int, Handle]
    saved: list[Handle]
    casts: dict[int, int] = field(default_factory=dict)

    def input_gradients(
        self,
        ledger: Ledger,
        requires: Collection[str],
        itemsize: Mapping[str, int],
        output_gradient: Handle | None,
    ) -> list[tuple[str, Handle]]:
        """Allocate the gradient of every input that needs one (views share the output's)."""
        produced = []
        for position, name in enumerate(self.node.inputs):
            if name not in requires or position not in self.inputs:
                continue
            size = self.casts.get(position, itemsize[name])
            nbytes = self.graph.tensors[name].numel * size
            if position in self.memory.gradient_views and output_gradient is not None:
                handle = ledger.hold(Handle(output_gradient.storage, nbytes))
            else:
                handle = ledger.new(nbytes)
            produced.append((name, handle))
        return produced

    def cast_back(
        self, ledger: Ledger, produced: list[tuple[str, Handle]], itemsize: Mapping[str, int]
    ) -> list[tuple[str, Handle]]:
        """Gradients of autocast copies are cast back to their source's type."""
        if not self.casts:
            return produced
        positions = {name: p for p, name in enumerate(self.node.inputs)}
        result = []
        for name, handle in produced:
            if positions[name] in self.casts:
                back = ledger.new(self.graph.tensors[name].numel * itemsize[name])
                ledger.drop(handle)
                handle = back
            result.append((name, handle))
        return result


class GradientBuffers:
    """Gradients waiting for their node's backward, and the parameters' ``.grad``.

    Attributes:
        pending: Gradient of each tensor whose producer has not run its backward yet.
        parameter_grads: ``.grad`` of each parameter that has one.
    """

    def __init__(self, ledger: Ledger, parameters: Collection[str]) -> None:
        self.ledger = ledger
        self.parameters = frozenset(parameters)
        self.pending: dict[str, Handle] = {}
        self.parameter_grads: dict[str, Handle] = {}

    def add(self, name: str, handle: Handle) -> None:
        """Add a gradient where autograd adds it."""
        if name in self.parameters:
            self._accumulate_parameter(name, handle)
            return
        old = self.pending.get(name)
        if old is None:
            self.pending[name] = handle
        elif self.ledger.exclusive(old):
            self.ledger.drop(handle)  # added to the old one in place
        elif self.ledger.exclusive(handle):
            self.ledger.drop(old)
            self.pending[name] = handle
        else:
            total = self.ledger.new(handle.nbytes)
            self.ledger.drop(old)
            self.ledger.drop(handle)
            self.pending[name] = total

    def _accumulate_parameter(self, name: str, handle: Handle) -> None:
        if name in self.parameter_grads:
            self.ledger.drop(handle)  # added in place
        elif self.ledger.exclusive(handle):
            self.ledger.recategorize(handle, GRADIENTS)
            self.parameter_grads[name] = handle
        else:
            self.parameter_grads[name] = self.ledger.new(handle.nbytes, GRADIENTS)
            self.ledger.drop(handle)

    def release(self) -> None:
        """Drop every pending gradient."""
        for handle in self.pending.values():
            self.ledger.drop(handle)
        self.pending.clear()
