"""Node-by-node ONNX shape inference with constant folding (used by :mod:`.analyse`).

Each node's output types come from its ONNX schema (``infer_node_outputs``) given its
inputs' types and the values of its small static inputs; a node whose inputs are all
static and small is evaluated with onnx's reference implementation instead, so the
``Shape -> Gather -> Concat`` chains and ``Resize`` scales that exporters build become
constants and every tensor on the data path gets a concrete shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from ..errors import InputShapeError, RanpError, UnsupportedModelError, first_line
from ..ir import runtime
from ..ir.graph import GraphAnalysis, NodeInfo, TensorInfo, node_infos, numel
from ..ir.load import LoadedModel
from ..ops import rule_for

#: Largest constant (in elements) whose value is computed while analysing.
FOLD_LIMIT = 1 << 16


def infer_node(
    node: NodeInfo,
    proto: onnx.NodeProto,
    model: onnx.ModelProto,
    types: dict[str, onnx.TypeProto],
    values: dict[str, np.ndarray],
    static: set[str],
) -> None:
    """Infer (or fold) one node's outputs into ``types``, ``values`` and ``static``."""
    present = [name for name in node.inputs if name]
    missing = [name for name in present if name not in types]
    if missing:
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op_type}) reads '{missing[0]}', whose type is unknown"
        )
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in proto.attribute
    ):
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op_type}) has sub-graphs: control flow is not supported"
        )
    rule = rule_for(node.op_type, node.domain)
    reads_shape = rule is not None and rule.reads_shape
    is_static = all(name in static for name in present) or reads_shape
    folded = _fold(node, proto, model, types, values) if is_static else None
    if folded is not None:
        for name, value in zip(node.outputs, folded):
            values[name] = value
            types[name] = tensor_type(
                onnx.helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
            )
    else:
        given = _rule_output_types(node, types)
        inferred = given if given is not None else _infer_types(node, proto, model, types, values)
        for name, type_proto in inferred.items():
            types[name] = type_proto
    if is_static:
        static.update(name for name in node.outputs if name)


def _rule_output_types(
    node: NodeInfo, types: dict[str, onnx.TypeProto]
) -> dict[str, onnx.TypeProto] | None:
    """The rule's output types where it gives them (ops ONNX cannot infer), else None."""
    rule = rule_for(node.op_type, node.domain)
    shapes = [concrete_shape(types[name]) if name else None for name in node.inputs]
    given = rule.output_shapes(node, shapes) if rule is not None else None
    if given is None:
        return None
    elem_type = types[node.inputs[0]].tensor_type.elem_type
    return {name: tensor_type(elem_type, shape) for name, shape in zip(node.outputs, given)}


def _infer_types(
    node: NodeInfo,
    proto: onnx.NodeProto,
    model: onnx.ModelProto,
    types: dict[str, onnx.TypeProto],
    values: dict[str, np.ndarray],
) -> dict[str, onnx.TypeProto]:
    version = _domain_version(model, node.domain)
    try:
        schema = onnx.defs.get_schema(node.op_type, version, node.domain)
    except onnx.defs.SchemaError as error:
        raise UnsupportedModelError(
            f"node '{node.name}': op '{node.op_type}' (domain '{node.domain or 'ai.onnx'}', "
            f"opset {version}) has no ONNX schema, so its shapes cannot be inferred"
        ) from error
    present = [name for name in node.inputs if name]
    data = {
        name: numpy_helper.from_array(values[name], name)
        for name in present
        if name in values and values[name].size <= FOLD_LIMIT
    }
    try:
        return dict(
            shape_inference.infer_node_outputs(
                schema,
                proto,
                {name: types[name] for name in present},
                data,
                opset_imports=list(model.opset_import),
                ir_version=min(model.ir_version, onnx.IR_VERSION),
            )
        )
    except Exception as error:
        first = first_line(error)
        raise InputShapeError(
            f"node '{node.name}' ({node.op_type}) does not fit its input shapes "
            f"{[_shape_text(types[n]) for n in present]}: {first}"
        ) from error


