"""Evaluation: the summary by difficulty, per-sample records, and the eval command on a tiny
model (the pass@k estimator itself is tested in test_stats.py)."""

from __future__ import annotations

import json
import math
import re

import anyio
import pytest
import torch

from rlaif import strict_json
from rlaif.config import Config, StudentConfig
from rlaif.data.tasks import load_tasks
from rlaif.evaluation.evaluate import compare, evaluate_policy, sample_records, summarize
from rlaif.evaluation.stats import paired_bootstrap, task_values
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.scoring import Scorer
from rlaif.rollout.threads import ThreadPolicy
from rlaif.student.model import Generator, load_student
from rlaif.types import Judgement, RustResult, Sample, Scored, Task
from tests.conftest import REPO, run_cli


def scored(task: Task, index: int, passed: int, total: int = 2) -> Scored:
    sample = Sample(task, index, [], [], [], "", "fn f() {}", 0, True)
    rust = RustResult(
        parsed=True,
        compiled=passed > 0,
        tests_built=passed > 0,  # it compiles with the tests: `Scored.compiles`
        tests_total=total,
        tests_passed=passed,
    )
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


def test_sandbox_errors_are_counted_apart_and_never_as_failures():
    # Task e: samples 0 (passes both tests, reward 20) and 1 (passes one, reward 10) judged, and
    # sample 2 whose sandbox failed (reward NaN, no verdict). Task h: one judged sample (0 of 2).
    e, h = Task("e", "p", "t", "easy"), Task("h", "p", "t", "hard")
    broken = scored(e, 2, 0)
    broken = Scored(
        broken.sample,
        RustResult(sandbox_error="rustc timed out in the check after 10 s", timed_out=True),
        broken.judgement,
        {"tests": math.nan},
        {"rust": math.nan},
    )
    batch = [scored(e, 0, 2), scored(e, 1, 1), broken, scored(h, 0, 0)]
    row = summarize(batch, 3, [1, 2])["all"]
    assert (row["samples"], row["sandbox_errors"], row["abstained"]) == (4, 1, 1)
    assert row["mean_reward"] == pytest.approx((20 + 10 + 0) / 3)  # not NaN
    # Rates over the 3 judged samples: all parse, 2 compile; tests 3 of 6.
    assert row["parse_rate"] == 1.0 and row["compile_rate"] == pytest.approx(2 / 3)
    assert row["test_pass_rate"] == pytest.approx(3 / 6)
    # pass@1: e has 2 judged samples, 1 passes -> 1/2; h 0 -> mean 1/4. pass@2: e 1 - C(1,2)/C(2,2)
    # = 1; h has only 1 judged sample, so no pass@2: the mean is over e alone.
    assert row["pass@1"] == pytest.approx(0.25) and row["pass@2"] == 1.0
    # The per-task values behind the bootstrap agree, through the records as they are written.
    records = [json.loads(strict_json.dumps(r)) for r in sample_records("m", batch)]
    assert records[2]["reward"] is None and records[2]["sandbox_error"]
    points = paired_bootstrap(*[task_values(records, [1, 2])] * 2, resamples=10)
    for key in ("mean_reward", "parse_rate", "compile_rate", "test_pass_rate", "pass@1", "pass@2"):
        assert points[key].before == pytest.approx(row[key]), key


def test_sample_records_give_the_summary_back_through_the_stats():
    easy, hard = Task("e", "p", "t", "easy"), Task("h", "p", "t", "hard")
    batch = [scored(easy, 0, 2), scored(easy, 1, 1), scored(hard, 0, 0), scored(hard, 1, 0)]
    records = sample_records("m", batch)
    assert [(r["model"], r["task_id"], r["sample"]) for r in records] == [
        ("m", "e", 0),
        ("m", "e", 1),
        ("m", "h", 0),
        ("m", "h", 1),
    ]
    assert records[0]["all_tests_passed"] and not records[1]["all_tests_passed"]
    assert records[1]["components"] == {"tests": 10.0} and records[1]["reward"] == 10.0
    json.dumps(records)  # plain JSON, as the eval command writes it
    # The bootstrap's point estimates on the full task list are the summary's numbers.
    rows = summarize(batch, 2, [1, 2])["all"]
    values = task_values(records, [1, 2])
    points = paired_bootstrap(values, values, resamples=10)
    for key in ("mean_reward", "parse_rate", "compile_rate", "test_pass_rate", "pass@1", "pass@2"):
        assert points[key].before == pytest.approx(rows[key]), key


