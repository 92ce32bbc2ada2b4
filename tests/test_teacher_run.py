"""The teacher inside a training run, as a user runs it: its metrics in every row, and a budget
with `teacher.on_budget: stop` ending the run cleanly."""

from __future__ import annotations

import csv
import json

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
