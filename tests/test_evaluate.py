"""Evaluation: the unbiased pass@k estimator, and the eval command on a tiny model."""

from __future__ import annotations

import json

import anyio
import pytest
import torch

from rlaif.config import Config, StudentConfig
from rlaif.data import load_tasks
from rlaif.evaluate import compare, evaluate_policy, pass_at_k, summarize
from rlaif.rollout import ThreadPolicy
from rlaif.rust import RustJudge
from rlaif.scoring import Scorer
from rlaif.student import Generator, load_student
from rlaif.types import Judgement, RustResult, Sample, Scored, Task
from tests.conftest import REPO, run_cli


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


def scored(task: Task, index: int, passed: int, total: int = 2) -> Scored:
    sample = Sample(task, index, [], [], [], "", "fn f() {}", 0, True)
    rust = RustResult(parsed=True, compiled=passed > 0, tests_total=total, tests_passed=passed)
    reward = 10.0 * passed
    return Scored(sample, rust, Judgement(abstained="off"), {"tests": reward}, {"rust": reward})


def test_summary_by_difficulty_averages_pass_at_k_over_tasks():
    easy, hard = Task("e", "p", "t", "easy"), Task("h", "p", "t", "hard")
    # easy: 3 samples, one passes both tests, one passes 1 of 2, one none.
    # hard: 3 samples, none passes.
    rows = summarize(
        [scored(easy, 0, 2), scored(easy, 1, 1), scored(easy, 2, 0)]
        + [scored(hard, i, 0) for i in range(3)],
        3,
        [1, 2],
    )
    assert set(rows) == {"easy", "hard", "all"}  # no medium task: no medium row
    # easy: n = 3, c = 1 (only all-tests-passed counts): pass@1 = 1/3;
    # pass@2 = 1 - C(2,2)/C(3,2) = 1 - 1/3 = 2/3. Test pass rate 3 of 6 tests; 2 of 3 compile.
    assert rows["easy"]["pass@1"] == pytest.approx(1 / 3)
    assert rows["easy"]["pass@2"] == pytest.approx(2 / 3)
    assert rows["easy"]["test_pass_rate"] == pytest.approx(0.5)
    assert rows["easy"]["compile_rate"] == pytest.approx(2 / 3)
    assert rows["hard"]["pass@1"] == 0.0 and rows["hard"]["pass@2"] == 0.0
    # all: the mean over the two tasks, (2/3 + 0) / 2 = 1/3 for pass@2; 3 of 12 tests passed.
    assert rows["all"]["pass@2"] == pytest.approx(1 / 3)
    assert rows["all"]["test_pass_rate"] == pytest.approx(0.25)
    assert rows["all"]["tasks"] == 2 and rows["all"]["samples"] == 6
    # The comparison is after - before, key by key.
    delta = compare(rows, {**rows, "all": {**rows["all"], "pass@2": 0.5}})
    assert delta["all"]["pass@2"] == pytest.approx(0.5 - 1 / 3)
    assert delta["easy"]["pass@1"] == 0.0 and "tasks" not in delta["all"]


def test_eval_command_reports_rates_by_difficulty(tiny_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    # The first 8 held-out tasks keep this test short; the whole file holds 62.
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join((REPO / "data/eval.jsonl").read_text().splitlines(True)[:8]))
    done = run_cli(
        "eval",
        "--checkpoint",
        str(tiny_model_dir),
        "--tasks",
        str(tasks),
        "--n",
        "2",
        "--k",
        "1,2",
        "--set",
        "student.max_new_tokens=16",
        "--output",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert rows["all"]["tasks"] == 8 and rows["all"]["samples"] == 16
    assert {"parse_rate", "compile_rate", "test_pass_rate", "pass@1", "pass@2"} <= set(rows["all"])
    assert sum(rows[d]["tasks"] for d in ("easy", "medium", "hard") if d in rows) == 8
    assert "pass@2" in done.stdout


def test_eval_refuses_k_above_n():
    done = run_cli("eval", "--n", "2", "--k", "1,4", timeout=60)
    assert done.returncode == 2 and "need 1 <= k <= n" in done.stderr


def test_two_checkpoints_are_compared_on_the_same_samples(tiny_model_dir, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join((REPO / "data" / "eval.jsonl").read_text().splitlines(True)[:3]))
    out = tmp_path / "compare.json"
    done = run_cli(
        "eval",
        "--set",
        f"student.model={tiny_model_dir}",
        "--baseline",
        "--checkpoint",
        str(tiny_model_dir),
        "--tasks",
        str(tasks),
        "--n",
        "2",
        "--k",
        "1,2",
        "--temperature",
        "1.5",
        "--set",
        "student.max_new_tokens=12",
        "--output",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["models"] == [str(tiny_model_dir)] * 2
    assert result["before"]["all"]["samples"] == 6
    # The same model twice, with the same seed: the same completions, so every difference is 0.
    assert result["before"] == result["after"]
    assert all(v == 0.0 for row in result["delta"].values() for v in row.values())
    assert "before -> after" in done.stdout and "temperature 1.5" in done.stdout


def test_eval_refuses_more_than_two_models_and_a_baseline_alone():
    done = run_cli("eval", "--baseline", timeout=60)
    assert done.returncode == 2 and "--baseline compares a --checkpoint" in done.stderr
    done = run_cli("eval", "--checkpoint", "a", "--checkpoint", "b", "--baseline", timeout=60)
    assert done.returncode == 2 and "at most two models" in done.stderr


def test_evaluation_draws_a_seeded_stream_and_leaves_the_training_rng_alone(
    tiny_model_dir, toolchain
):
    config = Config(student=StudentConfig(model=str(tiny_model_dir), max_new_tokens=12))
    model, tokenizer = load_student(config.student, torch.device("cpu"), torch.float32)
    generator = Generator(model, tokenizer, config.student)
    scorer = Scorer(RustJudge(toolchain, config.rust, 1), None, config.rewards)
    tasks = load_tasks(REPO / "data" / "eval.jsonl")[:2]
    threads = ThreadPolicy(beside_rustc=1, alone=1)

    def run(seed):
        result = anyio.run(evaluate_policy, generator, scorer, tasks, 2, [1, 2], threads, seed)
        return [s.sample.completion for s in result.scored]

    torch.manual_seed(123)
    training_state = torch.get_rng_state()
    first = run(seed=0)
    assert torch.equal(torch.get_rng_state(), training_state)  # training draws what it would
    torch.rand(1000)  # wherever the training stream is, evaluation starts from its own seed
    assert run(seed=0) == first
    assert run(seed=1) != first
