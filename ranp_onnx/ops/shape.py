"""Ops that compute shapes, indices and constants; static on exporters' graphs, no FLOPs."""

from __future__ import annotations

from .base import OpRule, register


@register
class ShapeRule(OpRule):
    """Shape / Size: read a tensor's shape."""

    op_types = ("Shape", "Size")


@register
class ConstantRule(OpRule):
    """Constant / ConstantOfShape / Range: produce constants."""

    op_types = ("Constant", "ConstantOfShape", "Range")


@register
class GatherRule(OpRule):
    """Gather / GatherElements: index along an axis."""

    op_types = ("Gather", "GatherElements")


@register
class NonZeroRule(OpRule):
    """NonZero: indices of non-zero elements (data-dependent shape)."""

    op_types = ("NonZero",)
