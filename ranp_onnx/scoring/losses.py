"""Scoring losses: what RANP differentiates to score neurons (shared reference, section 5).

``make_loss`` returns ``loss(output, labels) -> scalar tensor`` for the scorer:

- ``cross-entropy``: softmax cross-entropy of logits ``[N, C, ...]`` against integer labels
  ``[N, ...]`` (per voxel for segmentation, per sample for classification), averaged over
  the elements whose label is not ``ignore_index`` (ShapeNet: empty voxels labelled 255;
  UCF101: clip labels).
- ``dice-ce``: the BraTS'18 reference loss: cross-entropy + 0.25 x the sum over the
  foreground classes 1..C-1 of the soft Dice loss
  ``1 - (2 |P∩G| + eps) / (|P| + |G| + eps)``, P the softmax probabilities, G the one-hot
  labels, sums over the whole batch, eps = 0.1 as in the reference's ``criterions.py``.
  Unlike the reference, voxels labelled ``ignore_index`` are left out of the Dice sums too.
- ``mse``: mean squared error against float targets shaped like the output.

**Without labels** (``labels=None``, random data) every loss falls back to
:func:`label_free_objective`: cross-entropy against the network's own detached argmax.
Its gradient w.r.t. the logits, ``softmax(z) - onehot(argmax z)``, is about ``1/C - 1`` at
the predicted class even for a near-uniform softmax, so every sample and voxel contributes
at initialization; entropy minimisation would give a near-zero gradient there, and a plain
sum of the outputs the same gradient for every class. It is for a quick look only: the
pseudo-labels are the untrained network's arbitrary decisions on Gaussian noise, so the
scores say which neurons carry those decisions, not which ones the task needs.

If the graph ends in Softmax the scorer should pass the Softmax's input (logits); with
``output_is_probability=True`` the output is taken as probabilities and the cross-entropy
is the NLL of ``log(max(p, 1e-12))``.

This module imports torch; ``import ranp_onnx`` does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: The loss names, for the CLI's ``--loss`` choice.
LOSS_NAMES = ("cross-entropy", "dice-ce", "mse")

#: Weight of the summed foreground soft-Dice losses in ``dice-ce`` (BraTS'18 reference).
DICE_WEIGHT = 0.25
#: Smoothing term of the soft Dice loss (0.1 in the reference).
DICE_EPSILON = 0.1
#: Probabilities are clamped to at least this before their log is taken.
PROBABILITY_FLOOR = 1e-12

#: ``loss(output, labels)``: labels None selects the label-free objective.
LossFunction = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def make_loss(
    name: str,
    *,
    classes: int,
    ignore_index: int | None = None,
    output_is_probability: bool = False,
) -> LossFunction:
    """Return the scoring loss called ``name``.

    Args:
        name: "cross-entropy", "dice-ce" or "mse".
        classes: C, the size of the output's axis 1 (classes, or channels for mse).
        ignore_index: A label value whose elements the loss leaves out. Defaults to None.
        output_is_probability: True if the output is softmax probabilities rather than
            logits. Defaults to False.

    Returns:
        ``loss(output, labels)``: a scalar tensor; ``labels=None`` gives the label-free
        objective.

    Raises:
        ValueError: An unknown name. The returned function raises ValueError for labels
            that do not fit the output, and for labels with fewer than 2 classes for a
            classification loss (its value would always be 0).
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSS_NAMES)}")
    return _Loss(name, classes, ignore_index, output_is_probability)


