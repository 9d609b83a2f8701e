"""Small models built in code for the tests: torch modules exported, or onnx.helper graphs."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17


def export_module(
    module: object,
    inputs: object,
    *,
    exporter: str = "torchscript",
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> onnx.ModelProto:
    """Export a torch module to an in-memory ModelProto.

    Args:
        module: A ``torch.nn.Module`` (exported in its current train/eval mode).
        inputs: One tensor or a tuple of tensors.
        exporter: "torchscript" (parameter names and BatchNormalization kept) or "dynamo".
        opset: Opset version (default 17 for torchscript, the exporter's own for dynamo).
        input_names: Names for the graph inputs.
        dynamic_axes: torchscript only: dynamic axes per input name.
    """
    import torch

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                module,
                args,
                buffer,
                dynamo=False,
                do_constant_folding=False,
                opset_version=opset or DEFAULT_OPSET,
                input_names=list(input_names) if input_names else None,
                dynamic_axes=dynamic_axes,
            )
        elif exporter == "dynamo":
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=list(input_names) if input_names else None,
            )
            assert program is not None
            program.save(buffer, external_data=False)
        else:
            raise ValueError(exporter)
    return onnx.load_from_string(buffer.getvalue())


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, Sequence[int | str | None]]],
    outputs: Sequence[tuple[str, Sequence[int | str | None] | None]],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    elem_type: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """Build a checked single-graph model from nodes, (name, shape) pairs and initializers.

    An output shape of None is filled in by (strict) ONNX shape inference, so a graph that
    does not infer fails here with the inference error. The IR version is 8.
    """
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(name, elem_type, list(shape)) for name, shape in inputs],
        [
            helper.make_tensor_value_info(
                name, elem_type, list(shape) if shape is not None else None
            )
            for name, shape in outputs
        ],
        [numpy_helper.from_array(value, name) for name, value in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if any(shape is None for _, shape in outputs):
        # The checker wants a shape on every graph output: take the inferred one.
        inferred = {
            value.name: value
            for value in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output
            if value.type.tensor_type.HasField("shape")
        }
        for output in model.graph.output:
            if not output.type.tensor_type.HasField("shape") and output.name in inferred:
                output.type.CopyFrom(inferred[output.name].type)
    onnx.checker.check_model(model)
    return model


def random_weights(seed: int, **shapes: Sequence[int]) -> dict[str, np.ndarray]:
    """Float32 standard-normal arrays keyed by name, scaled by 1/sqrt(fan_in)."""
    generator = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        out[name] = (generator.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return out
