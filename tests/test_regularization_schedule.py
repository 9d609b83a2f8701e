"""The coefficient schedule: Eq. 3, averaged ranks, removals (exact numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from ranp_onnx.regularization.schedule import (
    LayerSchedule,
    ScheduleSettings,
    coefficient_increment,
)


def test_increment_is_eq3_from_plus_a_to_minus_a() -> None:
    delta = coefficient_increment(np.arange(6), to_remove=2, remaining=6, a=1.0)
    np.testing.assert_allclose(delta, [1.0, 0.5, 0.0, -1 / 3, -2 / 3, -1.0])


@pytest.mark.parametrize(("groups", "ratio"), [(6, 1 / 3), (10, 0.5), (8, 0.75)])
def test_increment_before_any_removal_is_the_papers_formula(groups: int, ratio: float) -> None:
    a = 0.3
    due = ratio * groups
    r = np.arange(groups, dtype=float)
    paper = np.where(r <= due, -a / due * r + a, -a / (groups * (1 - ratio) - 1) * (r - due))
    np.testing.assert_allclose(coefficient_increment(r, round(due), groups, a), paper, atol=1e-12)


def test_nothing_to_remove_changes_nothing() -> None:
    np.testing.assert_array_equal(coefficient_increment(np.arange(3), 0, 3, 1.0), [0, 0, 0])


def test_schedule_grows_the_lowest_removes_at_the_ceiling_then_clears() -> None:
    settings = ScheduleSettings(a=0.5, ceiling=1.0, gone_ratio=0)
    schedule = LayerSchedule(4, due=2)
    norms = np.array([4.0, 1.0, 3.0, 2.0])
    assert schedule.update(norms, 1, settings).size == 0
    np.testing.assert_allclose(schedule.coefficients, [0.0, 0.5, 0.0, 0.25])
    np.testing.assert_array_equal(schedule.update(norms, 2, settings), [1])
    np.testing.assert_allclose(schedule.coefficients, [0.0, 1.0, 0.0, 0.5])
    assert schedule.to_remove == 1 and schedule.removed_at[1] == 2
    assert schedule.removed_norm[1] == 1.0
    # The kept groups' mean norm when group 1 went: positions 2 and 3 are groups 2 and 0.
    assert schedule.removed_ratio[1] == pytest.approx(1.0 / 3.5)
    zeroed = np.array([4.0, 0.0, 3.0, 2.0])
    np.testing.assert_array_equal(schedule.update(zeroed, 3, settings), [3])
    assert schedule.to_remove == 0
    np.testing.assert_allclose(schedule.coefficients, [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(schedule.removed, [False, True, False, True])
    assert not schedule.forced.any()


def test_a_group_far_below_the_kept_mean_is_gone_before_the_ceiling() -> None:
    settings = ScheduleSettings(a=0.01, ceiling=1.0, gone_ratio=1000)
    schedule = LayerSchedule(3, due=1)
    np.testing.assert_array_equal(schedule.update(np.array([0.001, 5.0, 7.0]), 1, settings), [0])
    assert schedule.coefficients[0] == pytest.approx(0.01)
    assert schedule.removed_ratio[0] == pytest.approx(0.001 / 6.0)
    none_yet = LayerSchedule(3, due=1)
    assert none_yet.update(np.array([0.01, 5.0, 7.0]), 1, settings).size == 0


def test_ranks_are_averaged_over_the_updates() -> None:
    settings = ScheduleSettings(a=0.1, ceiling=10.0, gone_ratio=0)
    schedule = LayerSchedule(3, due=1)
    schedule.update(np.array([1.0, 2.0, 3.0]), 1, settings)
    schedule.update(np.array([1.0, 2.0, 3.0]), 2, settings)
    # Group 1 is now the lowest, but group 0 still has the lower average rank (1/3 < 2/3).
    schedule.update(np.array([2.2, 2.0, 3.0]), 3, settings)
    np.testing.assert_allclose(schedule.rank_sum, [1.0, 2.0, 6.0])
    np.testing.assert_allclose(schedule.coefficients, [0.3, 0.0, 0.0])


def test_force_removes_the_lowest_average_ranks() -> None:
    schedule = LayerSchedule(4, due=2)
    norms = np.array([4.0, 1.0, 3.0, 2.0])
    schedule.update(norms, 1, ScheduleSettings(a=0.1, ceiling=1.0, gone_ratio=0))
    np.testing.assert_array_equal(np.sort(schedule.force(norms, 7)), [1, 3])
    np.testing.assert_array_equal(schedule.forced, [False, True, False, True])
    assert schedule.to_remove == 0 and (schedule.removed_at[[1, 3]] == 7).all()


def test_state_round_trip() -> None:
    schedule = LayerSchedule(4, due=2)
    settings = ScheduleSettings(a=0.5, ceiling=1.0, gone_ratio=0)
    for iteration in (1, 2):
        schedule.update(np.array([4.0, 1.0, 3.0, 2.0]), iteration, settings)
    copy = LayerSchedule(4, due=0)
    copy.load(schedule.state())
    for key, value in schedule.state().items():
        np.testing.assert_array_equal(getattr(copy, key), value)
    with pytest.raises(ValueError, match="another size"):
        LayerSchedule(5, due=1).load(schedule.state())
