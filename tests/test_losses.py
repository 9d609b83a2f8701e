from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ranp_onnx.scoring.losses import (
    LOSS_NAMES,
    cross_entropy,
    foreground_dice_loss,
    label_free_objective,
    make_loss,
)


def logits_and_labels(
    *shape: int, classes: int = 4, ignored: int = 0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits [N, C, *shape[1:]] and labels [N, *shape[1:]] with some set to 255."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=generator)
    labels = torch.randint(0, classes, shape, generator=generator)
    if ignored:
        labels.view(-1)[torch.randperm(labels.numel(), generator=generator)[:ignored]] = 255
    return logits, labels


def reference_dice_ce(
    logits: torch.Tensor, labels: torch.Tensor, ignore: int = 255
) -> torch.Tensor:
    """The BraTS'18 reference loss, written out, ignored voxels dropped from the Dice sums."""
    loss = F.cross_entropy(logits, labels, ignore_index=ignore)
    probabilities = F.softmax(logits, dim=1)
    valid = labels != ignore
    for c in range(1, logits.shape[1]):
        o = probabilities[:, c][valid]
        t = (labels[valid] == c).float()
        loss = loss + 0.25 * (1.0 - (2 * (o * t).sum() + 0.1) / (o.sum() + t.sum() + 0.1))
    return loss


# --- cross-entropy ----------------------------------------------------------------------


def test_cross_entropy_per_voxel_with_ignore_index_matches_torch():
    logits, labels = logits_and_labels(2, 3, 3, 3, ignored=10)
    loss = make_loss("cross-entropy", classes=4, ignore_index=255)(logits, labels)
    expected = F.cross_entropy(logits, labels, ignore_index=255)
    torch.testing.assert_close(loss, expected)


def test_cross_entropy_per_sample_matches_torch():
    logits, labels = logits_and_labels(5, classes=7)
    loss = make_loss("cross-entropy", classes=7)(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))


def test_cross_entropy_by_hand():
    logits = torch.zeros(1, 2, 4)  # p = 1/2 everywhere
    labels = torch.tensor([[0, 1, 1, 255]])
    loss = make_loss("cross-entropy", classes=2, ignore_index=255)(logits, labels)
    assert loss.item() == pytest.approx(math.log(2))


def test_cross_entropy_of_probabilities_equals_that_of_logits():
    logits, labels = logits_and_labels(2, 5, 5, ignored=3)
    from_logits = make_loss("cross-entropy", classes=4, ignore_index=255)(logits, labels)
    from_probabilities = make_loss(
        "cross-entropy", classes=4, ignore_index=255, output_is_probability=True
    )(F.softmax(logits, dim=1), labels)
    torch.testing.assert_close(from_probabilities, from_logits)


def test_cross_entropy_of_a_fully_ignored_batch_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 2, 2), 255), ignore_index=255)
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


# --- dice-ce ----------------------------------------------------------------------------


@pytest.mark.parametrize("ignored", [0, 20])
def test_dice_ce_matches_a_written_out_reference(ignored: int):
    logits, labels = logits_and_labels(2, 4, 4, 4, classes=5, ignored=ignored)
    loss = make_loss("dice-ce", classes=5, ignore_index=255)(logits, labels)
    torch.testing.assert_close(loss, reference_dice_ce(logits, labels))


def test_dice_ce_by_hand():
    logits = torch.zeros(1, 2, 4)  # p = 1/2 everywhere
    labels = torch.tensor([[0, 1, 1, 255]])
    loss = make_loss("dice-ce", classes=2, ignore_index=255)(logits, labels)
    # Valid voxels: 3. |P| = 1.5, |G| = 2, |P∩G| = 1: Dice loss = 1 - 2.1 / 3.6.
    assert loss.item() == pytest.approx(math.log(2) + 0.25 * (1 - 2.1 / 3.6))


