"""Normalisation layers: batch, instance, group and layer normalisation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ..errors import DataError, InputShapeError
from .base import (
    Autocast,
    AutogradMemory,
    LayerGeometry,
    OpCost,
    OpRule,
    TrainingContext,
    numel,
    register,
)
from .coupling import pass_through, per_channel
from .kernels.evaluation import float_attribute, normalize_axis, optional, required

if TYPE_CHECKING:
    import torch

    from ..ir.graph import GraphAnalysis, NodeInfo
    from .channel_graph import ChannelGraph
    from .contexts import EvalContext, RewriteContext

#: Standard FLOPs per element of a normalisation that computes its statistics at run time:
#: mean (1), variance (3), normalise (2), affine (2).
STATISTICS_FLOPS = 8
#: The reference counter's FLOPs per element of an affine normalisation layer.
PAPER_FLOPS = 4


class _Normalization(OpRule):
    initializer_roles: ClassVar[dict[int, str]] = {1: "scale", 2: "shift", 3: "mean", 4: "var"}
    parameter_inputs = (1, 2)
    standard_flops_per_element = STATISTICS_FLOPS
    #: True if torch's CPU backward holds an input-sized buffer beside the input gradient.
    input_sized_backward: ClassVar[bool] = True
    #: Float arrays of ``statistics_count`` values the forward keeps: mean and inverse
    #: deviation (instance norm adds its scale repeated per sample).
    statistics_arrays: ClassVar[int] = 2

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Channels pass through; the per-channel parameters are sliced with them."""
        pass_through(node, graph, channels)
        if node.outputs[0] in graph.tensors and len(graph.shape(node.outputs[0])) > 1:
            space = channels.space(node.outputs[0], 1)
            per_channel(node, graph, channels, tuple(range(1, len(node.inputs))), space)
            for extra in node.outputs[1:]:
                if extra and len(graph.shape(extra)) == 1:
                    channels.tie(channels.space(extra, 0), space)

    def geometry(self, node: NodeInfo, graph: GraphAnalysis) -> LayerGeometry:
        """Channels of the normalised tensor (axis 1)."""
        shape = graph.shape(node.inputs[0])
        channels = shape[1] if len(shape) > 1 else shape[0]
        return LayerGeometry(channels_in=channels, channels_out=channels)

    def cost(self, node: NodeInfo, graph: GraphAnalysis) -> OpCost:
        """A fixed number of FLOPs per output element."""
        elements = numel(graph.shape(node.outputs[0]))
        return OpCost(
            flops=self.flops_per_element(node) * elements,
            paper_flops=PAPER_FLOPS * elements,
            paper_memory=True,
        )

    def flops_per_element(self, node: NodeInfo) -> int:
        """Standard FLOPs per element."""
        return self.standard_flops_per_element

    def autograd_memory(
        self, node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
    ) -> AutogradMemory:
        """The input and the statistics (``statistics_arrays`` floats per normalised group).

        torch's CPU batch and instance norm backward (instance norm is a batch norm over
        the reshaped input) holds one more input-sized buffer beside the input gradient.
        """
        statistics = self.statistics_arrays * 4 * self.statistics_count(node, graph)
        scratch = context.nbytes(graph, node.inputs[0]) if self.input_sized_backward else 0
        return AutogradMemory(
            saved_inputs=(0, 1),
            saved_bytes=statistics,
            backward_scratch=scratch if context.device == "cpu" else 0,
        )

    def statistics_count(self, node: NodeInfo, graph: GraphAnalysis) -> int:
        """How many (mean, inverse deviation) pairs the forward keeps."""
        shape = graph.shape(node.inputs[0])
        return shape[1] if len(shape) > 1 else 1


