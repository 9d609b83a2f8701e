"""What the loss and the optimizer of a training step allocate (training-memory model).

The loss is the scorer's: the cross-entropy of the logits against class labels
(``log_softmax`` then ``nll_loss``, :func:`ranp_onnx.losses.cross_entropy`), or the mean
squared error for an output without a class axis. The optimizers are torch's with their
default settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...ops.base import numel

#: Bytes per element of the autocast type (float16 and bfloat16 alike).
LOWER = 2
#: Scalars the cross-entropy keeps: ``nll_loss``'s total weight (float32) and the count of
#: labelled elements it is divided by (int64).
SCALARS = 4 + 8


@dataclass(frozen=True)
class LossMemory:
    """What the loss keeps for the backward pass and allocates on the way.

    Attributes:
        labels: Bytes of the labels (int64 class indices, or float targets for mse).
        keeps_input: True if the loss keeps its input (mse); the cross-entropy keeps the
            log-probabilities instead.
        saved: Bytes of each tensor the loss's ops keep.
        forward_scratch: Peak bytes its forward allocates and frees (a float32 copy of
            the logits under autocast on CUDA, the mask of counted labels).
        backward: In order, each gradient its backward allocates (bytes) and the saved
            tensors (positions in ``saved``) freed once that gradient exists; the previous
            gradient is freed then too. The last one is the gradient of the loss input.
    """

    labels: int
    keeps_input: bool
    saved: tuple[int, ...]
    forward_scratch: int
    backward: tuple[tuple[int, tuple[int, ...]], ...]


def loss_memory(shape: Sequence[int], itemsize: int, *, device: str, autocast: bool) -> LossMemory:
    """The loss's memory for a loss input of ``shape`` and ``itemsize`` bytes per element.

    Under autocast on CPU ``log_softmax`` runs in bfloat16 and ``nll_loss`` casts its input
    up to float32; on CUDA ``log_softmax`` itself runs in float32 on a float32 copy.
    """
    count = numel(tuple(shape))
    if len(shape) < 2 or shape[1] < 2:
        return LossMemory(count * 4, True, (), 0, ((count * itemsize, ()),))
    voxels = count // shape[1]
    if autocast and itemsize < 4 and device == "cpu":
        return LossMemory(
            labels=voxels * 8,
            keeps_input=False,
            saved=(count * LOWER, count * 4, SCALARS),
            forward_scratch=voxels,
            backward=((count * 4, (1,)), (count * LOWER, ()), (count * LOWER, (0,))),
        )
    if autocast and itemsize < 4:
        return LossMemory(
            labels=voxels * 8,
            keeps_input=False,
            saved=(count * 4, SCALARS),
            forward_scratch=max(voxels, count * 4),
            backward=((count * 4, ()), (count * 4, (0,)), (count * itemsize, ())),
        )
    return LossMemory(
        labels=voxels * 8,
        keeps_input=False,
        saved=(count * 4, SCALARS),
        forward_scratch=voxels,
        backward=((count * 4, ()), (count * 4, (0,))),
    )


def optimizer_state(optimizer: str | None, parameters: Sequence[int]) -> list[int]:
    """Bytes of state per parameter: momentum one copy, Adam two and a float32 step counter."""
    if optimizer == "momentum":
        return list(parameters)
    if optimizer in ("adam", "adamw"):
        return [2 * size + 4 for size in parameters]
    return []


def optimizer_scratch(optimizer: str | None, parameters: Sequence[int], device: str) -> int:
    """Peak temporaries of the optimizer's step: Adam's ``sqrt(v) / bias correction``.

    On CPU torch updates one parameter at a time (two temporaries of the largest); on CUDA
    its ``foreach`` kernels make one for every parameter at once. SGD, with or without
    momentum, updates in place.
    """
    if optimizer not in ("adam", "adamw"):
        return 0
    if device == "cpu":
        return 2 * max(parameters, default=0)
    return sum(parameters)
