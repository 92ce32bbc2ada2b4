"""The API key appears nowhere but in the request's auth header: not in logs, samples.jsonl, the
saved config, or the environment of the sandbox that compiles and runs the student's code."""

from __future__ import annotations

import json
import logging

import anyio
import pytest
from teacher_server import Status, TeacherServer

from rlaif import config as config_module
from rlaif.config import Config, RustConfig, TeacherConfig
from rlaif.judges.rewards import reward_terms
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.rust.sandbox import scrubbed_env
from rlaif.judges.teacher.setup import make_teacher
from rlaif.records.metrics import sample_record
from rlaif.types import RustResult, Sample, Scored, Task

KEY = "sk-ant-secret-do-not-leak-4242"
KEY_ENV = "RLAIF_SECRET_TEST_KEY"
TASK = Task(id="add", prompt="Write `fn add(a: i32, b: i32) -> i32`.", tests="", difficulty="easy")
CODE = "fn add(a: i32, b: i32) -> i32 { a + b }"
RUST = RustResult(parsed=True, compiled=True)


@pytest.mark.parametrize("provider", ["anthropic", "openai-compatible"])
def test_the_key_is_in_no_log_record_judgement_metric_or_sample(provider, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    with TeacherServer() as server:
        server.script(Status(500))  # one retry, so the retry path logs too
        base_url = server.url if provider == "anthropic" else server.openai_url
        config = TeacherConfig(
            provider=provider,
            model="m",
            api_key_env=KEY_ENV,
            base_url=base_url,
            max_attempts=2,
            backoff_initial_s=0.01,
            requests_per_minute=0,
        )
        teacher, status = make_teacher(config, environ={KEY_ENV: KEY})
        assert teacher is not None

        async def run():
            try:
                return await teacher.judge(TASK, CODE, RUST, True)
            finally:
                await teacher.aclose()

        judgement = anyio.run(run)
        assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {KEY}"] * 2

    assert judgement.abstained is None
    assert caplog.records, "the SDKs log at DEBUG: the check below must have something to read"
    for record in caplog.records:
        assert KEY not in record.getMessage(), record.name
        assert KEY not in repr(record.args), record.name
    assert KEY not in status
    assert KEY not in json.dumps(teacher.metrics())
    sample = Sample(TASK, 0, [1], [2], [-0.1], CODE, CODE, 0, True)
    components, sources = reward_terms(RUST, judgement, True, Config().rewards)
    record = sample_record(1, Scored(sample, RUST, judgement, components, sources), 0.0)
    assert KEY not in json.dumps(record)
    # the saved config names the variable, never its value
    config_module.save(Config(teacher=config), tmp_path / "config.yaml")
    saved = (tmp_path / "config.yaml").read_text()
    assert KEY_ENV in saved and KEY not in saved


def test_the_sandbox_environment_is_built_without_the_parents(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv(KEY_ENV, KEY)

    env = scrubbed_env(str(tmp_path), extra_path="/opt/rust/bin")

    assert KEY not in json.dumps(env)
    assert set(env) == {"PATH", "HOME", "TMPDIR", "LANG"}


# Runs inside the student's test binary: it fails if any variable holds the key. The PATH check
# shows that the binary does read its environment (so the test could fail).
ENV_PROBE = """
#[test]
fn no_key_in_the_environment() {
    assert!(std::env::var("PATH").is_ok());
    assert!(std::env::var("ANTHROPIC_API_KEY").is_err());
    assert!(std::env::var("OPENAI_API_KEY").is_err());
    for (name, value) in std::env::vars() {
        assert!(!value.contains("do-not-leak"), "{} holds the key", name);
    }
}
"""


def test_code_compiled_and_run_in_the_sandbox_cannot_see_the_key(monkeypatch, toolchain):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv(KEY_ENV, KEY)
    judge = RustJudge(toolchain, RustConfig(), concurrency=1)

    result = anyio.run(judge.judge, CODE, ENV_PROBE)

    assert result.sandbox_error is None, result.log
    assert (result.tests_passed, result.tests_total) == (1, 1), result.log
