"""The round trip between ONNX and torch: :func:`to_torch` and back with :func:`to_onnx`.

:func:`to_torch` turns any model the op registry can evaluate into a trainable
``torch.nn.Module`` (a :class:`~ranp_onnx.scoring.evaluator.TorchGraph`): weights are
``nn.Parameter``s, BatchNormalization running statistics are buffers that update in
training mode, ``state_dict`` keys are the ONNX initializer names, ``.to("cuda")`` moves it,
and ``torch.onnx.export`` of it reproduces the model's outputs. :func:`to_onnx` writes a
(trained) module back as the original graph, node for node, with every initializer
replaced by the module's current value.

This module imports torch; ``import ranp_onnx`` does not.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import UnsupportedModelError
from ..ir.graph import GraphAnalysis
from ..ir.load import LoadedModel
from ..scoring.evaluator import BatchNormMode, TorchGraph

__all__ = ["to_onnx", "to_torch"]


def to_torch(
    model: str | os.PathLike[str] | onnx.ModelProto | LoadedModel | GraphAnalysis,
    *,
    batchnorm: BatchNormMode = "auto",
) -> TorchGraph:
    """Return an ONNX model as a differentiable, trainable torch module.

    The module starts in eval mode (``train()`` switches BatchNormalization to batch
    statistics and turns Dropout on). Its parameters are the float initializers; running
    statistics and constants are buffers.

    Args:
        model: A path, ModelProto, loaded model or analysis. A ModelProto is copied.
        batchnorm: "auto" (follow ``train()`` / ``eval()``), "batch" or "running".
            Defaults to "auto".

    Returns:
        The module; ``state_dict()`` keys are the ONNX initializer names.

    Raises:
        UnsupportedModelError: A node has no torch evaluation; the message names it.
        ModelLoadError: The model cannot be read.
    """
    return TorchGraph(model, batchnorm=batchnorm)


def to_onnx(module: TorchGraph) -> onnx.ModelProto:
    """Write a module made by :func:`to_torch` back to ONNX with its current values.

    The result is the model the module was built from (same nodes, names, opsets, IR
    version and metadata) with every initializer replaced by the module's parameter or
    buffer of that name, cast back to the initializer's ONNX type. One exception keeps the
    result faithful: an initializer the torchscript exporter had shared through an
    ``Identity`` node (equal-valued parameters, such as fresh BatchNorm shifts) is a
    separate parameter in the module; if training made its value differ from its
    source's, the ``Identity`` gives way to an initializer of its own under the same name.

    Args:
        module: A :class:`~ranp_onnx.scoring.evaluator.TorchGraph`, on any device.

    Returns:
        A new ModelProto.

    Raises:
        UnsupportedModelError: A parameter's shape no longer matches its initializer
            (the module's structure was changed).
    """
    source = module.onnx_model
    out = _without_initializers(source)
    values = dict(module.named_initializers())
    stored = {tensor.name for tensor in source.graph.initializer}
    for tensor in source.graph.initializer:
        out.graph.initializer.append(_tensor_like(values[tensor.name], tensor))
    types = {tensor.name: tensor for tensor in source.graph.initializer}
    nodes = []
    for node in source.graph.node:
        output = node.output[0] if node.output else ""
        if output in module.aliases and output not in stored and node.input[0] in types:
            like = onnx.TensorProto()
            like.CopyFrom(types[node.input[0]])
            like.name = output
            types[output] = like
            copy = _tensor_like(values[output], like)
            if not _same(copy, _tensor_like(values[node.input[0]], types[node.input[0]])):
                out.graph.initializer.append(copy)
                continue
        nodes.append(node)
    if len(nodes) != len(source.graph.node):
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    return out


def _without_initializers(source: onnx.ModelProto) -> onnx.ModelProto:
    """Copy a model without the initializers' data (they are written afresh)."""
    graph = onnx.GraphProto()
    _copy_fields(source.graph, graph, skip="initializer")
    model = onnx.ModelProto()
    _copy_fields(source, model, skip="graph")
    model.graph.CopyFrom(graph)
    return model


def _copy_fields(
    source: onnx.ModelProto | onnx.GraphProto,
    target: onnx.ModelProto | onnx.GraphProto,
    *,
    skip: str,
) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name == skip:
            continue
        field = getattr(target, descriptor.name)
        if hasattr(field, "extend"):
            field.extend(value)
        elif descriptor.message_type is not None:
            field.CopyFrom(value)
        else:
            setattr(target, descriptor.name, value)


def _tensor_like(value: torch.Tensor, like: onnx.TensorProto) -> onnx.TensorProto:
    """The module's tensor as an initializer of ``like``'s name, type and shape."""
    host = value.detach().cpu()
    if host.dtype == torch.bfloat16:
        host = host.float()
    dtype = onnx.helper.tensor_dtype_to_np_dtype(like.data_type)
    array = np.ascontiguousarray(host.numpy().astype(dtype, copy=False))
    if tuple(array.shape) != tuple(like.dims):
        raise UnsupportedModelError(
            f"initializer '{like.name}' is now {list(array.shape)}, was {list(like.dims)}: "
            "to_onnx writes the original structure"
        )
    tensor = numpy_helper.from_array(array, like.name)
    if tensor.data_type != like.data_type:  # numpy has no exact type for it (e.g. bfloat16)
        tensor = onnx.helper.make_tensor(
            like.name, like.data_type, list(like.dims), array.flatten().tolist()
        )
    tensor.doc_string = like.doc_string
    return tensor


def _same(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    return bool(np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b)))
