"""Statistics for comparing two evaluations: per-task values, pass@k, a paired bootstrap.

An evaluation samples n completions for each of T held-out tasks. The unit that varies from one
benchmark to another is the task, not the sample (the n samples of one task are correlated), so
the confidence intervals here resample tasks: draw T task indices with replacement, recompute
every metric on that draw, repeat, and read the 2.5th and 97.5th percentiles (a percentile
bootstrap; Efron & Tibshirani 1993, ch. 13). Before and after share each draw (a *paired*
bootstrap): both models were evaluated on the same tasks with the same seed, so the difference
is measured on matched tasks and the task-to-task spread, which both share, cancels out of it.

Every metric is a ratio of per-task sums, sum(num) / sum(den) over the drawn tasks, so that on
the full task list it equals what `rlaif eval` reports: rates over samples (den = samples of the
task), the test pass rate over tests (den = tests the task's samples ran), and pass@k as a mean
over tasks (den = 1). Not covered: intervals that account for the sampling noise within a task
(more samples per task shrink it, the bootstrap over tasks does not see it), and multiple-testing
corrections across the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import comb

import numpy as np

RATES = ("mean_reward", "parse_rate", "compile_rate", "test_pass_rate")
PerTask = dict[str, dict[str, tuple[float, float]]]  # task id -> metric -> (num, den)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k).

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", eq. 1: the chance
    that at least one of k samples drawn without replacement from the n passes.
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0  # every k-subset holds a passing sample
    return 1.0 - comb(n - c, k) / comb(n, k)


def task_values(records: Iterable[Mapping], ks: Iterable[int]) -> PerTask:
    """Per task, (numerator, denominator) of every metric, from per-sample eval records.

    A record needs task_id, reward, parsed, compiled, tests_passed and tests_total (the lines
    `rlaif eval --samples-output` writes). A NaN or null reward (every judge abstained, so the
    reward is unknown) is left out of its task's mean reward, as the training metrics leave it
    out; a sample without a verdict (`sandbox_error`) is left out of every rate and of pass@k,
    and a task with fewer than k judged samples has no pass@k (den 0), as `evaluate.summarize`
    does.
    """
    by_task: dict[str, list[Mapping]] = {}
    for record in records:
        by_task.setdefault(str(record["task_id"]), []).append(record)
    ks = list(ks)
    values: PerTask = {}
    for task, samples in by_task.items():
        rewards = [float(r["reward"]) for r in samples if not _isnan(r["reward"])]
        judged = [r for r in samples if r.get("sandbox_error") is None]
        n = len(judged)
        passed = sum(_all_passed(r) for r in judged)
        row = {
            "mean_reward": (sum(rewards), float(len(rewards))),
            "parse_rate": (float(sum(bool(r["parsed"]) for r in judged)), float(n)),
            "compile_rate": (float(sum(_compiles(r) for r in judged)), float(n)),
            "test_pass_rate": (
                float(sum(r["tests_passed"] for r in judged)),
                float(sum(r["tests_total"] for r in judged)),
            ),
        }
        for k in ks:
            row[f"pass@{k}"] = (pass_at_k(n, passed, k), 1.0) if n >= k else (0.0, 0.0)
        values[task] = row
    return values


def _compiles(record: Mapping) -> bool:
    """`types.Scored.compiles` as eval records store it; records written before that field
    existed count rustc's type check alone."""
    return bool(record.get("compiles", record["compiled"]))


def _all_passed(record: Mapping) -> bool:
    return record["tests_total"] > 0 and record["tests_passed"] == record["tests_total"]


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Paired:
    """One metric of a paired comparison: point estimates and percentile intervals."""

    metric: str
    before: float
    after: float
    diff: float  # after - before
    before_ci: tuple[float, float]
    after_ci: tuple[float, float]
    diff_ci: tuple[float, float]


def paired_bootstrap(
    before: PerTask,
    after: PerTask,
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    metrics: Iterable[str] | None = None,
) -> dict[str, Paired]:
    """Every metric both sides have, before vs after, with intervals from one shared set of
    task draws. Both sides must hold the same tasks (they were evaluated on the same file)."""
    if set(before) != set(after):
        only = sorted(set(before) ^ set(after))
        raise ValueError(f"before and after were evaluated on different tasks: {only[:5]}")
    if not before:
        raise ValueError("no tasks to compare")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples={resamples}, level={level}: need >= 1 and 0 < level < 1")
    tasks = sorted(before)
    first = before[tasks[0]]
    names = [
        m
        for m in (metrics or first)
        if all(m in side[t] for side in (before, after) for t in tasks)
    ]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(tasks), size=(resamples, len(tasks)))  # [R, T] task indices
    tail = (1 - level) / 2 * 100
    out = {}
    for name in names:
        b_num, b_den = _columns(before, tasks, name)  # [T] each
        a_num, a_den = _columns(after, tasks, name)
        b = _ratio(b_num[draws].sum(1), b_den[draws].sum(1))  # [R]
        a = _ratio(a_num[draws].sum(1), a_den[draws].sum(1))  # [R]
        b_point = _ratio(b_num.sum(), b_den.sum())
        a_point = _ratio(a_num.sum(), a_den.sum())
        out[name] = Paired(
            name,
            float(b_point),
            float(a_point),
            float(a_point - b_point),
            _interval(b, tail),
            _interval(a, tail),
            _interval(a - b, tail),
        )
    return out


def _columns(values: PerTask, tasks: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([values[t][name] for t in tasks], dtype=np.float64)  # [T, 2]
    return pairs[:, 0], pairs[:, 1]


def _ratio(num, den):
    # A draw whose denominator is 0 (only tasks without a known reward) has no value: NaN.
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def _interval(values: np.ndarray, tail: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return (math.nan, math.nan)
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return (float(low), float(high))
