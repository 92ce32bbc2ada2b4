"""Statistics: pass@k by hand, per-task values from eval records, the paired bootstrap."""

from __future__ import annotations

import math

import pytest

from rlaif.evaluation.stats import paired_bootstrap, pass_at_k, task_values


def test_pass_at_k_by_hand():
    # n = 5 samples, c = 2 correct.
    # pass@1 = 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4 (the plain success rate)
    # pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    # pass@4 = 1 - C(3,4)/C(5,4): fewer than 4 failures exist, so every 4-subset passes: 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 4) == 1.0
    assert pass_at_k(5, 0, 3) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_pass_at_k_more_hand_values():
    # n = 10, c = 3, k = 5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 0.916666...
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    # n = 10, c = 1, k = 1: 1 - C(9,1)/C(10,1) = 1 - 9/10 = 0.1 (= c / n)
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    # n = 4, c = 1, k = 2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # every sample correct: 1 for any k
    assert pass_at_k(3, 3, 3) == 1.0


def record(task: str, reward: float, compiled: bool, passed: int, total: int = 2) -> dict:
    return {
        "task_id": task,
        "reward": reward,
        "parsed": True,
        "compiled": compiled,
        "tests_passed": passed,
        "tests_total": total,
    }


def test_task_values_are_sums_and_counts_per_task():
    records = [
        record("a", 10.0, True, 2),
        record("a", 4.0, True, 1),
        record("a", math.nan, False, 0),  # the sandbox failed: no reward, still a sample
        record("b", -3.0, False, 0, total=3),
        record("b", -1.0, False, 1, total=3),
    ]
    values = task_values(records, [1, 2])
    # a: rewards 10 + 4 over the 2 known; 2 of 3 compile; 3 of 6 tests; 1 of 3 passes all.
    assert values["a"]["mean_reward"] == (14.0, 2.0)
    assert values["a"]["compile_rate"] == (2.0, 3.0)
    assert values["a"]["test_pass_rate"] == (3.0, 6.0)
    # pass@1 = 1/3; pass@2 = 1 - C(2,2)/C(3,2) = 1 - 1/3 = 2/3
    assert values["a"]["pass@1"] == (pytest.approx(1 / 3), 1.0)
    assert values["a"]["pass@2"] == (pytest.approx(2 / 3), 1.0)
    assert values["b"]["test_pass_rate"] == (1.0, 6.0) and values["b"]["pass@2"] == (0.0, 1.0)


def shifted(tasks: int, shift: float) -> tuple[dict, dict]:
    """Per-task values for `tasks` tasks of 4 samples with uneven rewards, and the same plus
    `shift` on every sample's reward."""
    before, after = [], []
    for t in range(tasks):
        for i in range(4):
            reward = float((t * 7 + i * 3) % 11) - 3.0
            before.append(record(f"t{t}", reward, (t + i) % 3 == 0, i % 3))
            after.append(record(f"t{t}", reward + shift, (t + i) % 3 == 0, i % 3))
    return task_values(before, [1, 2]), task_values(after, [1, 2])


def test_identical_evaluations_differ_by_exactly_zero():
    before, after = shifted(12, 0.0)
    result = paired_bootstrap(before, after, resamples=500, seed=1)
    assert set(result) == {
        "mean_reward",
        "parse_rate",
        "compile_rate",
        "test_pass_rate",
        "pass@1",
        "pass@2",
    }
    for paired in result.values():
        assert paired.diff == 0.0 and paired.diff_ci == (0.0, 0.0)
        assert paired.before_ci == paired.after_ci
        # The mean's own interval has width (the tasks differ) and holds the mean.
        low, high = paired.before_ci
        assert low <= paired.before <= high
    low, high = result["mean_reward"].before_ci
    assert high - low > 0.5


def test_a_constant_shift_gives_exactly_that_difference():
    before, after = shifted(12, 2.5)
    result = paired_bootstrap(before, after, resamples=500, seed=2)
    reward = result["mean_reward"]
    # Pairing: every draw sees the same tasks on both sides, so every draw's difference is 2.5
    # while each side's own mean varies by several points from draw to draw.
    assert reward.diff == pytest.approx(2.5)
    assert reward.diff_ci == (pytest.approx(2.5), pytest.approx(2.5))
    assert reward.after == pytest.approx(reward.before + 2.5)
    assert reward.after_ci[0] == pytest.approx(reward.before_ci[0] + 2.5)
    assert result["compile_rate"].diff_ci == (0.0, 0.0)


def test_an_improvement_on_some_tasks_gives_an_interval_above_zero_but_not_a_point():
    before = {f"t{i}": {"compile_rate": (1.0, 4.0)} for i in range(20)}
    # Half the tasks go from 1 to 3 compiling samples of 4, the other half stay.
    after = {f"t{i}": {"compile_rate": (3.0 if i % 2 else 1.0, 4.0)} for i in range(20)}
    paired = paired_bootstrap(before, after, resamples=2000, seed=0)["compile_rate"]
    assert paired.before == 0.25 and paired.after == pytest.approx(0.5)
    low, high = paired.diff_ci
    # Each task's difference is 0 or 0.5; the mean over 20 draws lies in (0, 0.5) almost surely.
    assert 0.0 < low < 0.25 < high < 0.5


def test_a_seed_reproduces_the_intervals_and_another_seed_moves_them():
    before, after = shifted(10, 0.0)
    _, noisy = shifted(10, 0.0)
    noisy = {
        t: {**v, "mean_reward": (v["mean_reward"][0] + (i % 3), 4.0)}
        for i, (t, v) in enumerate(noisy.items())
    }
    first = paired_bootstrap(before, noisy, resamples=300, seed=7)
    assert paired_bootstrap(before, noisy, resamples=300, seed=7) == first
    assert paired_bootstrap(before, noisy, resamples=300, seed=8) != first


def test_different_task_lists_are_refused():
    before, after = shifted(3, 0.0)
    del after["t0"]
    with pytest.raises(ValueError, match="different tasks"):
        paired_bootstrap(before, after)
