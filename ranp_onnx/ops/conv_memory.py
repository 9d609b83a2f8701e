"""What torch's convolution backends keep for the backward pass and allocate on the way.

A convolution saves its input and weight (the input is a padded copy where ONNX padding
needs ``F.pad`` first). Its scratch memory depends on the backend torch picks, which torch
itself is asked (``torch._C._select_conv_backend``, on tensors that hold no memory):

- ``Mkldnn`` (oneDNN, CPU float): tensors are reordered into a blocked layout whose
  channels are padded to the vector width (16 floats with AVX-512, else 8). The forward
  holds the blocked input (skipped for a thin input read by a spatial kernel), the blocked
  weight and the blocked output, then copies the output out; depthwise and transposed
  convolutions copy it once more. The backward holds the blocked output gradient, weight
  and input gradient, then the blocked input and weight gradient. Where the input is
  so thin along the first spatial axis that the kernel window of every output slice spans
  all of it (a 3x3x3 kernel on a volume one or two deep, as in the last stages of video
  networks; a 5x5x5 one on a volume up to 3 deep), the weight gradient is reduced over
  threads: each thread holds 4 weight-sized buffers and the im2col of one input slice
  (``prod(kernel) x C_in x H x W``), so this scales with ``torch.get_num_threads()``.
  Otherwise, and for 1x1x1 kernels, each further thread holds one weight-sized buffer.
  In bfloat16 (autocast) the weight gradient accumulates in a float32 buffer instead.
- ``Slow3d`` / ``SlowTranspose3d`` / ``SlowDilated3d`` (CPU, small batches): an im2col
  buffer of ``C_in / groups x prod(kernel)`` rows per output voxel, in the forward and
  again in the backward.
- CUDA (cuDNN): the workspace cuDNN asks for depends on the algorithm its heuristics pick
  at run time; it is not modelled (counted as 0).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .base import AutogradMemory, TrainingContext, numel

if TYPE_CHECKING:
    from ..ir.graph import GraphAnalysis, NodeInfo

_SLOW = frozenset(
    {"Slow2d", "Slow3d", "SlowDilated2d", "SlowDilated3d", "SlowTranspose2d", "SlowTranspose3d"}
)


@functools.cache
def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (``AVX512``, ``AVX2``, ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def cpu_is_verified() -> bool:
    """Whether this CPU runs the oneDNN kernels whose scratch this module was checked on.

    The scratch below was measured against torch's allocator on AVX-512 CPUs. With AVX2
    only (simulated with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``) oneDNN picks
    other kernels: a 3D-UNet step measured 11% above the prediction and a 5x5x5 kernel on
    a volume four deep 3.4x.
    """
    return "AVX512" in cpu_capability()


def _channel_block() -> int:
    """The channel block of oneDNN's layouts on this CPU: 16 floats with AVX-512, else 8."""
    return 16 if cpu_is_verified() else 8


