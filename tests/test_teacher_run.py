"""The teacher inside a training run, as a user runs it: its metrics in every row, a budget with
`teacher.on_budget: stop` ending the run cleanly, and a teacher that dies mid-run."""

from __future__ import annotations

import csv
import json
import math

from teacher_server import TeacherServer

from tests.conftest import run_cli

KEY_ENV = "RLAIF_TEST_KEY"


def test_a_spent_budget_with_on_budget_stop_ends_the_run_after_the_step(tiny_model_dir, tmp_path):
    with TeacherServer() as server:
        settings = [
            f"student.model={tiny_model_dir}",
            "trainer.max_steps=3",
            f"run.output_dir={tmp_path}",
            "run.name=budget",
            "student.max_new_tokens=24",
            "teacher.provider=openai-compatible",
            "teacher.model=judge",
            f"teacher.base_url={server.openai_url}",
            f"teacher.api_key_env={KEY_ENV}",
            "teacher.only_compiled=false",  # the tiny model's code rarely compiles
            "teacher.max_requests=1",
            "teacher.on_budget=stop",
            f"cache.dir={tmp_path / 'cache'}",
        ]
        done = run_cli(*[a for s in settings for a in ("--set", s)], env={KEY_ENV: "k"})
        sent = len(server.requests)

    assert done.returncode == 0, done.stderr[-3000:]
    assert sent == 1
    out = done.stdout + done.stderr
    assert out.count("teacher: stopped: the request budget is spent (1 requests)") == 1
    assert "the run ends after step 1" in done.stdout
    run = tmp_path / "budget"
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1  # steps 2 and 3 never ran
    row = rows[0]
    assert float(row["teacher_requests"]) == 1.0
    assert float(row["teacher_verdicts"]) == 1.0
    assert float(row["teacher_abstained_budget"]) >= 1.0
    assert float(row["teacher_budget_exhausted"]) == 1.0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    reasons = {s["teacher"]["abstained"] for s in samples if s["code"]}
    assert any(r and r.startswith("budget: ") for r in reasons)
    assert (run / "checkpoints" / "step_1").is_dir()


def test_a_teacher_that_dies_mid_run_makes_samples_abstain_and_the_run_goes_on(
    tiny_model_dir, tmp_path
):
    # The server answers `stop_after` requests (step 1's 8 samples and 2 of step 2's, one at a
    # time), then goes away: connections are refused from then on. Two failed requests open the
    # circuit and every later sample abstains at once (unavailable); the cooldown outlasts the run.
    stop_after = 10
    with TeacherServer(stop_after=stop_after) as server:
        values = [
            f"student.model={tiny_model_dir}",
            "student.max_new_tokens=16",
            "trainer.max_steps=4",
            "trainer.tasks_per_step=2",
            "trainer.samples_per_prompt=4",
            f"run.output_dir={tmp_path}",
            "run.name=dies",
            "logging.progress=false",
            "checkpoint.every=0",
            "teacher.provider=openai-compatible",
            "teacher.model=judge",
            f"teacher.base_url={server.openai_url}",
            f"teacher.api_key_env={KEY_ENV}",
            "teacher.only_compiled=false",  # the tiny model's code rarely compiles
            "teacher.concurrency=1",  # requests in a fixed order: the death falls in step 2
            # Steps one after the other: with overlap, step 2's requests (and the death) can come
            # before step 1's row is written, and the rows below say which step saw what.
            "pipeline.max_staleness=0",
            "teacher.requests_per_minute=0",
            "teacher.tokens_per_minute=0",
            "teacher.max_attempts=3",
            "teacher.backoff_initial_s=0.05",
            "teacher.backoff_max_s=0.1",
            "teacher.breaker_failures=2",
            "teacher.breaker_cooldown_s=3600",
            f"cache.dir={tmp_path / 'cache'}",
        ]
        done = run_cli(*[a for s in values for a in ("--set", s)], env={KEY_ENV: "k"})
        received = server.requests

    assert done.returncode == 0, done.stderr[-3000:]
    assert len(received) == stop_after  # nothing reached it after it died
    out = done.stdout + done.stderr
    assert out.count("teacher: unreachable (connection: APIConnectionError) after 2 failed") == 1
    run = tmp_path / "dies"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2, 3, 4]  # every step ran and logged its row
    last = rows[-1]
    assert last["teacher/verdicts"] == stop_after
    assert last["teacher/abstained_connection"] >= 1  # the requests that found it dead
    assert last["teacher/abstained_unavailable"] > 0  # then refused at once
    assert last["teacher/requests"] == stop_after + 2  # two failed requests opened the circuit
    assert last["teacher/circuit_open"] == 1.0
    assert rows[0]["teacher/circuit_open"] == 0.0  # it died during step 2
    assert rows[0]["teacher/abstained"] == rows[0]["teacher/abstained_no_code"]
    assert rows[1]["teacher/circuit_open"] == 1.0
    for row in rows[2:]:  # steps after the death: the teacher abstained on every sample it saw
        assert row["teacher/abstain_rate"] == 1.0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2, 3, 4}
    for s in samples:
        assert math.isfinite(s["reward"])  # rustc's reward stands without a verdict
        if s["step"] >= 3 and s["code"]:
            assert s["teacher"]["abstained"].startswith("unavailable: teacher circuit open")
            assert s["teacher"]["score"] is None  # NaN, written as strict JSON null