@register
class BatchNormalizationRule(_Normalization):
    """BatchNormalization; inputs 3 and 4 (running statistics) are buffers, not parameters.

    In inference mode it is a per-channel scale and shift: 2 FLOPs per element. In training
    mode it computes batch statistics like the other normalisations.
    """

    op_types = ("BatchNormalization",)
    buffer_inputs = (3, 4)

    def flops_per_element(self, node: NodeInfo) -> int:
        """2 in inference mode, 8 in training mode."""
        return STATISTICS_FLOPS if node.attribute("training_mode", 0) else 2

    def evaluation_problem(self, node: NodeInfo, opset: int) -> str | None:
        """Per-activation normalisation (``spatial=0``, opset < 9) is not supported."""
        if opset < 9 and not node.attribute("spatial", 1):
            return "spatial=0 (per-activation statistics) is not supported"
        return None

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.batch_norm`` with running or batch statistics.

        With batch statistics the running statistics are updated as torch's BatchNorm
        updates them, with torch's momentum ``1 - momentum`` of ONNX; in place when they
        are buffers of the module, else on copies that become the optional outputs.
        """
        import torch.nn.functional as F

        x, scale, bias = required(inputs, 0), required(inputs, 1), required(inputs, 2)
        mean, var = required(inputs, 3), required(inputs, 4)
        epsilon = float_attribute(node, "epsilon", 1e-5)
        training = context.batchnorm_training
        if training is None:
            training = _graph_training(node, context.opset)
        if not training:
            return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)]
        in_place = context.update_running_stats and {node.inputs[3], node.inputs[4]} <= (
            context.buffers
        )
        if not in_place:
            mean, var = mean.detach().clone(), var.detach().clone()
        _check_batch_statistics(node, x)
        momentum = 1.0 - float_attribute(node, "momentum", 0.9)
        y = F.batch_norm(x, mean, var, scale, bias, True, momentum, epsilon)
        if context.opset >= 14 or len(node.outputs) <= 3:
            return [y, mean, var]
        axes = [0, *range(2, x.dim())]
        saved_var = x.detach().var(dim=axes, unbiased=False)
        return [y, mean, var, x.detach().mean(dim=axes), saved_var]


class OneValuePerChannelError(DataError):
    """Batch statistics over one value per channel: undefined (torch refuses them too).

    The scorer, which knows whether a larger batch would run, words its own advice.

    Attributes:
        node: The BatchNormalization node's name.
        shape: Its input's shape.
    """

    def __init__(self, node: str, shape: tuple[int, ...]) -> None:
        super().__init__(
            f"node '{node}' (BatchNormalization) sees one value per channel (input "
            f"{list(shape)}): batch statistics are undefined; score with `batch_size` 2 or "
            "more, a larger input, or `batchnorm` running"
        )
        self.node = node
        self.shape = shape


def _check_batch_statistics(node: NodeInfo, x: torch.Tensor) -> None:
    """Refuse batch statistics over one value per channel.

    Raises:
        OneValuePerChannelError: Batch and spatial size multiply to 1.
    """
    if x.dim() > 1 and x.numel() == x.shape[1]:
        raise OneValuePerChannelError(node.name, tuple(int(d) for d in x.shape))


@register
class InstanceNormalizationRule(_Normalization):
    """InstanceNormalization: statistics per sample and channel."""

    op_types = ("InstanceNormalization",)
    statistics_arrays = 3

    def statistics_count(self, node: NodeInfo, graph: GraphAnalysis) -> int:
        """One pair per sample and channel."""
        shape = graph.shape(node.inputs[0])
        return shape[0] * shape[1]

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.instance_norm`` (statistics of each sample and channel)."""
        import torch.nn.functional as F

        x, scale, bias = required(inputs, 0), required(inputs, 1), required(inputs, 2)
        epsilon = float_attribute(node, "epsilon", 1e-5)
        return [F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)]

    def check_shapes(self, node: NodeInfo, graph: GraphAnalysis) -> None:
        """Scale and bias hold one value per channel (ONNX shape inference does not check)."""
        channels = graph.shape(node.inputs[0])[1]
        for name in node.inputs[1:3]:
            if graph.shape(name) != (channels,):
                raise InputShapeError(
                    f"node '{node.name}' (InstanceNormalization) normalises {channels} "
                    f"channels but '{name}' has shape {graph.shape(name)}"
                )


