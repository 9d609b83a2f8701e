"""Re-initialise a pruned model as the paper does before training it from scratch.

Weights of Conv, ConvTranspose, Gemm and MatMul: Glorot (Xavier) normal with gain 1, std
``sqrt(2 / (fan_in + fan_out))`` (torch's fan convention on the stored layout; the
formula is symmetric, so the layout does not matter); biases N(0, 1); normalisation
scales N(1, 0.02), shifts 0, running means 0, running variances 1 (shared reference,
section 1.1). Which input is which comes from each op rule's ``initializer_roles``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..ops import rule_for


def _glorot_normal(shape: tuple[int, ...], generator: np.random.Generator) -> np.ndarray:
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    fan_in = (shape[1] if len(shape) > 1 else shape[0]) * receptive
    fan_out = shape[0] * receptive
    return generator.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def initial_value(role: str, shape: tuple[int, ...], generator: np.random.Generator) -> np.ndarray:
    """A fresh value for an initializer of the given role."""
    if role == "weight":
        return _glorot_normal(shape, generator)
    if role == "bias":
        return generator.normal(0.0, 1.0, size=shape)
    if role == "scale":
        return generator.normal(1.0, 0.02, size=shape)
    if role == "var":
        return np.ones(shape)
    return np.zeros(shape)


def reinitialize(model: onnx.ModelProto, *, seed: int = 0) -> onnx.ModelProto:
    """Return a copy of ``model`` with every layer's initializers drawn afresh.

    Initializers are visited in node order, so the result depends only on the seed and the
    architecture. An initializer shared by several nodes is drawn once.
    """
    generator = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    tensors = {tensor.name: tensor for tensor in out.graph.initializer}
    done: set[str] = set()
    for node in out.graph.node:
        rule = rule_for(node.op_type, node.domain)
        if rule is None:
            continue
        for slot, role in sorted(rule.initializer_roles.items()):
            name = node.input[slot] if slot < len(node.input) else ""
            tensor = tensors.get(name)
            if tensor is None or name in done:
                continue
            done.add(name)
            old = numpy_helper.to_array(tensor)
            if not np.issubdtype(old.dtype, np.floating):
                continue
            fresh = initial_value(role, tuple(old.shape), generator).astype(old.dtype)
            tensor.CopyFrom(numpy_helper.from_array(fresh, name))
    return out