@dataclass
class InferredShapes:
    """Node-by-node inference at concrete input shapes, up to the first node that fails.

    Attributes:
        model: The model.
        input_shapes: The input shapes inferred at.
        nodes: Every node of the graph, in order.
        types: The type of every tensor inferred so far.
        values: Folded values of small static tensors.
        static: Tensors that do not depend on the inputs.
        failure: The node that failed and the error, or None if every node was inferred.
    """

    model: LoadedModel
    input_shapes: dict[str, tuple[int, ...]]
    nodes: list[NodeInfo]
    types: dict[str, onnx.TypeProto]
    values: dict[str, np.ndarray]
    static: set[str]
    failure: tuple[NodeInfo, RanpError] | None = None

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The concrete shape of tensor ``name``, or None if it is unknown."""
        found = self.types.get(name)
        return concrete_shape(found) if found is not None else None

    def analysis(self) -> GraphAnalysis:
        """The :class:`GraphAnalysis` of a complete inference."""
        graph = self.model.proto.graph
        initializers = {tensor.name: tensor for tensor in graph.initializer}
        tensors = {
            name: TensorInfo(
                name=name,
                shape=concrete_shape(type_proto),
                elem_type=type_proto.tensor_type.elem_type,
                static=name in self.static,
            )
            for name, type_proto in self.types.items()
        }
        producers = {output: node for node in self.nodes for output in node.outputs if output}
        consumers: dict[str, list[NodeInfo]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                if name:
                    consumers.setdefault(name, []).append(node)
        return GraphAnalysis(
            model=self.model,
            opset=runtime.default_opset(self.model.proto),
            nodes=tuple(self.nodes),
            tensors=tensors,
            input_names=tuple(i.name for i in graph.input if i.name not in initializers),
            output_names=tuple(o.name for o in graph.output),
            input_shapes=self.input_shapes,
            _values=self.values,
            _initializers=initializers,
            _producers=producers,
            _consumers={name: tuple(found) for name, found in consumers.items()},
        )


def infer_shapes(
    model: LoadedModel,
    input_shapes: Mapping[str, tuple[int, ...]],
    *,
    stop_at_failure: bool = False,
) -> InferredShapes:
    """Infer (and fold) every node in order at the given input shapes.

    The shapes are not checked against the graph's declared inputs (a fixed batch may be
    overridden, to see which node depends on it).

    Args:
        model: The loaded model.
        input_shapes: A concrete shape for every graph input that is not an initializer.
        stop_at_failure: Return at the first node whose inference fails, with the
            failure recorded, instead of raising. Defaults to False.

    Raises:
        InputShapeError: A node does not fit its inputs' shapes, or
        UnsupportedModelError: a node cannot be inferred (unless ``stop_at_failure``).
    """
    graph = model.proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    types: dict[str, onnx.TypeProto] = {}
    static: set[str] = set(initializers)
    for value in graph.input:
        if value.name in input_shapes:
            types[value.name] = tensor_type(
                value.type.tensor_type.elem_type, input_shapes[value.name]
            )
    for name, tensor in initializers.items():
        types[name] = tensor_type(tensor.data_type, tuple(tensor.dims))
    values: dict[str, np.ndarray] = {
        name: numpy_helper.to_array(tensor)
        for name, tensor in initializers.items()
        if numel(tensor.dims) <= FOLD_LIMIT
    }
    nodes = node_infos(graph)
    inferred = InferredShapes(model, dict(input_shapes), nodes, types, values, static)
    for node, proto in zip(nodes, graph.node):
        try:
            infer_node(node, proto, model.proto, types, values, static)
        except RanpError as error:
            if not stop_at_failure:
                raise
            inferred.failure = (node, error)
            break
    return inferred


def _fold(
    node: NodeInfo,
    proto: onnx.NodeProto,
    model: onnx.ModelProto,
    types: dict[str, onnx.TypeProto],
    values: dict[str, np.ndarray],
) -> list[np.ndarray] | None:
    """Compute a static node's outputs if they are cheap; None to fall back on inference."""
    rule = rule_for(node.op_type, node.domain)
    if rule is not None and rule.reads_shape:
        shape = concrete_shape(types[node.inputs[0]])
        value = rule.shape_value(node, shape) if shape is not None else None
        return [value] if value is not None else None
    if node.op_type == "Constant" and "value" in node.attributes:
        return [np.asarray(node.attributes["value"])]
    inputs = [name for name in node.inputs if name]
    if any(name not in values for name in inputs):
        return None
    if sum(values[name].size for name in inputs) > FOLD_LIMIT:
        return None
    try:
        from onnx.reference import ReferenceEvaluator

        graph = onnx.helper.make_graph(
            [proto],
            "fold",
            [
                onnx.helper.make_tensor_value_info(n, types[n].tensor_type.elem_type, None)
                for n in inputs
            ],
            [
                onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
                for n in node.outputs
                if n
            ],
        )
        single = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
        single.ir_version = min(model.ir_version, onnx.IR_VERSION)
        results = ReferenceEvaluator(single).run(None, {n: values[n] for n in inputs})
    except Exception:
        return None
    outputs = [np.asarray(r) for r in results]
    if any(o.size > FOLD_LIMIT for o in outputs) or len(outputs) != len(
        [n for n in node.outputs if n]
    ):
        return None
    return outputs


def _domain_version(model: onnx.ModelProto, domain: str) -> int:
    for entry in model.opset_import:
        if entry.domain == domain or (
            domain in ("", "ai.onnx") and entry.domain in ("", "ai.onnx")
        ):
            return int(entry.version)
    return 1


def tensor_type(elem_type: int, shape: Sequence[int]) -> onnx.TypeProto:
    """A tensor TypeProto of a concrete shape."""
    return onnx.helper.make_tensor_type_proto(elem_type, [int(d) for d in shape])


def concrete_shape(type_proto: onnx.TypeProto) -> tuple[int, ...] | None:
    """The dimensions of a TypeProto, or None if any is unknown."""
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return None
        dims.append(int(dim.dim_value))
    return tuple(dims)


def _shape_text(type_proto: onnx.TypeProto) -> str:
    shape = concrete_shape(type_proto)
    return "x".join(map(str, shape)) if shape is not None else "?"