@register
class GroupNormalizationRule(_Normalization):
    """GroupNormalization: statistics per sample and channel group; pruned in whole groups."""

    op_types = ("GroupNormalization",)
    autocast: ClassVar[Mapping[str, Autocast]] = {"cuda": "float32"}
    input_sized_backward = False

    def statistics_count(self, node: NodeInfo, graph: GraphAnalysis) -> int:
        """One pair per sample and group."""
        return graph.shape(node.inputs[0])[0] * int(node.attribute("num_groups"))

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.group_norm``; opset 18's per-group scale and bias are repeated per channel."""
        import torch.nn.functional as F

        x, scale, bias = required(inputs, 0), required(inputs, 1), required(inputs, 2)
        groups = int(node.attribute("num_groups"))
        epsilon = float_attribute(node, "epsilon", 1e-5)
        channels = x.shape[1]
        if scale.numel() != channels:
            scale = scale.repeat_interleave(channels // groups)
            bias = bias.repeat_interleave(channels // groups)
        return [F.group_norm(x, groups, scale, bias, epsilon)]

    def output_shapes(
        self, node: NodeInfo, shapes: Sequence[tuple[int, ...] | None]
    ) -> list[tuple[int, ...]] | None:
        """The input's shape (ONNX has no shape inference for this function op)."""
        return [shapes[0]] if shapes and shapes[0] is not None else None

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Channels are pruned in whole normalisation groups.

        Each group of C / num_groups channels is one unit; scale and bias are sliced per
        group (opset 18) or per channel (opset 21).
        """
        pass_through(node, graph, channels)
        y = node.outputs[0]
        if len(graph.shape(y)) < 2:
            return
        y_space = channels.space(y, 1)
        groups = int(node.attribute("num_groups"))
        group_space = channels.space(f"{node.name}#groups", 0, size=groups)
        channels.tie_blocks(y_space, group_space, y_space.size // groups)
        if y_space.size > groups:
            channels.note(
                y_space,
                f"'{node.name}' normalises {groups} groups of {y_space.size // groups} "
                "channels: they are pruned in whole groups",
            )
        for slot in (1, 2):
            size = graph.shape(node.inputs[slot])[0]
            target = group_space if size == groups and size != y_space.size else y_space
            channels.tie(channels.space(node.inputs[slot], 0), target)

    def rewrite(self, node: NodeInfo, graph: GraphAnalysis, context: RewriteContext) -> None:
        """``num_groups`` = the groups kept."""
        x = node.inputs[0]
        per_group = graph.shape(x)[1] // int(node.attribute("num_groups"))
        context.set_attribute(node, "num_groups", context.new_size(x) // per_group)


@register
class LayerNormalizationRule(_Normalization):
    """LayerNormalization: statistics over the trailing axes from ``axis``."""

    op_types = ("LayerNormalization",)
    autocast: ClassVar[Mapping[str, Autocast]] = {"cuda": "float32"}
    input_sized_backward = False

    def statistics_count(self, node: NodeInfo, graph: GraphAnalysis) -> int:
        """One pair per normalised row (the axes before ``axis``)."""
        shape = graph.shape(node.inputs[0])
        return numel(shape[: normalize_axis(int(node.attribute("axis", -1)), len(shape))])

    def evaluate(
        self, node: NodeInfo, inputs: Sequence[torch.Tensor | None], context: EvalContext
    ) -> Sequence[torch.Tensor]:
        """``F.layer_norm`` over the axes from ``axis``; Mean and InvStdDev on request."""
        import torch
        import torch.nn.functional as F

        x, scale, bias = required(inputs, 0), required(inputs, 1), optional(inputs, 2)
        axis = normalize_axis(int(node.attribute("axis", -1)), x.dim())
        epsilon = float_attribute(node, "epsilon", 1e-5)
        shape = tuple(x.shape[axis:])
        if scale.shape == shape and (bias is None or bias.shape == shape):
            y = F.layer_norm(x, shape, scale, bias, epsilon)
        else:
            y = F.layer_norm(x, shape, None, None, epsilon) * scale
            y = y if bias is None else y + bias
        if len(node.outputs) < 2:
            return [y]
        axes = list(range(axis, x.dim()))
        mean = x.mean(dim=axes, keepdim=True)
        variance = x.var(dim=axes, unbiased=False, keepdim=True)
        return [y, mean, torch.rsqrt(variance + epsilon)]

    def couple(self, node: NodeInfo, graph: GraphAnalysis, channels: ChannelGraph) -> None:
        """Normalising over the channel axis mixes channels; over trailing axes it does not.

        The scale and bias span the normalised (trailing) axes, so they are never sliced.
        """
        rank = len(graph.shape(node.inputs[0]))
        if int(node.attribute("axis", -1)) % rank <= 1:
            channels.block_node(node, "LayerNormalization over the channel axis")
            return
        pass_through(node, graph, channels)


def _graph_training(node: NodeInfo, opset: int) -> bool:
    """Return True if the graph asks this BatchNormalization for batch statistics."""
    if opset >= 14:
        return bool(node.attribute("training_mode", 0))
    return any(node.outputs[1:])
