"""Corruptions of a correct rewrite that keep every shape valid, for the oracle's mutation tests.

Each :class:`Mutation` changes the pruned model in one place the way a buggy rewrite could:
two kept channels of a layer swapped (its weights alone, or its weights and the
BatchNorm after it), one kept channel zeroed, the input channels a layer reads from a
Concat shifted by one (a wrong concat offset), a channel Slice shifted by one, a grouped
conv's filters moved into the neighbouring group, a bias entry dropped. ``nodes`` are the
nodes that read the changed tensors first: the oracle must name one of their outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ranp_onnx.analysis.shapes import analyse
from ranp_onnx.ir.static import static_value


@dataclass(frozen=True)
class Mutation:
    """One corruption: what it did, the corrupted model, and the outputs that must be named.

    ``inputs`` are the activations the first readers of the corrupted tensor read: where all
    of them are zero on the oracle's inputs (a dead ReLU), a corrupted weight changes
    nothing there, and no comparison of values can see it.
    """

    kind: str
    where: str
    model: onnx.ModelProto
    outputs: frozenset[str]
    inputs: frozenset[str]


class _Model:
    """A copy of a pruned model with its initializers by name."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(model)
        graph = self.proto.graph
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def value(self, name: str) -> np.ndarray | None:
        """The stored value of an initializer or a Constant node's output, else None."""
        tensor = self.initializers.get(name)
        if tensor is None and name in self.constants:
            tensor = next((a.t for a in self.constants[name].attribute if a.name == "value"), None)
        return None if tensor is None else numpy_helper.to_array(tensor).copy()

    def set(self, name: str, value: np.ndarray) -> None:
        if name in self.initializers:
            self.initializers[name].CopyFrom(numpy_helper.from_array(value, name))
            return
        for attribute in self.constants[name].attribute:
            if attribute.name == "value":
                attribute.t.CopyFrom(numpy_helper.from_array(value, attribute.t.name))

    def readers(self, name: str) -> frozenset[str]:
        return frozenset(out for node in self.consumers.get(name, ()) for out in node.output)

    def read_activations(self, name: str) -> frozenset[str]:
        """The inputs of ``name``'s readers that are neither stored nor constant."""
        return frozenset(
            tensor
            for node in self.consumers.get(name, ())
            for tensor in node.input
            if tensor and tensor not in self.initializers and tensor not in self.constants
        )


def _attribute(node: onnx.NodeProto, key: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == key), default)


def _layers(model: _Model) -> Iterator[tuple[onnx.NodeProto, str, int]]:
    """(node, weight, axis of its output channels) of each layer with a stored weight."""
    for node in model.proto.graph.node:
        if len(node.input) < 2 or node.input[1] not in model.initializers:
            continue
        if node.op_type == "Conv":
            yield node, node.input[1], 0
        elif node.op_type == "Gemm":
            yield node, node.input[1], 0 if _attribute(node, "transB", 0) else 1
        elif node.op_type == "MatMul":
            yield node, node.input[1], -1


def _changed(before: np.ndarray, after: np.ndarray) -> bool:
    return before.shape == after.shape and not np.array_equal(before, after)


def _swap(value: np.ndarray, axis: int) -> np.ndarray | None:
    """Swap the first two channels along ``axis`` that differ; None if all are equal."""
    moved = np.moveaxis(value, axis, 0)
    for j in range(1, moved.shape[0]):
        if not np.array_equal(moved[0], moved[j]):
            swapped = moved.copy()
            swapped[[0, j]] = swapped[[j, 0]]
            return np.moveaxis(swapped, 0, axis)
    return None


def _one(
    model: onnx.ModelProto, kind: str, apply: Callable[[_Model], str | None]
) -> Mutation | None:
    copy = _Model(model)
    where = apply(copy)
    if where is None:
        return None
    return Mutation(kind, where, copy.proto, copy.readers(where), copy.read_activations(where))


def mutations(model: onnx.ModelProto, limit: int = 3) -> list[Mutation]:
    """Every applicable corruption of ``model``, at most ``limit`` places of each kind."""
    found: list[Mutation] = []
    probe = _Model(model)
    for kind, make in _KINDS.items():
        places = list(make(probe))[:limit]
        for place in places:
            mutation = _one(model, kind, place)
            if mutation is not None:
                found.append(mutation)
    return found


Place = Callable[[_Model], str | None]


def _swap_weights(model: _Model) -> Iterator[Place]:
    for _node, weight, axis in _layers(model):

        def apply(m: _Model, weight: str = weight, axis: int = axis) -> str | None:
            value = m.value(weight)
            swapped = _swap(value, axis) if value is not None and value.shape[axis] > 1 else None
            if swapped is None:
                return None
            m.set(weight, swapped)
            return weight

        yield apply


