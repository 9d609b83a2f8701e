"""Ops that rearrange axes (Reshape, Flatten, Transpose, ...); they cost no FLOPs."""

from __future__ import annotations

from .base import OpRule, register


@register
class ReshapeRule(OpRule):
    """Reshape: a flatten into features, or a shape change that keeps the channel axis."""

    op_types = ("Reshape",)


@register
class FlattenRule(OpRule):
    """Flatten: with axis 1 each channel owns a block of prod(spatial) features."""

    op_types = ("Flatten",)


@register
class TransposeRule(OpRule):
    """Transpose: moves the channel axis."""

    op_types = ("Transpose",)


@register
class SqueezeRule(OpRule):
    """Squeeze: drops axes of size 1."""

    op_types = ("Squeeze",)


@register
class UnsqueezeRule(OpRule):
    """Unsqueeze: inserts axes of size 1."""

    op_types = ("Unsqueeze",)


@register
class ExpandRule(OpRule):
    """Expand: broadcasts to a shape."""

    op_types = ("Expand",)


@register
class TileRule(OpRule):
    """Tile: repeats along axes."""

    op_types = ("Tile",)


@register
class DepthToSpaceRule(OpRule):
    """DepthToSpace / SpaceToDepth: move channels into space and back."""

    op_types = ("DepthToSpace", "SpaceToDepth")
