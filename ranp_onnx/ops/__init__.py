"""Op rules, one module per op family; importing this package registers them all."""

from . import (
    activation,
    conv,
    einsum,
    elementwise,
    linear,
    normalization,
    padding,
    pooling,
    reshape,
    resize,
    shape,
    softmax,
    tensor,
)
from .base import (
    LayerGeometry,
    OpCost,
    OpRule,
    register,
    registered_op_types,
    registered_rules,
    rule_for,
)

__all__ = [
    "LayerGeometry",
    "OpCost",
    "OpRule",
    "activation",
    "conv",
    "einsum",
    "elementwise",
    "linear",
    "normalization",
    "padding",
    "pooling",
    "register",
    "registered_op_types",
    "registered_rules",
    "reshape",
    "resize",
    "rule_for",
    "shape",
    "softmax",
    "tensor",
]