def _swap_weights_and_batchnorm(model: _Model) -> Iterator[Place]:
    for node, weight, _axis in _layers(model):
        readers = model.consumers.get(node.output[0], [])
        norms = [r for r in readers if r.op_type == "BatchNormalization"]
        if node.op_type != "Conv" or len(readers) != 1 or not norms:
            continue
        norm = norms[0]

        def apply(m: _Model, weight: str = weight, norm: onnx.NodeProto = norm) -> str | None:
            value = m.value(weight)
            if value is None or value.shape[0] < 2 or _swap(value, 0) is None:
                return None
            moved = np.moveaxis(value, 0, 0)
            j = next(j for j in range(1, moved.shape[0]) if not np.array_equal(moved[0], moved[j]))
            order = np.arange(value.shape[0])
            order[[0, j]] = order[[j, 0]]
            m.set(weight, value[order])
            for name in norm.input[1:5]:
                entry = m.value(name)
                if entry is not None and entry.shape == (value.shape[0],):
                    m.set(name, entry[order])
            return weight

        yield apply


def _zero_channel(model: _Model) -> Iterator[Place]:
    for _node, weight, axis in _layers(model):

        def apply(m: _Model, weight: str = weight, axis: int = axis) -> str | None:
            value = m.value(weight)
            if value is None:
                return None
            moved = np.moveaxis(value, axis, 0)
            channel = next((c for c in range(moved.shape[0]) if moved[c].any()), None)
            if channel is None or moved.shape[0] < 2:
                return None
            moved = moved.copy()
            moved[channel] = 0
            m.set(weight, np.moveaxis(moved, 0, axis))
            return weight

        yield apply


def _roll(weight: str, axis: int) -> Place:
    """Roll a weight by one along ``axis`` (where that changes it)."""

    def apply(m: _Model) -> str | None:
        value = m.value(weight)
        if value is None or value.shape[axis] < 2:
            return None
        shifted = np.roll(value, 1, axis=axis)
        if not _changed(value, shifted):
            return None
        m.set(weight, shifted)
        return weight

    return apply


def _shift_concat_offset(model: _Model) -> Iterator[Place]:
    """The input channels a conv reads from a Concat, one off."""
    for node, weight, _axis in _layers(model):
        producer = model.producers.get(node.input[0])
        if node.op_type == "Conv" and producer is not None and producer.op_type == "Concat":
            yield _roll(weight, axis=1)


def _misalign_groups(model: _Model) -> Iterator[Place]:
    """A grouped conv's filters moved by one, across a group boundary."""
    for node, weight, _axis in _layers(model):
        if node.op_type == "Conv" and _attribute(node, "group", 1) >= 2:
            yield _roll(weight, axis=0)


def _drop_bias_entry(model: _Model) -> Iterator[Place]:
    for node in model.proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        bias = node.input[2]
        if bias not in model.initializers:
            continue

        def apply(m: _Model, bias: str = bias) -> str | None:
            value = m.value(bias)
            if value is None or value.size < 2:
                return None
            entry = next((i for i in range(value.size) if value.flat[i] != 0), None)
            changed = value.copy()
            if entry is None:
                return None
            changed.flat[entry] = 0
            m.set(bias, changed)
            return bias

        yield apply


def _shift_slice(model: _Model) -> Iterator[Place]:
    graph = None
    for node in model.proto.graph.node:
        if (
            node.op_type != "Slice"
            or len(node.input) < 4
            or node.input[1] not in model.initializers
        ):
            continue
        graph = graph or analyse(model.proto)
        axes = static_value(graph, node.input[3]).tolist()
        if 1 not in axes:
            continue

        def apply(
            m: _Model, node: onnx.NodeProto = node, position: int = axes.index(1)
        ) -> str | None:
            starts, ends = m.value(node.input[1]), m.value(node.input[2])
            if starts is None or ends is None or starts[position] <= 0:
                return None
            starts, ends = starts.copy(), ends.copy()
            starts[position] -= 1
            ends[position] -= 1
            m.set(node.input[1], starts)
            m.set(node.input[2], ends)
            return node.input[1]

        yield apply


_KINDS: dict[str, Callable[[_Model], Iterator[Place]]] = {
    "swap two kept channels (weights)": _swap_weights,
    "swap two kept channels (weights and BatchNorm)": _swap_weights_and_batchnorm,
    "zero one kept channel": _zero_channel,
    "shift a concat offset by one": _shift_concat_offset,
    "misalign a grouped conv's groups": _misalign_groups,
    "drop a bias entry": _drop_bias_entry,
    "shift a channel slice by one": _shift_slice,
}
