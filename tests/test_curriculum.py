"""The curriculum: bucket moves, an exact promotion sequence, state round trips, and dynamic
sampling (in the sampler, in `replace_zero_variance`, and in a real training step)."""

from __future__ import annotations

import json
import math
import random

import anyio
import pytest
from rich.console import Console

from rlaif import config as config_module
from rlaif.config import CurriculumConfig
from rlaif.data.tasks import load_tasks
from rlaif.loop.pipeline import Pipeline, Schedule, replace_zero_variance
from rlaif.loop.run import Run
from rlaif.loop.stop import StopRequest
from rlaif.training.advantages import zero_std_groups
from rlaif.training.curriculum import (
    CurriculumSampler,
    bucket_of,
    label_prior,
    sample_success,
)
from rlaif.types import Judgement, RustResult, Sample, Scored, Task
from tests.conftest import REPO


def task(task_id: str, difficulty: str = "medium") -> Task:
    return Task(id=task_id, prompt=f"do {task_id}", tests="", difficulty=difficulty)


def scored(t: Task, reward: float, **rust) -> Scored:
    sample = Sample(t, 0, [], [], [], "", "fn x() {}", 0, True)
    return Scored(sample, RustResult(**rust), Judgement(), {}, {"rust": reward})


def outcome(rate: float) -> list[bool]:
    """Four samples of which rate * 4 succeeded (rate in quarters)."""
    hits = round(rate * 4)
    return [True] * hits + [False] * (4 - hits)


