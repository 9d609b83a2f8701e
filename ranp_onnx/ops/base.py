"""The op rule: everything ranp-onnx knows about one ONNX operator, and their registry.

Each op family lives in one module of this package and registers one :class:`OpRule`
subclass per operator (or per group of operators that behave alike). The counters, the
channel analysis, the torch evaluator and the rewriter ask the rule; nothing else in the
package dispatches on ``op_type``. An operator without a rule is reported as uncounted and
blocks pruning through it: it is never assumed to pass channels through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from ..errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch

    from ..analyse import GraphAnalysis, NodeInfo
    from ..torch_graph import EvalContext


@dataclass(frozen=True)
class LayerGeometry:
    """The shape facts of a layer-like node, for reports.

    Attributes:
        channels_in: Input channels (features for Gemm/MatMul).
        channels_out: Output channels.
        kernel: Spatial kernel size.
        strides: Spatial strides.
        groups: Channel groups.
    """

    channels_in: int | None = None
    channels_out: int | None = None
    kernel: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    groups: int | None = None


@dataclass(frozen=True)
class OpCost:
    """What one node costs, in both counting conventions.

    Attributes:
        macs: Exact multiply-accumulate count (0 for ops that only move data).
        flops: Standard FLOPs: every multiply, add, compare and transcendental counts 1,
            so a MAC counts 2.
        paper_flops: The RANP reference counter's FLOPs (one multiply-add counts 1; see
            the shared reference, section 3).
        paper_memory: True if the reference counter adds this node's output elements to
            its memory figure.
    """

    macs: int = 0
    flops: int = 0
    paper_flops: int = 0
    paper_memory: bool = False


class OpRule:
    """Base class of op rules; the defaults describe an op that costs nothing.

    Attributes:
        op_types: The operators this rule handles (default domain unless ``domain``).
        domain: The operator domain.
        parameter_inputs: Input positions holding learnable parameters when they are
            initializers (weights, biases, normalisation scales), counted as parameters.
    """

    op_types: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[str] = ""
    parameter_inputs: ClassVar[tuple[int, ...]] = ()

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry | None:
        """Return the layer's channels, kernel, strides and groups, or None."""
        return None

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Return the node's cost at the analysed shapes."""
        return OpCost()

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """Compute the node's outputs with differentiable torch operations.

        Args:
            node: The node.
            inputs: One tensor per ONNX input, None for an omitted optional input.
            context: Evaluation settings (opset, training mode, static values).

        Returns:
            One tensor per ONNX output (trailing optional outputs may be left out).
        """
        raise UnsupportedModelError(
            f"node '{node.name}': op '{node.op_type}' cannot be evaluated with torch"
        )


RuleT = TypeVar("RuleT", bound=type[OpRule])

_RULES: dict[tuple[str, str], OpRule] = {}


def register(rule_class: RuleT) -> RuleT:
    """Class decorator: register a rule for each of its ``op_types``; refuses duplicates."""
    rule = rule_class()
    for op_type in rule_class.op_types:
        key = (_canonical_domain(rule_class.domain), op_type)
        if key in _RULES:
            existing = type(_RULES[key]).__name__
            raise ValueError(f"two rules for op {op_type!r}: {existing} and {rule_class.__name__}")
        _RULES[key] = rule
    return rule_class


def rule_for(op_type: str, domain: str = "") -> OpRule | None:
    """Return the rule for an operator, or None if ranp-onnx has none."""
    return _RULES.get((_canonical_domain(domain), op_type))


def registered_op_types() -> list[str]:
    """Return every operator with a rule, sorted (for docs and tests)."""
    return sorted(op_type for _, op_type in _RULES)


def _canonical_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def numel(shape: tuple[int, ...]) -> int:
    """Return the number of elements of ``shape`` as a Python int."""
    return int(np.prod(shape, dtype=np.int64)) if shape else 1
