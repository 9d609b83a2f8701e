"""Values of static tensors: initializers, constants and what is computed from them."""

from __future__ import annotations

import numpy as np
import onnx

from ..errors import InternalError
from .graph import GraphAnalysis


def static_value(graph: GraphAnalysis, name: str) -> np.ndarray:
    """Return the value of a static tensor, evaluating its static sub-graph if needed."""
    value = graph.constant(name)
    if value is not None:
        return value
    info = graph.tensors.get(name)
    if info is None or not info.static:
        raise InternalError(f"tensor '{name}' is not static")
    from onnx.reference import ReferenceEvaluator

    indices: set[int] = set()
    known: dict[str, np.ndarray] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in known or not current:
            continue
        value = graph.constant(current)
        if value is not None:
            known[current] = value
            continue
        producer = graph.producer(current)
        if producer is None:
            raise InternalError(f"static tensor '{current}' has no producer")
        if producer.index not in indices:
            indices.add(producer.index)
            pending.extend(producer.inputs)
    nodes = [graph.model.proto.graph.node[index] for index in sorted(indices)]
    sub = onnx.helper.make_graph(
        nodes,
        "static",
        [],
        [onnx.helper.make_tensor_value_info(name, info.elem_type, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in known.items()],
    )
    model = onnx.helper.make_model(sub, opset_imports=list(graph.model.proto.opset_import))
    model.ir_version = min(graph.model.proto.ir_version, onnx.IR_VERSION)
    (result,) = ReferenceEvaluator(model).run(None, {})
    return np.asarray(result)