def test_buckets_and_label_priors_follow_the_thresholds():
    # low < 0.3 <= medium < 0.7 <= high, and a high pass rate is an easy task.
    assert [bucket_of(x, 0.3, 0.7) for x in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [
        "hard",
        "hard",
        "medium",
        "medium",
        "easy",
        "easy",
    ]
    # Each label starts in the middle of its band: (0.7 + 1) / 2, (0.3 + 0.7) / 2, 0.3 / 2.
    assert label_prior("easy", 0.3, 0.7) == pytest.approx(0.85)
    assert label_prior("medium", 0.3, 0.7) == pytest.approx(0.5)
    assert label_prior("hard", 0.3, 0.7) == pytest.approx(0.15)


def test_a_task_moves_between_buckets_with_its_pass_rate_ema():
    config = CurriculumConfig(task_ema=0.5)
    sampler = CurriculumSampler([task("t", "easy")], config, seed=0)
    seen = []
    for rate in (0.0, 0.0, 1.0, 1.0):
        (drawn,) = sampler.next(1)
        sampler.update([(drawn.id, outcome(rate))])
        seen.append((round(sampler.ema[0], 6), sampler.bucket(0)))
    # ema <- ema + 0.5 (rate - ema), from 0.85 (easy's prior):
    # 0.85 -> 0.425 (medium) -> 0.2125 (hard) -> 0.60625 (medium) -> 0.803125 (easy)
    assert seen == [
        (0.425, "medium"),
        (0.2125, "hard"),
        (0.60625, "medium"),
        (0.803125, "easy"),
    ]
    assert sampler.metrics()["curriculum_easy_tasks"] == 1


def test_scripted_pass_rates_give_an_exact_promotion_sequence():
    tasks = [task(n, d) for n, d in [("e1", "easy"), ("e2", "easy"), ("m1", "medium")]]
    tasks += [task(n, d) for n, d in [("m2", "medium"), ("h1", "hard"), ("h2", "hard")]]
    config = CurriculumConfig(
        shuffle=False,  # ties in file order, so the draws below are exact
        task_ema=0.0,  # buckets stay at their labels: only the stage moves
        promote_at=0.6,
        stage_ema=0.5,
        min_stage_steps=2,
        review_share=0.5,
    )
    sampler = CurriculumSampler(tasks, config, seed=0)
    # The success rate of every group drawn for the current stage, step by step. Review groups
    # always succeed: if they counted toward the stage, steps 5 and 6 below would differ.
    rates = [0.25, 0.75, 1.0, 1.0, 0.0, 0.75, 1.0, 1.0]
    # Stage success EMA s (weight 0.5; the first step of a stage sets it), steps k in the stage:
    # 1: s = 0.25, k = 1                   stay (k < 2)
    # 2: s = 0.25 + 0.5 (0.75 - 0.25) = 0.5  stay (0.5 < 0.6)
    # 3: s = 0.5 + 0.5 (1.0 - 0.5) = 0.75  promote to medium (k = 3 >= 2, 0.75 >= 0.6)
    # 4: s = 1.0, k = 1                    stay (one good step is not enough)
    # 5: s = 1.0 + 0.5 (0.0 - 1.0) = 0.5   stay
    # 6: s = 0.5 + 0.5 (0.75 - 0.5) = 0.625 promote to hard
    # 7, 8: s = 1.0                        stay: hard is the last bucket
    expected_stages = [0, 0, 0, 1, 1, 1, 2, 2]
    expected_promoted = [0, 0, 1, 0, 0, 1, 0, 0]
    expected_success = [0.25, 0.5, 0.75, 1.0, 0.5, 0.625, 1.0, 1.0]
    # Batches of 2. Stage 0: no review, both from easy. From stage 1 on, review_share 0.5 x 2
    # tasks = 1 review task a step, from the easier buckets; the least drawn task goes first
    # (ties in file order). Draw counts before step 7: e1 5, e2 4, m1 2, m2 1, so m2 is reviewed,
    # then m1 (tied with m2 at 2, earlier in the file).
    expected_batches = [
        ["e1", "e2"],
        ["e1", "e2"],
        ["e1", "e2"],
        ["m1", "e1"],
        ["m2", "e2"],
        ["m1", "e1"],
        ["h1", "m2"],
        ["h2", "m1"],
    ]
    stages, promoted, success, batches = [], [], [], []
    for rate in rates:
        batch = sampler.next(2)
        batches.append([t.id for t in batch])
        current = {"easy": 0, "medium": 1, "hard": 2}
        sampler.update(
            [
                (t.id, outcome(rate if current[t.difficulty] == sampler.stage else 1.0))
                for t in batch
            ]
        )
        row = sampler.metrics()
        stages.append(row["curriculum_stage"])
        promoted.append(row["curriculum_promoted"])
        success.append(row["curriculum_stage_success"])
    assert batches == expected_batches
    assert stages == expected_stages
    assert promoted == expected_promoted
    assert success == pytest.approx(expected_success)
    # Step 8's batch: one hard (current) and one medium (review) task, each group of 4 samples.
    assert row["curriculum_hard_share"] == 0.5 and row["curriculum_medium_share"] == 0.5
    assert row["curriculum_easy_share"] == 0.0 and math.isnan(row["curriculum_easy_success"])
    assert row["curriculum_hard_success"] == 1.0


def test_disabled_curriculum_visits_every_task_before_repeating_one():
    tasks = [task(f"t{i}", d) for i, d in enumerate(["hard", "easy", "medium"] * 3)]
    sampler = CurriculumSampler(tasks, CurriculumConfig(enabled=False), seed=3)
    first = [t.id for t in sampler.next(4) + sampler.next(5)]
    assert sorted(first) == sorted(t.id for t in tasks)  # 9 draws: each task once
    assert sampler.stage == 0


def test_an_empty_bucket_borrows_from_the_next_harder_one_first():
    tasks = [task("e", "easy"), task("m", "medium"), task("h1", "hard"), task("h2", "hard")]
    sampler = CurriculumSampler(tasks, CurriculumConfig(shuffle=False, task_ema=1.0), seed=0)
    # Stage 0 (easy). A failed group moves `e` to EMA 0 (weight 1): hard. The easy bucket is
    # empty, so stage 0 draws from medium first, then hard (the easier side would come last).
    assert [t.id for t in sampler.next(1)] == ["e"]
    sampler.update([("e", outcome(0.0))])
    assert sampler.bucket(0) == "hard"
    assert [t.id for t in sampler.next(3)] == ["m", "h1", "h2"]
    # m stays medium (EMA 0.5), h1 and h2 stay hard (EMA 0). Every task has been drawn once:
    # medium gives m, then hard gives e, h1, h2 (tied, file order); a step larger than the task
    # set then repeats the least drawn task (all tied at 2: e, first in the file) rather than
    # coming up short.
    sampler.update([("m", outcome(0.5)), ("h1", outcome(0.0)), ("h2", outcome(0.0))])
    assert [t.id for t in sampler.next(5)] == ["m", "e", "h1", "h2", "e"]
    # replacements never repeat a task within a step: none left here.
    assert sampler.replacements(2) == []


def drive(sampler: CurriculumSampler, steps: int, n: int = 3) -> list[list[str]]:
    """Draw `steps` batches, reporting outcomes that depend only on the task and the step."""
    batches = []
    for step in range(steps):
        batch = sampler.next(n)
        batches.append([t.id for t in batch])
        sampler.update([(t.id, outcome((int(t.id[1:]) + step) % 5 / 4)) for t in batch])
    return batches


def test_state_round_trips_through_json_and_gives_the_same_future_draws():
    rng = random.Random(7)
    tasks = [task(f"t{i}", rng.choice(["easy", "medium", "hard"])) for i in range(12)]
    config = CurriculumConfig(promote_at=0.3, min_stage_steps=1, review_share=0.3)
    original = CurriculumSampler(tasks, config, seed=11)
    drive(original, 4)
    saved = json.loads(json.dumps(original.state()))  # as checkpoints store it

    resumed = CurriculumSampler(tasks, config, seed=11)
    resumed.load_state(saved)
    assert resumed.state() == original.state()
    assert drive(resumed, 6) == drive(original, 6)
    assert resumed.state() == original.state()

    # Without the saved state the same seed draws differently: the state is what matters.
    fresh = CurriculumSampler(tasks, config, seed=11)
    drive(original, 1)  # keep `original` one step ahead, like `resumed` below
    drive(resumed, 1)
    assert drive(fresh, 6) != drive(resumed, 6)


def test_a_malformed_state_is_refused():
    sampler = CurriculumSampler([task("a")], CurriculumConfig(), seed=0)
    with pytest.raises(ValueError, match="version"):
        sampler.load_state({"version": 99})
    state = sampler.state()
    with pytest.raises(ValueError, match="malformed curriculum state"):
        sampler.load_state({**state, "stage": 7})


def is_zero_variance(rewards: list[float], eps: float) -> bool:
    """The whitening's own rule (`advantages.zero_std_groups`) for one group with one judge."""
    t = task("z")
    return zero_std_groups([[scored(t, r) for r in rewards]], eps)[0]


def test_zero_variance_decision():
    assert is_zero_variance([3.0, 3.0, 3.0], 1e-4)
    assert not is_zero_variance([3.0, 3.0, 4.0], 1e-4)
    # NaN (an abstaining judge) is left out: the known rewards 2, 2 are equal.
    assert is_zero_variance([2.0, math.nan, 2.0], 1e-4)
    assert is_zero_variance([math.nan, 5.0], 1e-4)  # one known reward compares with nothing
    # stdev of (0, 0.0001) is 0.0000707 <= 1e-4: within eps counts as equal.
    assert is_zero_variance([0.0, 0.0001], 1e-4)


def test_success_signal_is_configurable():
    t = task("a")
    # Built with the tests too: what `Scored.compiles` counts.
    built = dict(parsed=True, compiled=True, tests_built=True, tests_total=3)
    compiled = scored(t, 24.0, **built, tests_passed=1)
    passing = scored(t, 40.0, **built, tests_passed=3)
    broken = scored(t, 8.0, parsed=True)
    unknown = scored(t, math.nan, sandbox_error="rustc exited with 101")
    for success, expected in [
        ("compiles", [True, True, False, None]),
        ("tests", [False, True, False, None]),
        ("reward", [True, True, False, None]),  # threshold 23: 24 and 40 reach it, 8 does not
    ]:
        config = CurriculumConfig(success=success)
        got = [sample_success(s, config) for s in (compiled, passing, broken, unknown)]
        assert got == expected, success


# Dynamic sampling: scripted rewards per task (the judges' part is not under test here).
REWARDS = {
    "t0": [1.0, 1.0, 1.0, 1.0],  # all equal: teaches nothing
    "t1": [0.0, 1.0, 2.0, 3.0],
    "t2": [5.0, 5.0, 5.0, 5.0],  # all equal
    "t3": [1.0, 2.0, 1.0, 2.0],
    "t4": [3.0, 3.0, 3.0, 3.0],  # all equal
    "t5": [0.0, 0.0, 1.0, 1.0],
}


async def score(tasks: list[Task]) -> list[list[Scored]]:
    return [[scored(t, r) for r in REWARDS[t.id]] for t in tasks]


def run_dynamic(ids: list[str], budget: int, n: int = 2):
    tasks = [task(i) for i in ids]
    sampler = CurriculumSampler(tasks, CurriculumConfig(enabled=False, shuffle=False), seed=0)

    async def go():
        return await replace_zero_variance(
            await score(sampler.next(n)), sampler, score, 1e-4, budget
        )

    groups, dropped = anyio.run(go)
    sampler.update([(g[0].sample.task.id, [True for _ in g]) for g in groups + dropped])
    return [g[0].sample.task.id for g in groups], [g[0].sample.task.id for g in dropped]


def test_dynamic_sampling_leaves_no_zero_variance_group_while_replacements_remain():
    # Draws t0 (flat), t1. t0 is swapped for t2 (the least drawn task not in this step), which
    # is flat too and is swapped for t3: the batch holds no flat group, 2 of 5 budget spent.
    assert run_dynamic(list(REWARDS), budget=5) == (["t3", "t1"], ["t0", "t2"])
    # Two flat groups at once (t0, t2 when drawn 3): both swapped in one round, for t3 and t4;
    # t4 is flat, so one more round swaps it for t5.
    kept, dropped = run_dynamic(["t0", "t1", "t2", "t3", "t4", "t5"], budget=5, n=3)
    assert kept == ["t3", "t1", "t5"] and dropped == ["t0", "t2", "t4"]
    for group in kept:
        assert not is_zero_variance(REWARDS[group], 1e-4)


def test_dynamic_sampling_stops_at_its_budget_and_when_tasks_run_out():
    # Budget 1: t0 is swapped for t2, which is flat too, and nothing is left to spend.
    assert run_dynamic(list(REWARDS), budget=1) == (["t2", "t1"], ["t0"])
    # Only t0, t1, t2 exist: after t2 replaces t0 no fresh task is left this step.
    assert run_dynamic(["t0", "t1", "t2"], budget=5) == (["t2", "t1"], ["t0"])
    # Budget 0 is off.
    assert run_dynamic(list(REWARDS), budget=0) == (["t0", "t1"], [])


def test_a_training_step_with_dynamic_sampling_reports_the_curriculum(
    tiny_model_dir, toolchain, tmp_path
):
    budget = 3
    config = config_module.load(
        REPO / "config.yaml",
        [
            f"student.model={tiny_model_dir}",
            "student.max_new_tokens=6",  # a tiny random model's 6 bytes: mostly equal rewards
            "teacher.provider=none",
            f"curriculum.max_replacements={budget}",
        ],
    )
    tasks = load_tasks(REPO / config.data.train)
    run = Run(config, tasks, toolchain, None, tmp_path, Console(quiet=True))
    pipeline = Pipeline(
        run, Schedule(0, 0, 1), StopRequest(Console(quiet=True)), Console(quiet=True)
    )
    anyio.run(pipeline.steps, 1, None)
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    for bucket in ("easy", "medium", "hard"):
        assert f"curriculum/{bucket}_share" in row and f"curriculum/{bucket}_tasks" in row
    assert row["curriculum/stage"] == 0  # one step cannot move on (min_stage_steps = 3)
    # The batch still has tasks_per_step groups; replacements stop at the budget, and while
    # budget remains (24 tasks: fresh ones too) no group of the batch is zero-variance.
    assert 0 <= row["curriculum/replaced"] <= budget
    if row["curriculum/replaced"] < budget:
        assert row["train/frac_zero_std"] == 0.0
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(samples) == config.trainer.tasks_per_step * config.trainer.samples_per_prompt
    state = run.sampler.state()
    assert (
        sum(state["draws"].values()) == config.trainer.tasks_per_step + row["curriculum/replaced"]
    )


def test_hard_below_must_be_below_easy_from():
    with pytest.raises(config_module.ConfigError, match="must be below curriculum.easy_from"):
        config_module.load(None, ["curriculum.hard_below=0.8"])
