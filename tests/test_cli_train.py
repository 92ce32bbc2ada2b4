"""The main job end to end, as a user runs it: CLI, tiny model, real rustc, files on disk."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from transformers import AutoModelForCausalLM

from rlaif.judges.rewards import AST_TERMS, RUST_TERMS
from rlaif.records.metrics import LEADING_COLUMNS, NAMESPACES, metric_name
from tests.conftest import REPO, run_cli

REQUIRED_COLUMNS = [
    "iteration",
    "avg_reward",
    "reward_std",
    "compile_success_rate",
    "parse_success_rate",
    "policy_loss",
    "kl",
    "grad_norm",
    "test_pass_rate",
    "kl_coef",
    "gen_seconds",
    "score_seconds",
    "train_seconds",
    "step_seconds",
]


def test_three_steps_write_metrics_samples_and_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    done = run_cli(
        "--config",
        "config.yaml",
        "--set",
        f"student.model={tiny_model_dir}",
        "--set",
        "trainer.max_steps=3",
        "--set",
        f"run.output_dir={tmp_path}",
        "--set",
        "run.name=smoke",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        done.stdout.count("teacher: off (environment variable ANTHROPIC_API_KEY is not set)") == 1
    )
    # The run says which objective its update optimises (the defaults: no clip can act).
    assert "update: REINFORCE with a group baseline" in done.stdout
    run = tmp_path / "smoke"

    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[: len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS == list(LEADING_COLUMNS)
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        # Generation of a step may overlap the one before (max_staleness 1), so a step can take
        # less than its own generation; its update always lies inside it.
        assert float(row["step_seconds"]) >= float(row["train_seconds"]) > 0
        assert float(row["gen_seconds"]) > 0
        assert 0 <= float(row["compile_success_rate"]) <= 1
    # metrics.jsonl: the same rows, the same order, under the namespaced names.
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged] == [1, 2, 3]
    assert list(logged[0]) == [metric_name(column) for column in rows[0]]
    assert logged[0]["reward/mean"] == pytest.approx(float(rows[0]["avg_reward"]), rel=1e-5)

    config = load_yaml(REPO / "config.yaml")
    per_step = config["trainer"]["tasks_per_step"] * config["trainer"]["samples_per_prompt"]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * per_step
    first = samples[0]
    assert set(first["components"]) == {*RUST_TERMS, *AST_TERMS}
    assert first["reward"] == sum(first["components"].values())
    assert first["prompt"] and "completion" in first and "rust" in first

    saved = load_yaml(run / "config.yaml")
    assert saved["trainer"]["max_steps"] == 3 and saved["student"]["model"] == str(tiny_model_dir)

    checkpoint = run / "checkpoints" / "step_3"
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert model.num_parameters() > 0
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["policy_version"] == 3


def test_an_existing_run_name_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "metrics.csv").write_text("x\n")
    done = run_cli(
        "--set",
        f"student.model={tiny_model_dir}",
        "--set",
        f"run.output_dir={tmp_path}",
        "--set",
        "run.name=taken",
        timeout=120,
    )
    assert done.returncode == 2 and "already holds a run" in done.stderr


def load_yaml(path):
    return yaml.safe_load(path.read_text())


def test_the_teacher_is_called_in_training_and_its_key_is_never_written(tiny_model_dir, tmp_path):
    from tests.teacher_server import TeacherServer

    secret = "sk-test-0123456789-must-not-leak"
    with TeacherServer() as server:
        done = run_cli(
            "--set",
            f"student.model={tiny_model_dir}",
            "--set",
            "trainer.max_steps=1",
            "--set",
            f"run.output_dir={tmp_path}",
            "--set",
            "run.name=taught",
            "--set",
            "student.max_new_tokens=24",
            "--set",
            "teacher.provider=openai-compatible",
            "--set",
            "teacher.model=judge",
            "--set",
            f"teacher.base_url={server.openai_url}",
            "--set",
            "teacher.api_key_env=RLAIF_TEST_KEY",
            "--set",
            "teacher.only_compiled=false",  # the tiny model's code rarely compiles
            "--set",
            f"cache.dir={tmp_path / 'cache'}",  # a fresh cache: every graded sample is sent
            env={"RLAIF_TEST_KEY": secret},
        )
        requests = list(server.requests)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "taught"
    logged = json.loads((run / "metrics.jsonl").read_text())  # one step
    assert logged["teacher/requests"] == len(requests) and "teacher_requests" not in logged
    assert {k.split("/")[0] for k in logged if k != "iteration"} <= set(NAMESPACES)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    graded = [s for s in samples if s["code"]]
    # One request per distinct graded sample (identical ones share a verdict through the cache).
    assert graded and len(requests) == len({(s["code"], s["finished"]) for s in graded})
    for sample in graded:
        # The server's default verdict is 8/7/7/6/5 with weights 0.3/0.2/0.1/0.2/0.2: 0.67;
        # cut-off code gets correctness 0: 0.67 - 0.3 * 8 / 10 = 0.43.
        expected = 0.67 if sample["finished"] else 0.43
        assert sample["teacher"]["score"] == pytest.approx(expected)
        assert sample["components"]["teacher"] == pytest.approx(10 * expected)
    assert all(r.headers["authorization"] == f"Bearer {secret}" for r in requests)
    for path in run.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in done.stdout + done.stderr


def test_a_required_teacher_without_its_key_stops_before_any_model_loads(tmp_path):
    done = run_cli(
        "--set",
        "teacher.required=true",
        "--set",
        "student.model=/nonexistent/model",
        "--set",
        f"run.output_dir={tmp_path}",
        timeout=60,
    )
    assert done.returncode == 2
    assert "teacher.required is true but environment variable ANTHROPIC_API_KEY is not set" in (
        done.stderr
    )
    assert not any(tmp_path.iterdir())  # no run directory was made