@dataclass(frozen=True)
class _Loss:
    name: str
    classes: int
    ignore_index: int | None
    output_is_probability: bool

    def __call__(self, output: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if output.dim() >= 2 and output.shape[1] != self.classes:
            raise ValueError(
                f"the output has {output.shape[1]} channels on axis 1, expected {self.classes}"
            )
        if labels is None:
            if self.name == "mse":
                return 0.5 * output.pow(2).mean()
            return label_free_objective(output, output_is_probability=self.output_is_probability)
        if self.name == "mse":
            return mean_squared_error(output, labels)
        if self.classes < 2:
            raise ValueError(f"{self.name} needs at least 2 classes, got {self.classes}")
        loss = cross_entropy(
            output,
            labels,
            ignore_index=self.ignore_index,
            output_is_probability=self.output_is_probability,
        )
        if self.name == "dice-ce":
            probabilities = output if self.output_is_probability else F.softmax(output, dim=1)
            dice = foreground_dice_loss(probabilities, labels, ignore_index=self.ignore_index)
            loss = loss + DICE_WEIGHT * dice
        return loss


def cross_entropy(
    output: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int | None = None,
    output_is_probability: bool = False,
) -> torch.Tensor:
    """Mean cross-entropy over the elements whose label is not ``ignore_index``.

    Args:
        output: Logits (or probabilities) ``[N, C, ...]``.
        labels: Class indices ``[N, ...]``.
        ignore_index: A label value left out of the mean. Defaults to None.
        output_is_probability: True if ``output`` is probabilities. Defaults to False.

    Returns:
        A scalar; 0 (with zero gradient) if every element is ignored.
    """
    _check_labels(output, labels)
    labels = labels.long()
    if output_is_probability:
        log_probabilities = torch.log(output.clamp_min(PROBABILITY_FLOOR))
    else:
        log_probabilities = F.log_softmax(output, dim=1)
    ignore = -100 if ignore_index is None else ignore_index
    total = F.nll_loss(log_probabilities, labels, ignore_index=ignore, reduction="sum")
    counted = (labels != ignore).sum().clamp_min(1)
    return total / counted


def foreground_dice_loss(
    probabilities: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int | None = None,
    epsilon: float = DICE_EPSILON,
) -> torch.Tensor:
    """Sum over the classes 1..C-1 of the soft Dice loss, sums taken over the whole batch.

    Args:
        probabilities: Softmax probabilities ``[N, C, ...]``.
        labels: Class indices ``[N, ...]``.
        ignore_index: Elements with this label are left out. Defaults to None.
        epsilon: Smoothing added to numerator and denominator. Defaults to 0.1.

    Returns:
        A scalar: ``sum_c 1 - (2 sum(P_c G_c) + eps) / (sum(P_c) + sum(G_c) + eps)``.
    """
    _check_labels(probabilities, labels)
    if ignore_index is None:
        valid = torch.ones_like(labels, dtype=probabilities.dtype)
    else:
        valid = (labels != ignore_index).to(probabilities.dtype)
    loss = probabilities.new_zeros(())
    for c in range(1, probabilities.shape[1]):
        predicted = probabilities[:, c] * valid
        target = (labels == c).to(probabilities.dtype) * valid
        overlap = 2 * (predicted * target).sum() + epsilon
        loss = loss + 1 - overlap / (predicted.sum() + target.sum() + epsilon)
    return loss


def mean_squared_error(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of ``(output - targets)^2``; targets shaped like the output."""
    if tuple(targets.shape) != tuple(output.shape):
        raise ValueError(
            f"mse targets have shape {tuple(targets.shape)}, expected the output's "
            f"{tuple(output.shape)}"
        )
    return F.mse_loss(output, targets.to(output.dtype))


def label_free_objective(
    output: torch.Tensor, *, output_is_probability: bool = False
) -> torch.Tensor:
    """Cross-entropy against the output's own detached argmax over axis 1 (no labels).

    For a quick look only (random data): see the module docstring for why this objective
    and what its scores mean. An output without a class axis of at least 2 has no argmax
    to learn; it gets half the mean squared output (mse against zero) instead.
    """
    if output.dim() < 2 or output.shape[1] < 2:
        return 0.5 * output.pow(2).mean()
    pseudo_labels = output.detach().argmax(dim=1)
    return cross_entropy(output, pseudo_labels, output_is_probability=output_is_probability)


def _check_labels(output: torch.Tensor, labels: torch.Tensor) -> None:
    expected = (output.shape[0], *output.shape[2:])
    if output.dim() < 2 or tuple(labels.shape) != expected:
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {expected} for an output of "
            f"shape {tuple(output.shape)} [N, C, ...]"
        )
