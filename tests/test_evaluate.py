"""Evaluation: the unbiased pass@k estimator, and the eval command on a tiny model."""

from __future__ import annotations

import json

import pytest

from rlaif.evaluate import pass_at_k
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
