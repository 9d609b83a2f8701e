"""Sliding-window pooling in torch with ONNX's padding, ceil mode and dilation rules.

torch's pooling functions take symmetric padding of at most half the kernel and no
dilation for averages; ONNX allows asymmetric pads, ``auto_pad`` and dilated averages. When
torch's own function computes the same thing it is used (so gradients match torch's
modules exactly); otherwise the input is padded explicitly and pooled without padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import UnsupportedModelError
from .evaluation import torch_pads, window_pads

if TYPE_CHECKING:
    import torch

    from ...ir.graph import NodeInfo


@dataclass(frozen=True)
class Window:
    """A pooling node's window along each spatial axis.

    Attributes:
        kernel: Window size.
        strides: Step between windows.
        dilations: Step between the elements of a window.
        begins: Padding before the input.
        ends: Padding after the input.
        ceil_mode: Round the output size up instead of down.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begins: tuple[int, ...]
    ends: tuple[int, ...]
    ceil_mode: bool

    @classmethod
    def of(cls, node: NodeInfo, x: torch.Tensor) -> Window:
        """Read a pooling node's attributes for input ``x``."""
        return cls.for_shape(node, tuple(int(d) for d in x.shape))

    @classmethod
    def for_shape(cls, node: NodeInfo, shape: tuple[int, ...]) -> Window:
        """Read a pooling node's attributes for an input of ``shape``."""
        spatial = len(shape) - 2
        if not 1 <= spatial <= 3:
            raise UnsupportedModelError(
                f"node '{node.name}' ({node.op_type}): {spatial} spatial dimensions; torch "
                "evaluation supports 1 to 3"
            )
        kernel = [int(k) for k in node.attribute("kernel_shape")]
        dilations = [int(d) for d in node.attribute("dilations", [1] * spatial)]
        begins, ends = window_pads(node, list(shape[2:]), kernel, dilations)
        return cls(
            kernel=tuple(kernel),
            strides=tuple(int(s) for s in node.attribute("strides", [1] * spatial)),
            dilations=tuple(dilations),
            begins=tuple(begins),
            ends=tuple(ends),
            ceil_mode=bool(node.attribute("ceil_mode", 0)),
        )

    def output_sizes(self, sizes: tuple[int, ...]) -> list[int]:
        """Output size per axis; in ceil mode a window starting in the end padding is dropped."""
        outputs = []
        for size, k, s, d, b, e in zip(
            sizes, self.kernel, self.strides, self.dilations, self.begins, self.ends
        ):
            room = size + b + e - ((k - 1) * d + 1)
            out = (-(-room // s) if self.ceil_mode else room // s) + 1
            if self.ceil_mode and (out - 1) * s >= size + b:
                out -= 1
            outputs.append(out)
        return outputs

    def torch_native(self) -> bool:
        """True if torch's pooling computes this window itself (symmetric, small padding)."""
        return self.begins == self.ends and all(
            2 * p <= k for p, k in zip(self.begins, self.kernel)
        )

    def explicit_padding(self, sizes: tuple[int, ...]) -> list[int]:
        """``F.pad`` list that makes an unpadded floor-mode pool give :meth:`output_sizes`."""
        ends = [
            (out - 1) * s + (k - 1) * d + 1 - size - b
            for out, size, k, s, d, b in zip(
                self.output_sizes(sizes),
                sizes,
                self.kernel,
                self.strides,
                self.dilations,
                self.begins,
            )
        ]
        return torch_pads(self.begins, ends)


def max_pool(x: torch.Tensor, window: Window, node: NodeInfo, indices: bool) -> list[torch.Tensor]:
    """MaxPool; with ``indices`` also ONNX's indices (flat over the whole tensor, NC first)."""
    import torch
    import torch.nn.functional as F

    spatial = x.dim() - 2
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
    if window.torch_native():
        arguments = (window.kernel, window.strides, window.begins, window.dilations)
        if not indices:
            return [pool(x, *arguments, window.ceil_mode)]
        y, plane_indices = pool(x, *arguments, window.ceil_mode, return_indices=True)
        planes = x.shape[0] * x.shape[1]
        plane = int(torch.tensor(x.shape[2:]).prod())
        offsets = torch.arange(planes, device=x.device, dtype=torch.int64) * plane
        return [y, plane_indices + offsets.reshape(x.shape[0], x.shape[1], *([1] * spatial))]
    if indices:
        raise UnsupportedModelError(
            f"node '{node.name}' (MaxPool): the Indices output with padding torch cannot "
            "express is not supported"
        )
    lowest = float("-inf") if x.is_floating_point() else int(torch.iinfo(x.dtype).min)
    padded = F.pad(x, window.explicit_padding(tuple(x.shape[2:])), value=lowest)
    return [pool(padded, window.kernel, window.strides, 0, window.dilations)]


def average_pool(x: torch.Tensor, window: Window, count_include_pad: bool) -> torch.Tensor:
    """AveragePool; the divisor counts pads only with ``count_include_pad``, never overhang."""
    import torch
    import torch.nn.functional as F

    spatial = x.dim() - 2
    if window.torch_native() and all(d == 1 for d in window.dilations):
        pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
        return pool(
            x, window.kernel, window.strides, window.begins, window.ceil_mode, count_include_pad
        )
    sizes = tuple(x.shape[2:])
    padding = window.explicit_padding(sizes)
    sums = sum_pool(F.pad(x, padding), window)
    ones = torch.ones((1, 1, *sizes), dtype=x.dtype, device=x.device)
    if count_include_pad:
        explicit = torch_pads(window.begins, window.ends)
        ones = F.pad(ones, explicit, value=1.0)
        padding = [p - q for p, q in zip(padding, explicit)]
    counts = sum_pool(F.pad(ones, padding), window)
    return sums / counts


def lp_pool(x: torch.Tensor, window: Window, p: float) -> torch.Tensor:
    """LpPool: ``(sum |x|^p) ** (1/p)`` over each window, pads counting as zeros."""
    import torch.nn.functional as F

    powered = F.pad(x.abs().pow(p), window.explicit_padding(tuple(x.shape[2:])))
    return sum_pool(powered, window).pow(1.0 / p)


def sum_pool(x: torch.Tensor, window: Window) -> torch.Tensor:
    """Sum over each (dilated) window of an already padded input, as a ones-kernel conv."""
    import torch
    import torch.nn.functional as F

    spatial = x.dim() - 2
    batch, channels = x.shape[0], x.shape[1]
    planes = x.reshape(batch * channels, 1, *x.shape[2:])
    kernel = torch.ones((1, 1, *window.kernel), dtype=x.dtype, device=x.device)
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    summed = conv(planes, kernel, None, window.strides, 0, window.dilations)
    return summed.reshape(batch, channels, *summed.shape[2:])
