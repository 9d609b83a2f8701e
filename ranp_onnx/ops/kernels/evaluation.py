"""Small helpers the op rules share when they evaluate a node with torch.

torch is imported inside the functions, never at module level: ``import ranp_onnx`` must
stay free of torch. Shapes, axes and other static operands arrive as tensors; the rules
read them as Python ints here (a traced module records them as constants).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ...errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch

    from ...ir.graph import NodeInfo


def ints(tensor: torch.Tensor | None) -> list[int]:
    """Return a 0-d or 1-d integer tensor as a list of Python ints ([] for None)."""
    if tensor is None:
        return []
    return [int(v) for v in tensor.reshape(-1).tolist()]


def floats(tensor: torch.Tensor | None) -> list[float]:
    """Return a tensor's values as a flat list of Python floats ([] for None)."""
    if tensor is None:
        return []
    return [float(v) for v in tensor.reshape(-1).tolist()]


def scalar(tensor: torch.Tensor) -> Any:
    """Return a one-element tensor as a Python number of its own kind."""
    return tensor.reshape(-1)[0].item()


def optional(inputs: Sequence[torch.Tensor | None], position: int) -> torch.Tensor | None:
    """Return input ``position``, or None if it is omitted or past the end."""
    return inputs[position] if position < len(inputs) else None


def required(inputs: Sequence[torch.Tensor | None], position: int) -> torch.Tensor:
    """Return input ``position``; raise if the graph omitted it."""
    tensor = optional(inputs, position)
    if tensor is None:
        raise UnsupportedModelError(f"a required input (position {position}) is missing")
    return tensor


def float_attribute(node: NodeInfo, key: str, default: float) -> float:
    """Return a float attribute as the shortest decimal that rounds to its float32 value.

    ONNX stores float attributes in float32; a torch module holds the double the user
    wrote (``eps=1e-3``). Statistics that torch accumulates in double (training-mode batch
    norm) differ when given ``0.0010000000474974513`` instead, and an ill-conditioned batch
    (2 samples of 1x1x1) turns that difference into visibly different gradients.
    """
    value = node.attribute(key)
    return default if value is None else float(str(np.float32(value)))


def normalize_axis(axis: int, rank: int) -> int:
    """Map a possibly negative axis into ``[0, rank)``."""
    return axis + rank if axis < 0 else axis


def axes_operand(
    node: NodeInfo,
    inputs: Sequence[torch.Tensor | None],
    position: int,
    opset_switch: int,
    opset: int,
) -> list[int] | None:
    """Read ``axes`` from an attribute (opset < ``opset_switch``) or an input; None if absent."""
    if opset < opset_switch:
        value = node.attribute("axes")
        return None if value is None else [int(a) for a in value]
    tensor = optional(inputs, position)
    return None if tensor is None else ints(tensor)


@functools.cache
def _dtype_table() -> dict[int, torch.dtype]:
    import torch

    tensor_proto = onnx.TensorProto
    return {
        tensor_proto.FLOAT: torch.float32,
        tensor_proto.DOUBLE: torch.float64,
        tensor_proto.FLOAT16: torch.float16,
        tensor_proto.BFLOAT16: torch.bfloat16,
        tensor_proto.INT8: torch.int8,
        tensor_proto.INT16: torch.int16,
        tensor_proto.INT32: torch.int32,
        tensor_proto.INT64: torch.int64,
        tensor_proto.UINT8: torch.uint8,
        tensor_proto.BOOL: torch.bool,
    }


def torch_dtype(elem_type: int, node: NodeInfo) -> torch.dtype:
    """Return the torch dtype of an ONNX element type.

    Raises:
        UnsupportedModelError: torch has no such type (strings, float8, unsigned > 8 bits).
    """
    dtype = _dtype_table().get(elem_type)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(elem_type)
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op_type}): element type {name} has no torch equivalent"
        )
    return dtype


def to_tensor(value: np.ndarray, device: torch.device, node: NodeInfo) -> torch.Tensor:
    """Copy a numpy array (a constant of the graph) to a tensor on ``device``."""
    import torch

    array = np.asarray(value)
    if array.dtype.kind in "US" or array.dtype == object:
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op_type}): string tensors cannot be evaluated with torch"
        )
    if array.dtype in (np.uint16, np.uint32, np.uint64):
        array = array.astype(np.int64)
    return torch.from_numpy(np.array(array, copy=True)).to(device)


def index_along(tensor: torch.Tensor, axis: int, index: np.ndarray) -> torch.Tensor:
    """Select positions ``index`` (a numpy int array) along ``axis``; identity is skipped."""
    import torch

    if index.shape == (tensor.shape[axis],) and np.array_equal(index, np.arange(index.size)):
        return tensor
    positions = torch.as_tensor(index.astype(np.int64), device=tensor.device)
    return torch.index_select(tensor, axis, positions)


def torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """Convert per-axis (begin, end) pads, first axis first, to ``F.pad``'s last-axis-first list."""
    pads: list[int] = []
    for begin, end in zip(reversed(list(begins)), reversed(list(ends))):
        pads.extend((int(begin), int(end)))
    return pads


def same_pads(
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    auto_pad: str,
) -> tuple[list[int], list[int]]:
    """Return (begins, ends) of ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID padding.

    The output size is ``ceil(size / stride)``; the odd pad goes at the end for SAME_UPPER
    and at the beginning for SAME_LOWER.
    """
    begins, ends = [], []
    for size, k, stride, dilation in zip(sizes, kernel, strides, dilations):
        if auto_pad == "VALID":
            begins.append(0)
            ends.append(0)
            continue
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + (k - 1) * dilation + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins, ends


def explicit_pads(node: NodeInfo, spatial: int) -> tuple[list[int], list[int]]:
    """Return (begins, ends) from the ``pads`` attribute (zeros if absent)."""
    pads = [int(p) for p in node.attribute("pads", [0] * (2 * spatial))]
    return pads[:spatial], pads[spatial:]


def window_pads(
    node: NodeInfo, sizes: Sequence[int], kernel: Sequence[int], dilations: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Return the (begins, ends) pads of a Conv or pooling node from pads or auto_pad."""
    auto_pad = str(node.attribute("auto_pad", "NOTSET"))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        strides = [int(s) for s in node.attribute("strides", [1] * len(sizes))]
        return same_pads(sizes, kernel, strides, dilations, auto_pad)
    return explicit_pads(node, len(sizes))