def test_eval_command_reports_rates_by_difficulty(tiny_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    # The first 8 held-out tasks keep this test short; the whole file holds 62.
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join((REPO / "data/eval.jsonl").read_text().splitlines(True)[:8]))
    samples = tmp_path / "samples.jsonl"
    done = run_cli(
        "eval",
        "--checkpoint",
        str(tiny_model_dir),
        "--tasks",
        str(tasks),
        "--max-tasks",
        "5",
        "--n",
        "2",
        "--k",
        "1,2",
        "--set",
        "student.max_new_tokens=16",
        "--output",
        str(out),
        "--samples-output",
        str(samples),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text(), parse_constant=refuse)  # strict JSON: null, never NaN
    assert rows["all"]["tasks"] == 5 and rows["all"]["samples"] == 10  # --max-tasks 5 of 8
    assert {"parse_rate", "compile_rate", "test_pass_rate", "pass@1", "pass@2"} <= set(rows["all"])
    assert {"sandbox_errors", "abstained"} <= set(rows["all"])
    assert sum(rows[d]["tasks"] for d in ("easy", "medium", "hard") if d in rows) == 5
    lines = samples.read_text().splitlines()
    assert len(lines) == 10 and all(json.loads(line, parse_constant=refuse) for line in lines)
    assert "pass@2" in done.stdout
    # Not a terminal: progress comes as plain lines, the last one at the end.
    assert "eval: 5/5 tasks" in done.stdout
    # The threads generation used are reported (how many depends on the rustc jobs running).
    assert re.search(r"generation [0-9.]+s on [0-9.]+ of \d+ torch threads", done.stdout)


def refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_eval_max_tasks_comes_from_the_config(monkeypatch):
    # `eval.max_tasks` was read by the periodic evaluation only; `rlaif eval` honours it too.
    from rlaif.cli import main as cli

    seen = {}

    async def fake_evaluate(config, tasks, toolchain, models, n, ks, console):
        seen["tasks"] = len(tasks)
        return []

    monkeypatch.chdir(REPO)
    monkeypatch.setattr("rlaif.evaluation.evaluate.evaluate", fake_evaluate)
    assert cli.main(["eval", "--set", "eval.max_tasks=3"]) == 0
    assert seen["tasks"] == 3
    assert cli.main(["eval", "--set", "eval.max_tasks=3", "--max-tasks", "0"]) == 0
    assert seen["tasks"] == len(load_tasks(str(REPO / "data/eval.jsonl")))


def test_eval_refuses_k_above_n():
    done = run_cli("eval", "--n", "2", "--k", "1,4", timeout=60)
    assert done.returncode == 2 and "need 1 <= k <= n" in done.stderr


def test_two_checkpoints_are_compared_on_the_same_samples(tiny_model_dir, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join((REPO / "data" / "eval.jsonl").read_text().splitlines(True)[:3]))
    out = tmp_path / "compare.json"
    samples = tmp_path / "samples.jsonl"
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
        "--samples-output",
        str(samples),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    # Every sample of both models, in order: 3 tasks x 2 samples each, before then after.
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(records) == 12 and [r["sample"] for r in records[:2]] == [0, 1]
    assert records[0]["task_id"] == records[6]["task_id"]
    assert records[:6] == [{**r, "model": str(tiny_model_dir)} for r in records[6:]]
    assert {"completion", "code", "components", "compiled", "tests_total"} <= set(records[0])
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
    threads = ThreadPolicy(cores=1)

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