def test_dice_leaves_out_an_ignore_index_inside_the_class_range():
    probabilities = torch.full((1, 3, 4), 1 / 3)
    labels = torch.tensor([[0, 1, 2, 2]])
    dropped = foreground_dice_loss(probabilities, labels, ignore_index=2)
    kept = foreground_dice_loss(probabilities[..., :2], labels[..., :2])
    torch.testing.assert_close(dropped, kept)


def test_dice_ce_of_probabilities_equals_that_of_logits():
    logits, labels = logits_and_labels(1, 3, 3, 3, classes=3)
    from_logits = make_loss("dice-ce", classes=3)(logits, labels)
    loss = make_loss("dice-ce", classes=3, output_is_probability=True)
    torch.testing.assert_close(loss(F.softmax(logits, dim=1), labels), from_logits)


# --- mse --------------------------------------------------------------------------------


def test_mse_matches_torch_and_by_hand():
    output, targets = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    loss = make_loss("mse", classes=3)(output, targets)
    torch.testing.assert_close(loss, F.mse_loss(output, targets.float()))
    two = make_loss("mse", classes=2)(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))
    assert two.item() == pytest.approx(2.5)


# --- gradients and the label-free objective ---------------------------------------------


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("labelled", [True, False])
def test_gradients_reach_the_weights(name: str, labelled: bool):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(2, 4, 3, padding=1)
    output = conv(torch.randn(2, 2, 4, 4, 4))
    if not labelled:
        labels = None
    elif name == "mse":
        labels = torch.randn_like(output)
    else:
        labels = torch.randint(0, 4, (2, 4, 4, 4))
    loss = make_loss(name, classes=4, ignore_index=255)(output, labels)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0


def test_label_free_objective_is_cross_entropy_against_the_own_argmax():
    logits, _ = logits_and_labels(2, 3, 3, classes=5)
    loss = make_loss("dice-ce", classes=5)(logits, None)
    torch.testing.assert_close(loss, F.cross_entropy(logits, logits.argmax(dim=1)))
    torch.testing.assert_close(label_free_objective(logits), loss)


def test_label_free_objective_has_gradients_at_a_near_uniform_output():
    logits = (1e-4 * torch.randn(1, 10, 8)).requires_grad_()
    label_free_objective(logits).backward()
    assert logits.grad is not None
    # d/dz = (softmax - onehot(argmax)) / 8 voxels: about (1/10 - 1) / 8 at the argmax.
    assert logits.grad.min().item() == pytest.approx(-0.9 / 8, rel=1e-2)


def test_label_free_objective_of_probabilities():
    logits, _ = logits_and_labels(2, 6, classes=3)
    objective = label_free_objective(F.softmax(logits, dim=1), output_is_probability=True)
    torch.testing.assert_close(objective, label_free_objective(logits))


def test_label_free_objective_without_a_class_axis_and_for_mse():
    output = torch.tensor([[1.0, -3.0]])
    assert make_loss("mse", classes=2)(output, None).item() == pytest.approx(2.5)
    assert label_free_objective(torch.tensor([[2.0], [0.0]])).item() == pytest.approx(1.0)


# --- errors -----------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*cross-entropy, dice-ce, mse"):
        make_loss("hinge", classes=3)
    single = make_loss("cross-entropy", classes=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        single(torch.zeros(1, 1, 2), torch.zeros(1, 2, dtype=torch.long))
    assert single(torch.tensor([[[2.0, 0.0]]]), None).item() == pytest.approx(1.0)
    loss = make_loss("cross-entropy", classes=3)
    with pytest.raises(ValueError, match="4 channels on axis 1, expected 3"):
        loss(torch.zeros(1, 4, 2), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels have shape \(1, 3\), expected \(1, 2\)"):
        loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets have shape \(1, 3\).*\(1, 3, 2\)"):
        make_loss("mse", classes=3)(torch.zeros(1, 3, 2), torch.zeros(1, 3))
