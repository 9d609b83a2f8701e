"""The Regularizer object on a user's own module and loop."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from test_regularization_groups import TwoConvs

from ranp_onnx import Regularizer
from ranp_onnx.regularization.regularizer import trainable_tensors

INPUT = torch.randn(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))


def make(**settings: float) -> tuple[TwoConvs, Regularizer]:
    torch.manual_seed(0)
    net = TwoConvs()
    options = {"speedup": 2.0, "a": 0.05, "ceiling": 5.0, **settings}
    return net, Regularizer.for_module(net, INPUT, **options)


def test_norms_are_the_groups_l1_over_every_slice() -> None:
    net, regularizer = make()
    conv1, bn1 = net.conv1, net.bn1
    expected = (
        conv1.weight.abs().sum(dim=(1, 2, 3, 4))
        + conv1.bias.abs()
        + bn1.weight.abs()
        + bn1.bias.abs()
        + net.conv2.weight.abs().sum(dim=(0, 2, 3, 4))
    )
    np.testing.assert_allclose(regularizer.norms()[0], expected.detach().numpy(), rtol=1e-6)


def test_regularize_adds_each_groups_coefficient_times_its_weights() -> None:
    net, regularizer = make()
    first, second = regularizer.schedules
    first.coefficients[:] = [0.1, 0.2, 0.3, 0.4]
    second.coefficients[:] = np.arange(6) / 10
    regularizer._refresh(masks=False)
    for parameter in net.parameters():
        parameter.grad = torch.zeros_like(parameter)
    regularizer.regularize()
    lam1 = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(4, 1, 1, 1, 1)
    lam2 = (torch.arange(6) / 10).view(6, 1, 1, 1, 1)
    torch.testing.assert_close(net.conv1.weight.grad, lam1 * net.conv1.weight.detach())
    torch.testing.assert_close(net.bn1.weight.grad, lam1.view(4) * net.bn1.weight.detach())
    # conv2's filters get their own group's coefficient plus their input channel's.
    torch.testing.assert_close(
        net.conv2.weight.grad, (lam2 + lam1.view(1, 4, 1, 1, 1)) * net.conv2.weight.detach()
    )
    torch.testing.assert_close(net.fc.weight.grad, lam2.view(1, 6) * net.fc.weight.detach())
    torch.testing.assert_close(net.fc.bias.grad, torch.zeros(3))


def test_removed_groups_stay_exactly_zero_under_momentum() -> None:
    net, regularizer = make()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    regularizer.schedules[0]._remove(np.array([2]), regularizer.norms()[0], 1.0, 0, forced=True)
    regularizer._refresh(masks=True)
    assert float(net.conv1.weight[2].detach().abs().sum()) == 0.0
    for _ in range(3):
        loss = net(torch.randn(4, 1, 4, 4, 4)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        regularizer.regularize()
        optimizer.step()
        regularizer.update()
        for tensor in (net.conv1.weight[2], net.bn1.weight[2], net.conv2.weight[:, 2]):
            assert float(tensor.detach().abs().sum()) == 0.0
    assert float(net.conv1.weight[1].detach().abs().sum()) > 0


def test_a_users_own_loop_then_prune_shrinks_the_module_in_place() -> None:
    net, regularizer = make()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(32, 1, 4, 4, 4, generator=generator)
    labels = (inputs.flatten(1) @ torch.randn(64, 3, generator=generator)).argmax(dim=1)
    net.train()
    steps = 0
    while not regularizer.done and steps < 400:
        batch = slice(8 * (steps % 4), 8 * (steps % 4) + 8)
        loss = F.cross_entropy(net(inputs[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        regularizer.regularize()
        optimizer.step()
        regularizer.update()
        steps += 1
    assert regularizer.done and steps < 400
    due = list(regularizer.allocation.due)
    conv2_weight = net.conv2.weight
    result = regularizer.prune(net.eval(), INPUT)
    assert result.in_place and result.module is net
    assert net.conv1.out_channels == 4 - due[0] and net.conv2.out_channels == 6 - due[1]
    assert due[1] > 0 and net.conv2.weight is not conv2_weight  # a new, smaller parameter
    assert result.speedup >= 2.0
    assert result.record["removed"]["forced"] == 0
    assert result.record["removed"]["max_ratio_to_kept_mean"] < 0.01
    session = ort.InferenceSession(result.model.SerializeToString())
    (expected,) = session.run(None, {"input": INPUT.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(net(INPUT).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_continues_the_schedule() -> None:
    _, regularizer = make()
    for _ in range(3):
        regularizer.update()
    state = regularizer.state_dict()
    _, other = make()
    other.load_state_dict(state)
    assert other.iteration == 3
    for mine, theirs in zip(regularizer.schedules, other.schedules):
        np.testing.assert_array_equal(mine.coefficients, theirs.coefficients)
        np.testing.assert_array_equal(mine.rank_sum, theirs.rank_sum)
    assert set(trainable_tensors(TwoConvs())) == {name for name, _ in TwoConvs().named_parameters()}


def test_for_module_refuses_an_unreachable_target() -> None:
    from ranp_onnx.errors import PlanError

    with pytest.raises(PlanError, match="not reachable"):
        make(speedup=500.0)


def test_the_schedule_updates_every_update_interval_calls() -> None:
    _, regularizer = make(update_interval=3)
    for call in range(1, 7):
        regularizer.update()
        assert [s.updates for s in regularizer.schedules] == [call // 3] * 2
