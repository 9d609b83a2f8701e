"""Ops that pass, join or cut channels (Concat, Split, Slice, Pad, ...); no FLOPs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OpCost, OpRule, register

if TYPE_CHECKING:
    from ..analyse import GraphAnalysis, NodeInfo


@register
class ConcatRule(OpRule):
    """Concat: on the channel axis each input owns a slice of the output's channels."""

    op_types = ("Concat",)


@register
class SplitRule(OpRule):
    """Split: on the channel axis each output owns a slice of the input's channels."""

    op_types = ("Split",)


@register
class SliceRule(OpRule):
    """Slice: a strided window; on the channel axis it selects channels."""

    op_types = ("Slice",)


@register
class PadRule(OpRule):
    """Pad: spatial padding passes channels through; padding the channel axis mixes them."""

    op_types = ("Pad",)


@register
class IdentityRule(OpRule):
    """Identity: passes everything through."""

    op_types = ("Identity",)


@register
class CastRule(OpRule):
    """Cast / CastLike: change the element type, channels unchanged."""

    op_types = ("Cast", "CastLike")


@register
class DropoutRule(OpRule):
    """Dropout: an identity at inference; the reference counts its output memory."""

    op_types = ("Dropout",)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """No FLOPs; output memory in the reference convention."""
        return OpCost(paper_memory=True)
