"""bench/pipeline.py's pure parts: the overlap bound, the checks, the shapes' settings, the task
pick and the steady-state means. No timing is asserted: the bench prints its checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench import pipeline
from bench.pipeline import Result, Stages, Workload


def stages(step: float, gen: float, train: float, score: float) -> Stages:
    return Stages(step=step, gen=gen, train=train, score=score)


def test_the_bound_is_max_of_the_driver_work_and_scoring_at_staleness_0():
    # teacher-bound: gen 1.2 + update 1.5 = 2.7 < score 4.9 -> the bound is scoring's 4.9 s;
    # one after the other they take 1.2 + 1.5 + 4.9 = 7.6 s -> at most 7.6 / 4.9 = 1.551x
    teacher_bound = stages(step=7.8, gen=1.2, train=1.5, score=4.9)
    assert pipeline.overlap_bound(teacher_bound) == pytest.approx(4.9)
    assert pipeline.bound_speedup(teacher_bound) == pytest.approx(1.5510, abs=1e-4)
    # generation-bound: 50 + 10 = 60 > 0.8 -> the bound is 60 s, at most 60.8 / 60 = 1.0133x
    generation_bound = stages(step=61.0, gen=50.0, train=10.0, score=0.8)
    assert pipeline.overlap_bound(generation_bound) == pytest.approx(60.0)
    assert pipeline.bound_speedup(generation_bound) == pytest.approx(1.0133, abs=1e-4)


def test_the_bound_check_uses_staleness_0s_stage_times_not_staleness_1s():
    sync = stages(step=7.8, gen=1.2, train=1.5, score=4.9)  # bound 4.9, 1.15 x 4.9 = 5.635
    # staleness 1's own gen + update (3.5 + 4.0) would give a looser bound; it must not count
    slow_beside = stages(step=5.6, gen=3.5, train=4.0, score=5.0)
    assert pipeline.bound_check(Result(sync, slow_beside, None))[0]
    assert not pipeline.bound_check(Result(sync, replace(slow_beside, step=5.7), None))[0]


def test_teacher_checks_speedups_against_staleness_0_and_trl():
    sync = stages(step=7.5, gen=1.2, train=1.5, score=4.9)
    fast = stages(step=4.9, gen=1.3, train=1.6, score=5.0)  # 7.5 / 4.9 = 1.53x
    trl = stages(step=7.6, gen=1.0, train=1.7, score=4.9)  # 7.6 / 4.9 = 1.55x < 1.6x
    checks = pipeline.teacher_checks(Result(sync, fast, trl), Workload())
    verdicts = [ok for ok, _ in checks]
    assert verdicts == [True, False, True, None]  # speedup, TRL, bound, the balance note
    assert "TRL GRPOTrainer 7.60 s" in checks[1][1]
    without_trl = pipeline.teacher_checks(Result(sync, fast, None), Workload())
    assert [ok for ok, _ in without_trl] == [True, True, None]
    # score 4.9 / (gen + update 2.7) = 1.81: off balance, with a hint
    assert "not balanced" in checks[-1][1]


def test_rustc_and_student_checks():
    s0 = stages(step=10.0, gen=8.0, train=1.5, score=0.5)
    assert pipeline.rustc_checks(Result(s0, replace(s0, step=10.0), None), Workload())[0][0]
    assert not pipeline.rustc_checks(Result(s0, replace(s0, step=10.01), None), Workload())[0][0]
    # within 5%: 10.5 passes, 10.51 does not
    assert pipeline.student_checks(Result(s0, replace(s0, step=10.5), None), Workload())[0][0]
    assert not pipeline.student_checks(Result(s0, replace(s0, step=10.51), None), Workload())[0][0]


def test_the_default_shape_is_the_older_workload_with_two_teacher_requests_at_a_time():
    # The flags results before 2026-12-06 were measured with, but for teacher concurrency 2
    # (bench/RESULTS.md, "The three shapes"); --teacher-concurrency 1 gives the older workload.
    (shape, w), *more = pipeline.parse_args([])[0]
    assert shape.name == "teacher" and not more
    assert w == Workload(
        steps=10,
        warmup=2,
        tasks=8,
        tasks_per_step=4,
        samples=4,
        max_new_tokens=128,
        hidden=256,
        layers=3,
        latency_ms=300.0,
        jitter_ms=100.0,
        teacher_concurrency=2,
        torch_threads=0,
    )
    (_, older), *_ = pipeline.parse_args(["--teacher-concurrency", "1"])[0]
    assert older == replace(w, teacher_concurrency=1)
    (_, quick), *_ = pipeline.parse_args(["--quick"])[0]
    assert quick == pipeline.QUICK


def test_all_runs_every_shape_and_flags_apply_to_each():
    runs, skip_trl, _ = pipeline.parse_args(["--shape", "all", "--quick", "--steps", "5"])
    assert [shape.name for shape, _ in runs] == ["teacher", "rustc", "student"]
    assert all(w.steps == 5 for _, w in runs)
    assert not skip_trl


def test_each_shape_turns_the_teacher_and_the_student_on_or_off(tmp_path: Path):
    shapes = pipeline.shapes()
    teacher = pipeline.settings(shapes["teacher"], Workload(), tmp_path, 1, "http://x/v1")
    assert teacher["teacher.provider"] == "openai-compatible"
    assert teacher["student.model"] == tmp_path / "model"
    rustc = pipeline.settings(shapes["rustc"], Workload(), tmp_path, 1, None)
    assert rustc["teacher.provider"] == "none" and rustc["rust.concurrency"] == 1
    assert rustc["cache.rust"] is False
    student = pipeline.settings(shapes["student"], Workload(), tmp_path, 1, None)
    assert "student.model" not in student  # config.yaml's own
    assert "student.generate_batch_size" not in student


def test_rust_concurrency_1_and_cores_minus_1_run_once_when_equal(monkeypatch):
    rustc = pipeline.shapes()["rustc"]
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 2)
    assert pipeline.rust_jobs(rustc) == [1]
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 8)
    assert pipeline.rust_jobs(rustc) == [1, 7]


def task(name: str, tests: int) -> str:
    return json.dumps({"id": name, "tests": "#[test] fn t() {}\n" * tests})


def test_tasks_with_the_most_tests_ties_in_file_order():
    lines = [task("a", 3), task("b", 5), "", task("c", 4), task("d", 5), task("e", 3)]
    picked = [json.loads(line)["id"] for line in pipeline.pick_tasks(lines, 3, most_tests=True)]
    assert picked == ["b", "d", "c"]
    first = [json.loads(line)["id"] for line in pipeline.pick_tasks(lines, 3, most_tests=False)]
    assert first == ["a", "b", "c"]


def row(iteration: int, gen: float, **more) -> dict:
    """A metrics.jsonl row as `run_rlaif` reads it: under the namespaced names."""
    return {
        "iteration": iteration,
        "perf/gen_seconds": gen,
        "perf/step_seconds": 10.0 + iteration,
        "perf/score_seconds": 2.0,
        "perf/train_seconds": 1.0,
        "perf/score_wait_seconds": 0.5,
        "perf/score_hidden_frac": 0.75,
        **{f"perf/{key}": value for key, value in more.items()},
    }


def test_steady_reads_generation_from_the_batch_made_during_the_step():
    # 5 steps, 1 of warm-up; the last step is never steady, so steps 2, 3 and 4 are. At
    # staleness 1 step n generates batch n + 1, whose gen_seconds is row n + 1's: rows 3, 4, 5
    # -> (3 + 4 + 5) / 3 = 4.0.
    rows = [row(n, gen=float(n), gen_threads_mean=n / 2) for n in range(1, 6)]
    s = pipeline.steady(rows, warmup=1, staleness=1)
    assert s.step == pytest.approx((12 + 13 + 14) / 3)
    assert s.gen == pytest.approx(4.0)
    assert s.gen_threads == pytest.approx((1.0 + 1.5 + 2.0) / 3)  # the steady rows' own
    assert s.train_threads is None  # not in the rows
    # staleness 0: each step generates its own batch -> rows 2, 3, 4 -> 3.0
    assert pipeline.steady(rows, warmup=1, staleness=0).gen == pytest.approx(3.0)
