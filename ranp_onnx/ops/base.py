"""The op rule: everything ranp-onnx knows about one ONNX operator, and their registry.

Each op family lives in one module of this package and registers one :class:`OpRule`
subclass per operator (or per group of operators that behave alike). The counters, the
channel analysis, the torch evaluator and the rewriter ask the rule; nothing else in the
package dispatches on ``op_type``. An operator without a rule is reported as uncounted and
blocks pruning through it: it is never assumed to pass channels through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

import numpy as np

from ..errors import InternalError, UnsupportedModelError
from ..ir.graph import numel as numel  # re-exported for the rule families

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext


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


#: How an op runs under autocast: "lower" (in float16 / bfloat16: convolutions and matrix
#: products), "float32" (its inputs are cast up: softmax and norms on CUDA, pooling on
#: CPU) or "promote" (in the widest type of its float inputs: concatenation, arithmetic).
#: An op not named runs in the type of its first input.
Autocast = Literal["lower", "float32", "promote"]
#: The autocast policies torch applies on both device types.
EVERYWHERE: Mapping[str, Autocast] = {"cpu": "lower", "cuda": "lower"}


@dataclass(frozen=True)
class TrainingContext:
    """What a rule is told when asked what its torch evaluation keeps for the backward pass.

    Attributes:
        device: "cpu" or "cuda": the backend (and so the scratch memory) torch picks.
        itemsizes: Bytes per element of the node's inputs and outputs as the step computes
            them (autocast lowers some), by tensor name.
        requires_grad: The tensors whose gradient the backward pass computes.
        training: True if the module is in training mode (Dropout drops).
    """

    device: str
    itemsizes: Mapping[str, int]
    requires_grad: frozenset[str]
    training: bool = True

    def nbytes(self, graph: GraphAnalysis, name: str) -> int:
        """Bytes of tensor ``name`` in the step (0 for an omitted input)."""
        if not name or name not in graph.tensors:
            return 0
        return graph.tensors[name].numel * self.itemsizes.get(name, graph.tensors[name].itemsize)

    def needs_grad(self, name: str) -> bool:
        """True if the backward pass computes the gradient of ``name``."""
        return bool(name) and name in self.requires_grad


@dataclass(frozen=True)
class AutogradMemory:
    """What one node's torch evaluation keeps for the backward pass, and what its passes allocate.

    Observed with ``torch.autograd.graph.saved_tensors_hooks`` for the torch functions the
    rule's ``evaluate`` calls (``tests/test_training_memory_ops.py`` checks every family).

    Attributes:
        saved_inputs: Input positions whose tensors autograd keeps (shared, not copied).
        saved_outputs: Output positions autograd keeps.
        saved_bytes: Tensors of its own autograd keeps: max-pool indices, dropout masks,
            a padded copy of the input, normalisation statistics.
        output_views: Output positions that are views of input 0 (no new memory).
        gradient_views: Input positions whose gradient is the gradient of output 0 itself,
            or a view of it (no new memory: Add, Concat, Reshape).
        forward_scratch: Peak bytes the forward allocates and frees, beyond its outputs.
        backward_scratch: Peak bytes the backward allocates and frees, beyond the input
            gradients.
    """

    saved_inputs: tuple[int, ...] = ()
    saved_outputs: tuple[int, ...] = ()
    saved_bytes: int = 0
    output_views: tuple[int, ...] = ()
    gradient_views: tuple[int, ...] = ()
    forward_scratch: int = 0
    backward_scratch: int = 0

    @classmethod
    def view(cls) -> AutogradMemory:
        """A view of input 0 (Reshape, Identity): no memory, the gradient a view too."""
        return cls(output_views=(0,), gradient_views=(0,))


class OpRule:
    """Base class of op rules; the defaults describe an op that costs nothing.

    Attributes:
        op_types: The operators this rule handles (default domain unless ``domain``).
        domain: The operator domain.
        parameter_inputs: Input positions holding learnable parameters when they are
            initializers (weights, biases, normalisation scales), counted as parameters.
        masked_inputs: (input position, axis) pairs where the op contracts over channels
            (Conv, Gemm, ...): the validation oracle zeroes removed channels there.
        buffer_inputs: Input positions whose float initializers the torch evaluator keeps
            as buffers, not trainable parameters (running statistics, resize scales).
        parameter_view: How a static output relates to input 0 when parameters are
            counted: "view" (the same elements rearranged or converted: Transpose, Reshape,
            Cast, ...; a parameter read through it is its input's) or "alias" (a named copy
            that stands for a parameter of its own: torch's exporter feeds de-duplicated
            equal-valued initializers to each layer through an Identity named after that
            layer's parameter). None for every other op.
        autocast: How the op runs under autocast, by device type ("cpu", "cuda"; see
            :data:`Autocast`). Defaults to no entry: in the type of its first input.
        is_convolution: True for Conv and ConvTranspose, the ops that make a model a
            convolutional network ranp-onnx prunes.
    """

    op_types: ClassVar[tuple[str, ...]] = ()
    domain: ClassVar[str] = ""
    parameter_inputs: ClassVar[tuple[int, ...]] = ()
    masked_inputs: ClassVar[tuple[tuple[int, int], ...]] = ()
    bias_input: ClassVar[int | None] = None
    initializer_roles: ClassVar[dict[int, str]] = {}
    reads_shape: ClassVar[bool] = False
    buffer_inputs: ClassVar[tuple[int, ...]] = ()
    parameter_view: ClassVar[Literal["view", "alias"] | None] = None
    autocast: ClassVar[Mapping[str, Autocast]] = {}
    is_convolution: ClassVar[bool] = False

    @property
    def weight_input(self) -> int | None:
        """The input position of the weight whose output channels are neurons, or None.

        From :attr:`initializer_roles` (the input whose role is "weight"): Conv,
        ConvTranspose, Gemm and MatMul have one.
        """
        return next(
            (slot for slot, role in self.initializer_roles.items() if role == "weight"), None
        )

    def parameter_slots(self, node: NodeInfo, graph: GraphAnalysis) -> tuple[int, ...]:
        """Return the input positions that hold this node's learnable parameters.

        Defaults to :attr:`parameter_inputs`; rules whose parameters depend on the graph
        around the node (a bias added after a MatMul) override it.
        """
        return self.parameter_inputs

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """Raise :class:`~ranp_onnx.errors.InputShapeError` if the input shapes do not fit.

        ONNX shape inference checks most ops; rules override this where it does not (the
        input channels of a convolution). The default checks nothing.
        """

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry | None:
        """Return the layer's channels, kernel, strides and groups, or None."""
        return None

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """Return the node's cost at the analysed shapes."""
        return OpCost()

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Declare how channels flow through the node (ties, layers, blocks).

        The default fixes every channel the node touches: an op without a channel rule is
        never assumed to pass channels through.
        """
        channels.block_node(node, f"op '{node.op_type}' has no channel rule")

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """Update attributes and shape constants after the node's channels were pruned.

        Static inputs with channel spaces are already sliced; the default changes nothing.
        """

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """What the node's torch evaluation keeps for the backward pass (training memory).

        The default for a layout op (``parameter_view == "view"``: Reshape, Flatten,
        Transpose, Squeeze, Unsqueeze) is a view of its input; for any other op it keeps
        nothing and allocates new outputs and input gradients (Neg, a padding).
        """
        return AutogradMemory.view() if self.parameter_view == "view" else AutogradMemory()

    def static_source(
        self, node: NodeInfo, graph: GraphAnalysis, axis: int
    ) -> tuple[str, int] | None:
        """Where output ``axis`` of a layout-only static node comes from, else None.

        For Identity, Cast, Squeeze and Unsqueeze: the input tensor and its axis. The
        channel analysis slices such a chain's source initializer instead of storing a
        sliced copy of the chain's output, so parameter names survive pruning.
        """
        return None

    def output_shapes(
        self, node: NodeInfo, shapes: Sequence[tuple[int, ...] | None]
    ) -> list[tuple[int, ...]] | None:
        """Output shapes for an op whose ONNX schema infers none, else None (the default).

        ONNX infers no shapes for some function ops (GroupNormalization); rules answer for
        them from the input shapes (None where unknown). The outputs get input 0's element
        type.
        """
        return None

    def follows_channels(self, node: NodeInfo, graph: GraphAnalysis, axis: int) -> bool:
        """Whether :meth:`regenerate` can give output ``axis`` of this static node its length.

        Asked of the producer of a static tensor that is computed from activation shapes
        and sliced with channels (``torch.zeros(x.size(0), k, ...)`` concatenated to a
        residual stream): such a tensor stays computed, so the pruned model still takes
        every input shape the original took. The default is False.
        """
        return False

    def regenerate(
        self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext, axis: int
    ) -> None:
        """Make output ``axis`` come out at its pruned length, ``context.new_size(output, axis)``.

        Called for every axis :meth:`follows_channels` accepted, whether or not it lost
        channels (the computation may read the shape of an activation that did).

        Raises:
            InternalError: The rule accepted an axis it cannot regenerate.
        """
        raise InternalError(f"node '{node.name}': op '{node.op_type}' regenerates nothing")

    def shape_value(self, node: NodeInfo, shape: tuple[int, ...]) -> np.ndarray | None:
        """For ops whose output depends only on their input's shape (Shape, Size): the output.

        The analysis folds such nodes into constants; every other op returns None.
        """
        return None

    def logits_input(self, node: NodeInfo, graph: GraphAnalysis) -> str | None:
        """If the node turns logits into probabilities, the logits tensor (for losses)."""
        return None

    def neuron_weights(self, node: NodeInfo, weight: np.ndarray) -> np.ndarray:
        """Return a layer's weight (or its gradient) as a [neurons, fan-in] matrix."""
        raise NotImplementedError(f"op '{node.op_type}' has no neurons")

    def evaluation_problem(self, node: NodeInfo, opset: int) -> str | None:
        """Return why :meth:`evaluate` cannot compute this node, or None if it can.

        Checked when a torch module is built, so that a model fails before it runs. The
        default says whether the rule implements :meth:`evaluate` at all; rules override it
        to refuse attribute values they do not support.
        """
        if type(self).evaluate is OpRule.evaluate:
            return f"op '{node.op_type}' cannot be evaluated with torch"
        return None

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


def registered_rules() -> list[tuple[str, str, OpRule]]:
    """Return (domain, op type, rule) for every registered operator, sorted (for docs)."""
    return [(domain, op_type, _RULES[(domain, op_type)]) for domain, op_type in sorted(_RULES)]


def _canonical_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
