"""`python -m rlaif doctor`: as users run it, and its checks one by one."""

from __future__ import annotations

import sys
import tempfile

import pytest
from teacher_server import Status, TeacherServer

from rlaif import config as config_module
from rlaif.cli.doctor import (
    check_cache,
    check_rustc,
    check_sandbox,
    check_teacher,
    exit_code,
    run_doctor,
    sandbox_checks,
)
from tests.conftest import run_cli

KEY = "sk-doctor-secret-do-not-print"
KEY_ENV = "RLAIF_DOCTOR_KEY"


def teacher_args(server: TeacherServer, cache_dir) -> list[str]:
    settings = [
        "teacher.provider=openai-compatible",
        "teacher.model=judge",
        f"teacher.base_url={server.openai_url}",
        f"teacher.api_key_env={KEY_ENV}",
        f"cache.dir={cache_dir}",
    ]
    return [arg for s in settings for arg in ("--set", s)]


def test_doctor_online_reports_everything_and_the_latency(tmp_path):
    with TeacherServer() as server:
        done = run_cli("doctor", "--online", *teacher_args(server, tmp_path), env={KEY_ENV: KEY})
        requests, url = server.requests, server.openai_url

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    lines = ("ok  rustc: rustc ", "clippy-driver:", "ok  device: ", "threads", "cache: ")
    lines += ("ok  sandbox: ", "sandbox network: ", "sandbox not covered: ", "ok  sandbox job: ")
    for line in lines:
        assert line in out, out
    assert f"ok  teacher: openai-compatible judge at {url}: {KEY_ENV} is set" in out
    # One grading request, read with the rubric (the server's default reply is a verdict).
    assert "ok  online: answered in " in out and "in the rubric's format: correctness 8" in out
    assert (
        len(requests) == 1
        and "fn add(a: i32, b: i32)" in requests[0].body["messages"][1]["content"]
    )
    assert KEY not in out + done.stderr


def test_doctor_online_fails_when_the_teacher_answers_off_the_rubric(tmp_path):
    # A teacher that answers, but not in the rubric's format, would abstain on every sample.
    with TeacherServer(default_reply="Looks good to me!") as server:
        done = run_cli("doctor", "--online", *teacher_args(server, tmp_path), env={KEY_ENV: KEY})

    assert done.returncode == 1
    assert "FAIL  online: answered in " in done.stdout
    assert "off the rubric's format (unparsable: neither a JSON object nor a lone number)" in (
        done.stdout
    )


def test_doctor_online_fails_with_the_error_when_the_teacher_refuses(tmp_path):
    with TeacherServer() as server:
        server.script(Status(401, message="invalid key"))
        done = run_cli("doctor", "--online", *teacher_args(server, tmp_path), env={KEY_ENV: KEY})

    assert done.returncode == 1
    assert "FAIL  online: api_error: AuthenticationError" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_doctor_without_online_sends_nothing_and_a_missing_optional_key_is_a_warning(tmp_path):
    with TeacherServer() as server:
        done = run_cli("doctor", *teacher_args(server, tmp_path))
        assert server.requests == []
        url = server.openai_url

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"warn  teacher: openai-compatible judge at {url}: {KEY_ENV} is not set" in (done.stdout)


def test_a_missing_rustc_fails():
    config = config_module.load(None, ["rust.rustc=/nonexistent/rustc"])

    checks = check_rustc(config)

    assert [c.label for c in checks] == ["FAIL", "warn"]
    assert "rustc not found" in checks[0].detail
    assert exit_code(checks) == 1


def test_a_required_teacher_without_its_key_fails():
    config = config_module.load(None, [f"teacher.api_key_env={KEY_ENV}", "teacher.required=true"])

    (check,) = check_teacher(config, environ={})

    assert check.label == "FAIL" and f"{KEY_ENV} is not set" in check.detail
    assert exit_code([check]) == 1
    (ok,) = check_teacher(config, environ={KEY_ENV: KEY})
    assert ok.ok and KEY not in ok.detail


def test_online_without_a_key_is_a_failure_not_a_request(tmp_path):
    config = config_module.load(None, [f"teacher.api_key_env={KEY_ENV}", f"cache.dir={tmp_path}"])

    checks = run_doctor(config, online=True, environ={})

    online = checks[-1]
    assert online.name == "online" and online.label == "FAIL"
    assert "no request sent" in online.detail
    assert exit_code(checks) == 1


def test_the_cache_size_is_reported(tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "blob").write_bytes(b"x" * 3 * 2**20)  # 3 MiB
    config = config_module.load(None, [f"cache.dir={tmp_path}"])

    (check,) = check_cache(config)

    assert "teacher 3.0 MiB" in check.detail and str(tmp_path) in check.detail


def test_the_sandbox_level_its_network_and_what_it_leaves_uncovered_are_reported(toolchain):
    config = config_module.load(None, ["rust.sandbox=posix"])

    level, checks = sandbox_checks(config, toolchain)

    assert level is not None and level.name == "posix"
    by_name = {c.name: c for c in checks}
    assert by_name["sandbox"].detail == "posix (rust.sandbox=posix)"
    assert by_name["sandbox network"].label == "warn"  # posix does not cut it: said, not failed
    assert by_name["sandbox network"].detail.startswith("NOT cut")
    assert "network: not cut" in by_name["sandbox not covered"].detail
    assert by_name["sandbox job"].ok, by_name["sandbox job"].detail
    assert exit_code(checks) == 0


def test_a_sandbox_level_this_machine_lacks_fails():
    wanted = "seatbelt" if sys.platform != "darwin" else "namespaces"
    config = config_module.load(None, [f"rust.sandbox={wanted}"])

    (check,) = check_sandbox(config)

    assert check.label == "FAIL" and f"rust.sandbox={wanted} is not available here" in check.detail
    assert exit_code([check]) == 1


def test_a_sandbox_whose_job_fails_fails_and_says_the_run_would_train_blind(
    toolchain, monkeypatch, tmp_path
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # no job dir can be made
    config = config_module.load(None, ["rust.sandbox=posix"])

    _, checks = sandbox_checks(config, toolchain)

    job = checks[-1]
    assert job.name == "sandbox job" and job.label == "FAIL"
    assert "FileNotFoundError" in job.detail and "would train blind" in job.detail
    assert exit_code(checks) == 1


def test_train_says_the_level_first_saves_it_resolved_and_refuses_a_failing_one(
    toolchain, monkeypatch, tmp_path
):
    from rich.console import Console

    from rlaif.cli.runs import sandbox_first
    from rlaif.judges.rust.sandbox_levels import SandboxUnavailable, resolve

    console = Console(record=True, width=1000)
    resolved = sandbox_first(config_module.load(None, []), toolchain, console)

    assert resolved.rust.sandbox == resolve("auto").name != "auto"  # as config.yaml saves it
    lines = console.export_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "sandbox",
        "sandbox network",
        "sandbox not covered",
        "sandbox job",
    ]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(SandboxUnavailable, match="would train blind"):
        sandbox_first(config_module.load(None, ["rust.sandbox=posix"]), toolchain, console)
