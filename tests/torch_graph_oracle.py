"""The differential oracle of the torch evaluator: TorchGraph against onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ranp_onnx.ir import runtime
from ranp_onnx.scoring.evaluator import TorchGraph

#: Largest difference allowed, relative to the largest magnitude of the expected output.
TOLERANCE = 1e-4


def onnxruntime_outputs(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime on CPU."""
    session = runtime.make_session(model)
    return [np.asarray(out) for out in session.run(None, dict(feeds))]


def torch_outputs(graph: TorchGraph, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a TorchGraph on numpy feeds, without gradients."""
    with torch.no_grad():
        result = graph(**{name: torch.from_numpy(value) for name, value in feeds.items()})
    results = result if isinstance(result, tuple) else (result,)
    return [r.detach().numpy() for r in results]


def assert_close(
    actual: np.ndarray,
    expected: np.ndarray,
    tolerance: float = TOLERANCE,
    scale: float = 1e-3,
) -> None:
    """Equal shapes and dtypes; floats within ``tolerance`` of the output's scale.

    The scale is the largest magnitude of ``expected``, at least ``scale``.
    """
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if not np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_array_equal(actual, expected)
        return
    scale = max(float(np.abs(expected).max(initial=0.0)), scale)
    error = float(np.abs(actual.astype(np.float64) - expected).max(initial=0.0))
    assert error <= tolerance * scale, f"max error {error:.3g} at output scale {scale:.3g}"


def check_against_onnxruntime(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[int] | None = None,
    tolerance: float = TOLERANCE,
) -> TorchGraph:
    """Assert TorchGraph (eval mode) reproduces onnxruntime on ``feeds``; return the graph."""
    graph = TorchGraph(model)
    actual = torch_outputs(graph, feeds)
    expected = onnxruntime_outputs(model, feeds)
    assert len(actual) == len(expected)
    for position in outputs if outputs is not None else range(len(expected)):
        assert_close(actual[position], expected[position], tolerance)
    return graph


def single_node_model(
    node: onnx.NodeProto,
    inputs: Mapping[str, np.ndarray],
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A model of one node: ``inputs`` become graph inputs (typed by value), outputs inferred."""
    graph = helper.make_graph(
        [node],
        "single",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
            )
            for name, value in inputs.items()
        ],
        [
            helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)
            for name in node.output
            if name
        ],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.ClearField("output")
    model.graph.output.extend(inferred.graph.output)
    rank = len(next(iter(inputs.values())).shape)
    for output in model.graph.output:
        tensor_type = output.type.tensor_type
        if not tensor_type.HasField("shape"):  # an op without shape inference (Upsample-7)
            tensor_type.elem_type = tensor_type.elem_type or TensorProto.FLOAT
            for axis in range(rank):
                tensor_type.shape.dim.add().dim_param = f"d{axis}"
    onnx.checker.check_model(model)
    return model


def check_node(
    node: onnx.NodeProto,
    inputs: Mapping[str, np.ndarray],
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
    tolerance: float = TOLERANCE,
    outputs: Sequence[int] | None = None,
) -> None:
    """Build one node into a model and compare TorchGraph with onnxruntime."""
    model = single_node_model(node, inputs, initializers=initializers, opset=opset)
    check_against_onnxruntime(model, inputs, tolerance=tolerance, outputs=outputs)


def random(*shape: int, seed: int = 0) -> np.ndarray:
    """Standard-normal float32 data."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def constant_inputs(**values: object) -> dict[str, np.ndarray]:
    """Initializers from lists: ints become int64, floats float32."""
    out = {}
    for name, value in values.items():
        array = np.asarray(value)
        out[name] = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
    return out
