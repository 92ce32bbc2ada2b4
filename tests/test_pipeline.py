"""The overlapped pipeline: schedule, the versions samples carry, timings, clean stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlaif.config import StudentConfig
from rlaif.judges.scoring import Gauge
from rlaif.loop.pipeline import Schedule
from rlaif.student.model import Generator, load_student
from rlaif.types import Task
from tests.conftest import REPO, run_cli, settings
from tests.teacher_server import TeacherServer

KEY_ENV = "RLAIF_PIPELINE_TEST_KEY"


# --- the schedule (pure) ---------------------------------------------------------------------


def test_staleness_zero_generates_only_the_next_step():
    schedule = Schedule(max_staleness=0, checkpoint_every=0, last_step=5)
    assert schedule.may_generate(1, updated=0)
    assert not schedule.may_generate(2, updated=0)  # would be 1 update old
    assert schedule.may_generate(3, updated=2)


def test_staleness_one_generates_one_step_ahead_and_never_past_the_last():
    schedule = Schedule(max_staleness=1, checkpoint_every=0, last_step=3)
    assert schedule.may_generate(2, updated=0)  # step 2 sampled by version 0, trained at 1
    assert not schedule.may_generate(3, updated=0)
    assert schedule.may_generate(3, updated=1)
    assert not schedule.may_generate(4, updated=3)  # past the last step


def test_generation_waits_for_a_checkpointed_step():
    # Checkpoints after steps 2 and 4 (and 5, the last): step 3 may not be generated before
    # update 2, so the checkpoint after step 2 holds no batch sampled ahead.
    schedule = Schedule(max_staleness=1, checkpoint_every=2, last_step=5)
    assert schedule.may_generate(2, updated=0)
    assert not schedule.may_generate(3, updated=1)
    assert schedule.may_generate(3, updated=2)
    assert schedule.may_generate(4, updated=2)
    assert not schedule.may_generate(5, updated=3)
    assert [s for s in range(1, 6) if schedule.checkpointed(s)] == [2, 4, 5]


# --- the in-flight gauge ---------------------------------------------------------------------


def test_gauge_reports_the_time_weighted_mean_and_peak_per_window():
    now = [0.0]
    gauge = Gauge(clock=lambda: now[0])
    with gauge.track():  # 1 in flight over [0, 2)
        now[0] = 2.0
        with gauge.track():  # 2 in flight over [2, 3)
            now[0] = 3.0
    now[0] = 4.0  # 0 in flight over [3, 4)
    # (1 * 2 + 2 * 1 + 0 * 1) / 4 = 1.0; peak 2.
    assert gauge.window() == (1.0, 2)
    with gauge.track():
        now[0] = 5.0
        # The next window opened at 4: one in flight throughout, and still in flight now.
        assert gauge.window() == (1.0, 1)
    assert gauge.current == 0


# --- generation can be cut short -------------------------------------------------------------


def test_generation_stops_at_the_next_token_once_asked(tiny_model_dir):
    student = StudentConfig(
        model=str(tiny_model_dir), autocast="fp32", max_new_tokens=40, use_chat_template=False
    )
    model, tokenizer = load_student(student, torch.device("cpu"), torch.float32)
    task = Task(id="t", prompt="fn add(a: i32, b: i32) -> i32 {", tests="", difficulty="easy")
    whole = Generator(model, tokenizer, student).generate([task], 2, 0)[0]
    cut = Generator(model, tokenizer, student, stop_requested=lambda: True).generate([task], 2, 0)
    assert max(len(s.completion_ids) for s in whole) > 1
    assert all(len(s.completion_ids) <= 1 for s in cut[0])


# --- end to end: versions, staleness, timings ------------------------------------------------


def train(tiny_model_dir, out, name, *extra, env=None, **values):
    done = run_cli(
        *settings(
            student__model=tiny_model_dir,
            student__max_new_tokens=12,
            trainer__samples_per_prompt=2,
            teacher__provider="none",
            cache__dir=out / "cache",
            run__output_dir=out,
            run__name=name,
            logging__progress="false",
            **values,
        ),
        *extra,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / name


def rows(run_dir, name="metrics.jsonl"):
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.mark.parametrize(
    ("staleness", "every", "versions"),
    [
        # Synchronous: step k is sampled by version k - 1.
        (0, 0, {1: 0, 2: 1, 3: 2, 4: 3}),
        # One ahead: step 2 is sampled before update 1, and so on.
        (1, 0, {1: 0, 2: 0, 3: 1, 4: 2}),
        # One ahead, checkpoint after step 2: step 3 waits for update 2.
        (1, 2, {1: 0, 2: 0, 3: 2, 4: 2}),
    ],
)
def test_samples_carry_the_version_that_made_them(
    tiny_model_dir, tmp_path, staleness, every, versions
):
    run = train(
        tiny_model_dir,
        tmp_path,
        "versions",
        trainer__max_steps=4,
        pipeline__max_staleness=staleness,
        checkpoint__every=every,
    )
    made = {(s["step"], s["policy_version"]) for s in rows(run, "samples.jsonl")}
    assert made == set(versions.items())
    for row in rows(run):
        stale = row["iteration"] - 1 - versions[row["iteration"]]
        assert row["perf/staleness_mean"] == row["perf/staleness_max"] == stale
        # Stale samples get truncated importance weights (trainer.is_cap): exp(trainer - sampler)
        # log-probs, not exactly 1 once the weights moved; fresh ones weigh exactly 1.
        assert (row["train/is_weight_mean"] != 1.0) == (stale > 0)
        # The update waits on scoring at most as long as scoring takes (plus the hand-over).
        assert 0 <= row["perf/score_wait_seconds"] <= row["perf/score_seconds"] + 0.05
        assert row["perf/samples_per_s"] > 0
        # torch's threads follow the rustc jobs running: between 1 and every core (no value
        # for generation in a step that generated nothing: the last, with one generated ahead).
        assert 1 <= (row["perf/gen_threads_mean"] or 1) <= os.cpu_count()
        assert 1 <= row["perf/train_threads_mean"] <= os.cpu_count()
    # A row's gauge window may see no job: a batch generated ahead can be scored entirely
    # within the previous step's window.
    assert max(row["perf/rust_jobs_in_flight_max"] for row in rows(run)) >= 1


# --- clean stops -----------------------------------------------------------------------------


def _jailed_processes() -> list[str]:
    """Sandbox jobs anywhere on the machine (the jail's shell is named rlaif-jail)."""
    found = subprocess.run(["pgrep", "-af", "rlaif-jail"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_sigint_during_scoring_checkpoints_exits_0_and_resumes(tiny_model_dir, tmp_path):
    # A slow teacher keeps each step's scoring in flight for seconds, so the signal lands while
    # rustc jobs and teacher calls are running.
    out, name = tmp_path, "stopped"
    values = dict(
        student__model=tiny_model_dir,
        student__max_new_tokens=12,
        trainer__samples_per_prompt=2,
        trainer__max_steps=4,
        teacher__provider="openai-compatible",
        teacher__model="judge",
        teacher__api_key_env=KEY_ENV,
        teacher__only_compiled="false",
        teacher__concurrency=1,
        rust__concurrency=1,
        checkpoint__every=0,
        cache__dir=out / "cache",
        run__output_dir=out,
        run__name=name,
        logging__progress="false",
    )
    env = {**os.environ, KEY_ENV: "sk-test"}
    with TeacherServer(latency_s=0.4) as server:
        args = [*settings(teacher__base_url=server.openai_url, **values)]
        process = subprocess.Popen(
            [sys.executable, "-m", "rlaif", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        metrics = out / name / "metrics.jsonl"
        deadline = time.monotonic() + 240
        # After step 1 is logged, wait for the next scoring: a teacher request in flight.
        while not (metrics.exists() and metrics.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "no step finished"
            time.sleep(0.05)
        seen = len(server.requests)
        while len(server.requests) == seen:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
        assert not _jailed_processes()  # no rustc job (or anything jailed) outlived the run

        logged = rows(out / name)
        done = logged[-1]["iteration"]
        assert 1 <= done < 4
        assert (out / name / "checkpoints" / f"step_{done}" / "trainer.pt").exists()
        assert "SIGINT: stopping cleanly" in stdout
        assert f"resume with: python -m rlaif train --resume {out / name}" in stdout

        resumed = run_cli("--resume", str(out / name), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out / name} from step_{done}" in resumed.stdout
    assert [r["iteration"] for r in rows(out / name)] == list(range(1, 5))
    assert (out / name / "checkpoints" / "step_4").exists()