def _padded(channels: int) -> int:
    block = _channel_block()
    return -(-channels // block) * block


def cpu_backend(
    node: NodeInfo, graph: GraphAnalysis, *, transposed: bool, itemsize: int = 4
) -> str:
    """The name of the backend torch picks for this convolution on CPU.

    ``itemsize`` 2 asks about bfloat16 (autocast on CPU), which oneDNN always computes.
    """
    import torch

    x_shape, w_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    spatial = len(x_shape) - 2
    strides = [int(s) for s in node.attribute("strides", [1] * spatial)]
    dilations = [int(d) for d in node.attribute("dilations", [1] * spatial)]
    pads = [int(p) for p in node.attribute("pads", [0] * 2 * spatial)][:spatial]
    extra = [int(p) for p in node.attribute("output_padding", [0] * spatial)]
    groups = int(node.attribute("group", 1))
    empty = torch.empty(1, dtype=torch.bfloat16 if itemsize == 2 else torch.float32)
    backend = torch._C._select_conv_backend(
        empty.expand(x_shape), empty.expand(w_shape), None, strides, pads, dilations,
        transposed, extra if transposed else [0] * spatial, groups, None,
    )  # fmt: skip
    name = str(backend.name)
    members = getattr(torch._C, "_ConvBackend")  # noqa: B009 - absent from torch's stubs
    if name == "???" and backend.value == members.Mkldnn.value + 1:
        return "MkldnnTranspose"  # the one member torch's binding leaves unnamed
    return name


def convolution_memory(
    node: NodeInfo, graph: GraphAnalysis, context: TrainingContext, *, transposed: bool
) -> AutogradMemory:
    """Saved tensors and scratch of a Conv or ConvTranspose node in a training step."""
    padded_copy = _explicit_padding_bytes(node, graph, context)
    saved = (1,) if padded_copy else (0, 1)
    if context.device != "cpu":
        return AutogradMemory(saved_inputs=saved, saved_bytes=padded_copy)
    itemsize = context.itemsizes.get(node.outputs[0], 4)
    backend = cpu_backend(node, graph, transposed=transposed, itemsize=itemsize)
    if backend in _SLOW:
        forward, backward = _im2col_scratch(node, graph, context, transposed)
    elif backend == "Mkldnn":
        forward, backward = _onednn_scratch(node, graph, context)
    elif backend == "MkldnnTranspose":
        forward, backward = _onednn_transposed_scratch(node, graph, context)
    else:
        forward = backward = 0
    return AutogradMemory(
        saved_inputs=saved,
        saved_bytes=padded_copy,
        forward_scratch=max(forward, 0),
        backward_scratch=max(backward, 0),
    )


def _im2col_scratch(
    node: NodeInfo, graph: GraphAnalysis, context: TrainingContext, transposed: bool
) -> tuple[int, int]:
    """The slow backends: one im2col buffer in the forward and in the backward."""
    x = node.inputs[0]
    columns = _columns(node, graph, transposed) * context.itemsizes.get(node.outputs[0], 4)
    forward = 0 if _pointwise(node, graph) else columns
    backward = max(columns, context.nbytes(graph, x) if context.needs_grad(x) else 0)
    return forward, backward


def _onednn_scratch(
    node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
) -> tuple[int, int]:
    """The blocked copies oneDNN makes in each pass (channels padded to the block)."""
    x, weight, y = node.inputs[0], node.inputs[1], node.outputs[0]
    itemsize = context.itemsizes.get(y, 4)
    x_shape, y_shape = graph.shape(x), graph.shape(y)
    groups = int(node.attribute("group", 1))
    per_group = max(x_shape[1] // groups, 1)
    thin = per_group < _channel_block() and not _pointwise(node, graph)
    blocked_in = x_shape[0] * _padded(x_shape[1]) * numel(x_shape[2:]) * itemsize
    blocked_out = y_shape[0] * _padded(y_shape[1]) * numel(y_shape[2:]) * itemsize
    kernel = numel(graph.shape(weight)[2:])
    blocked_weight = (
        _padded(y_shape[1]) * (per_group if thin else _padded(per_group)) * kernel * itemsize
    )
    out_bytes = context.nbytes(graph, y)
    copies = 2 if groups > 1 and groups == x_shape[1] else 1
    source = 0 if thin else blocked_in
    forward = max(source + blocked_weight + blocked_out, blocked_out + copies * out_bytes)
    needs_input = context.needs_grad(x)
    gradients = (context.nbytes(graph, x) if needs_input else 0) + context.nbytes(graph, weight)
    data_pass = blocked_out + blocked_weight + blocked_in if needs_input else 0
    if itemsize < 4:  # bfloat16: the weight gradient accumulates in float32, no reduction
        reduction = blocked_out + 2 * context.nbytes(graph, weight)
    else:
        reduction = _thin_input_reduction(node, graph, itemsize)
    if thin:  # the weight gradient first, then one scratch buffer
        weight_pass = gradients + blocked_out + blocked_weight + reduction
    else:  # the blocked output gradient, input and weight gradient, then the gradient
        weight_pass = gradients - context.nbytes(graph, weight) + blocked_out + blocked_in
        weight_pass += blocked_weight + reduction
    return forward - out_bytes, max(data_pass, weight_pass) - gradients


def _onednn_transposed_scratch(
    node: NodeInfo, graph: GraphAnalysis, context: TrainingContext
) -> tuple[int, int]:
    """A transposed convolution in oneDNN: plain-layout copies of the input and output.

    The forward holds a copy of the input, the weight and the output, then copies the
    output out twice; the backward holds a copy of the output gradient and of the input.
    """
    x, weight, y = node.inputs[0], node.inputs[1], node.outputs[0]
    in_bytes, out_bytes = context.nbytes(graph, x), context.nbytes(graph, y)
    forward = max(2 * in_bytes + context.nbytes(graph, weight) + out_bytes, 3 * out_bytes)
    return forward - out_bytes, out_bytes + in_bytes


def _thin_input_reduction(node: NodeInfo, graph: GraphAnalysis, itemsize: int) -> int:
    """Per-thread weight-gradient buffers where every output slice sees the whole depth."""
    import torch

    x_shape, w_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    if len(x_shape) < 3:
        return 0
    if _pointwise(node, graph) or not _window_covers_depth(node, graph):
        # threads split the batch: one weight-sized buffer for each further thread
        return (torch.get_num_threads() - 1) * numel(w_shape) * itemsize
    weight = numel(w_shape) * itemsize
    im2col = numel(w_shape[2:]) * x_shape[1] * numel(x_shape[3:]) * itemsize
    return torch.get_num_threads() * (4 * weight + im2col)


def _window_covers_depth(node: NodeInfo, graph: GraphAnalysis) -> bool:
    """True if the kernel window of every output slice spans the input's whole depth.

    Measured with torch 2.13 on AVX-512: a 5x5x5 kernel padded by 2 reduces over threads
    on inputs 1 to 3 deep, not 4 deep (the first and last output slices no longer see it
    all); a 3x3x3 kernel padded by 1 on inputs 1 and 2 deep.
    """
    depth = graph.shape(node.inputs[0])[2]
    outputs = graph.shape(node.outputs[0])[2]
    spatial = len(graph.shape(node.inputs[0])) - 2
    kernel = graph.shape(node.inputs[1])[2]
    stride = int(node.attribute("strides", [1] * spatial)[0])
    dilation = int(node.attribute("dilations", [1] * spatial)[0])
    begin = int(node.attribute("pads", [0] * 2 * spatial)[0])
    first_end = (kernel - 1) * dilation - begin  # the last input slice the first output reads
    last_start = (outputs - 1) * stride - begin  # the first input slice the last output reads
    return first_end >= depth - 1 and last_start <= 0


def _pointwise(node: NodeInfo, graph: GraphAnalysis) -> bool:
    """A 1x1x1 kernel with stride 1 and no padding: no im2col, oneDNN's 1x1 path."""
    kernel = graph.shape(node.inputs[1])[2:]
    spatial = len(kernel)
    strides = [int(s) for s in node.attribute("strides", [1] * spatial)]
    pads = [int(p) for p in node.attribute("pads", [0] * 2 * spatial)]
    return all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(pads)


def _columns(node: NodeInfo, graph: GraphAnalysis, transposed: bool) -> int:
    """Elements of the im2col buffer: per batch, (C_in / groups) x prod(kernel) x voxels."""
    x_shape, w_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    groups = int(node.attribute("group", 1))
    kernel = numel(w_shape[2:])
    if transposed:
        return x_shape[0] * (w_shape[1] * groups // groups) * kernel * numel(x_shape[2:])
    y_shape = graph.shape(node.outputs[0])
    return x_shape[0] * (x_shape[1] // groups) * kernel * numel(y_shape[2:])


def _explicit_padding_bytes(node: NodeInfo, graph: GraphAnalysis, context: TrainingContext) -> int:
    """Bytes of the padded copy ``evaluate`` makes when the pads are not symmetric."""
    from .kernels.evaluation import window_pads

    x_shape = graph.shape(node.inputs[0])
    spatial = len(x_shape) - 2
    kernel = list(graph.shape(node.inputs[1])[2:])
    dilations = [int(d) for d in node.attribute("dilations", [1] * spatial)]
    begins, ends = window_pads(node, list(x_shape[2:]), kernel, dilations)
    if begins == ends or node.op_type != "Conv":
        return 0
    padded = [size + b + e for size, b, e in zip(x_shape[2:], begins, ends)]
    itemsize = context.itemsizes.get(node.inputs[0], graph.tensors[node.inputs[0]].itemsize)
    return numel((*x_shape[:2], *padded)) * itemsize
