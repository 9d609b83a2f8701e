"""The graph types every stage shares: tensors, nodes and the analysed graph.

:class:`GraphAnalysis` (built by :func:`ranp_onnx.analysis.shapes.analyse`) holds every
tensor's concrete shape, producers and consumers; :class:`NodeInfo` and :class:`TensorInfo`
describe one node and one tensor. They sit at the bottom of the package: op rules, stages
and commands read them, and nothing here imports anything above the IR.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputShapeError
from .load import LoadedModel

#: The floating-point element types (the ones that hold weights and activations).
FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)


def numel(shape: Sequence[int]) -> int:
    """Return the number of elements of ``shape`` as a Python int (1 for a scalar)."""
    return int(np.prod(list(shape), dtype=np.int64)) if len(shape) else 1


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's static facts.

    Attributes:
        name: The ONNX value name.
        shape: Concrete dimensions, or None where inference could not tell.
        elem_type: The ``onnx.TensorProto`` element type.
        static: True if its value does not depend on the graph's inputs (initializers,
            constants and everything computed only from them or from shapes).
    """

    name: str
    shape: tuple[int, ...] | None
    elem_type: int
    static: bool

    @property
    def numel(self) -> int:
        """Number of elements (0 if the shape is unknown)."""
        return numel(self.shape) if self.shape is not None else 0

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        try:
            return int(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type).itemsize)
        except (KeyError, TypeError):
            return 4

    @property
    def nbytes(self) -> int:
        """Size in bytes (0 if the shape is unknown)."""
        return self.numel * self.itemsize


@dataclass(frozen=True)
class NodeInfo:
    """One node of the graph, in topological order.

    Attributes:
        index: Position in ``model.graph.node`` (which ONNX keeps topologically sorted).
        name: A unique name: the node's own, or ``<op_type>_<index>`` if it has none or
            shares it with another node.
        op_type: The operator.
        domain: The operator domain ("" for the default domain).
        inputs: Input value names ("" for an omitted optional input).
        outputs: Output value names.
        attributes: Decoded attributes (strings as str, tensors as numpy arrays).
    """

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any]

    def attribute(self, key: str, default: Any = None) -> Any:
        """Return attribute ``key``, or ``default`` if the node does not set it."""
        return self.attributes.get(key, default)


@dataclass(frozen=True)
class GraphAnalysis:
    """Shapes, producers and consumers of every tensor of a model.

    Attributes:
        model: The loaded model (never modified).
        opset: The default-domain opset version.
        nodes: All nodes in topological order.
        tensors: Every named tensor: graph inputs, initializers and node outputs.
        input_names: Graph inputs that are not initializers, in declaration order.
        output_names: Graph outputs in declaration order.
        input_shapes: The concrete shape each graph input was analysed at.
    """

    model: LoadedModel
    opset: int
    nodes: tuple[NodeInfo, ...]
    tensors: Mapping[str, TensorInfo]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: Mapping[str, tuple[int, ...]]
    _values: dict[str, np.ndarray] = field(repr=False)
    _initializers: Mapping[str, onnx.TensorProto] = field(repr=False)
    _producers: Mapping[str, NodeInfo] = field(repr=False)
    _consumers: Mapping[str, tuple[NodeInfo, ...]] = field(repr=False)

    def shape(self, name: str) -> tuple[int, ...]:
        """Return the concrete shape of tensor ``name``.

        Raises:
            InputShapeError: The shape could not be inferred; the message names the tensor.
        """
        info = self.tensors.get(name)
        if info is None or info.shape is None:
            consumer = self._consumers.get(name, ())
            where = f" (input of node '{consumer[0].name}')" if consumer else ""
            raise InputShapeError(
                f"the shape of tensor '{name}'{where} is unknown: give every dynamic input "
                "dimension with `input_shapes` NAME=1x1x64x64x64"
            )
        return info.shape

    def is_initializer(self, name: str) -> bool:
        """Return True if ``name`` is a graph initializer."""
        return name in self._initializers

    def initializer(self, name: str) -> np.ndarray:
        """Return the value of initializer ``name`` as a numpy array (cached)."""
        value = self._values.get(name)
        if value is None:
            value = numpy_helper.to_array(self._initializers[name])
            self._values[name] = value
        return value

    def constant(self, name: str) -> np.ndarray | None:
        """Return the statically known value of ``name`` (initializer or folded), or None."""
        if name in self._values:
            return self._values[name]
        if name in self._initializers:
            return self.initializer(name)
        return None

    def producer(self, name: str) -> NodeInfo | None:
        """Return the node that outputs tensor ``name`` (None for inputs and initializers)."""
        return self._producers.get(name)

    def consumers(self, name: str) -> tuple[NodeInfo, ...]:
        """Return the nodes that read tensor ``name``, in topological order."""
        return self._consumers.get(name, ())

    def ancestors(self, name: str) -> Iterator[str]:
        """Yield ``name`` and every tensor it is computed from (each once)."""
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            if not current or current in seen:
                continue
            seen.add(current)
            yield current
            producer = self._producers.get(current)
            if producer is not None:
                pending.extend(producer.inputs)

    def node(self, name: str) -> NodeInfo:
        """Return the node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def initializer_names(self) -> tuple[str, ...]:
        """All initializer names, in declaration order."""
        return tuple(self._initializers)


def node_infos(graph: onnx.GraphProto) -> list[NodeInfo]:
    """Describe a graph's nodes in order, giving unnamed or same-named nodes unique names."""
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.name:
            counts[node.name] = counts.get(node.name, 0) + 1
    infos = []
    for index, node in enumerate(graph.node):
        name = node.name if node.name and counts[node.name] == 1 else f"{node.op_type}_{index}"
        infos.append(
            NodeInfo(
                index=index,
                name=name,
                op_type=node.op_type,
                domain=node.domain,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
                attributes={a.name: _attribute_value(a) for a in node.attribute},
            )
        )
    return infos


def last_uses(nodes: Sequence[NodeInfo]) -> dict[str, int]:
    """The position of the last node that reads each value (its producer's if none does)."""
    last_use: dict[str, int] = {}
    for position, node in enumerate(nodes):
        for name in node.inputs:
            if name:
                last_use[name] = position
        for name in node.outputs:
            if name:
                last_use.setdefault(name, position)
    return last_use


def _attribute_value(attribute: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def random_inputs(graph: GraphAnalysis, seed: int = 0) -> dict[str, np.ndarray]:
    """Return standard-normal inputs (integer inputs get zeros) at the analysed shapes."""
    generator = np.random.default_rng(seed)
    feeds = {}
    for name in graph.input_names:
        info = graph.tensors[name]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.elem_type)
        shape = graph.shape(name)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = generator.standard_normal(shape).astype(dtype)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds
