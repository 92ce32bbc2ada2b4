"""Run one untrusted process: scrubbed environment, resource limits, timeout, capped output.

Everything that compiles or runs model-written code goes through `run_sandboxed`.

Covered:
- Environment: only PATH, HOME, TMPDIR and LANG (HOME and TMPDIR point at the job's own temp
  dir), so API keys and user secrets in the parent's environment are not visible.
- Time: a wall-clock timeout; the process runs in a new session and its whole process group is
  SIGKILLed at the timeout, on cancellation, and once more after it exits (stragglers it forked).
- Resources (when `Limits` are given, through util-linux `prlimit`): CPU seconds, address
  space and file size.
- Output: stdout and stderr are each capped; a process that floods them is killed.
- Network (when `no_network` is set and the OS allows it): a fresh, empty network namespace via
  `unshare --net`, so the process has only an unconfigured loopback.

Not covered (yet): the filesystem is the host's (the process can read what the user can), and the
process count is not limited for root. A later hardening pass closes these.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one process (None: not limited)."""

    cpu_s: int | None = None
    memory_mb: int | None = None
    file_mb: int | None = None


@dataclass(frozen=True)
class ProcessResult:
    returncode: int | None  # None when it was killed by us (timeout or output flood)
    stdout: str
    stderr: str
    timed_out: bool
    output_capped: bool
    seconds: float


def scrubbed_env(workdir: str, extra_path: str | None = None, **extra: str) -> dict[str, str]:
    """The whole environment a sandboxed process sees; nothing is inherited from the parent."""
    path = f"{extra_path}:{SAFE_PATH}" if extra_path else SAFE_PATH
    return {"PATH": path, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", **extra}


@functools.cache
def network_isolation_prefix() -> tuple[str, ...]:
    """The command prefix that runs a process without network, or () where the OS refuses."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for prefix in ((unshare, "--net"), (unshare, "--user", "--map-root-user", "--net")):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix
    return ()


def _limit_prefix(limits: Limits) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError(
            "util-linux `prlimit` is needed to limit test binaries; install util-linux"
        )
    args = [prlimit]
    if limits.cpu_s is not None:
        # Soft limit N sends SIGXCPU (which callers read as "out of CPU time"); hard N+1 kills.
        args.append(f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}")
    if limits.memory_mb is not None:
        args.append(f"--as={limits.memory_mb * 2**20}")
    if limits.file_mb is not None:
        args.append(f"--fsize={limits.file_mb * 2**20}")
    return [*args, "--"]


async def run_sandboxed(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    timeout_s: float,
    limits: Limits | None = None,
    no_network: bool = False,
    max_output_bytes: int = 64 * 1024,
) -> ProcessResult:
    """Run `argv` to completion or until killed; expected failures are in the result."""
    command = list(argv)
    if limits is not None:
        command = _limit_prefix(limits) + command
    if no_network:
        command = [*network_isolation_prefix(), *command]

    start = time.perf_counter()
    out, err = bytearray(), bytearray()
    capped = timed_out = False
    process = await anyio.open_process(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:

        async def drain(stream: ByteReceiveStream | None, buffer: bytearray) -> None:
            nonlocal capped
            if stream is None:
                return
            async for chunk in stream:
                buffer.extend(chunk[: max_output_bytes - len(buffer)])
                if len(buffer) >= max_output_bytes:
                    capped = True
                    _kill_group(process.pid)  # flooding the pipes: stop it rather than read on
                    return

        with anyio.move_on_after(timeout_s) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(drain, process.stdout, out)
                group.start_soon(drain, process.stderr, err)
            await process.wait()
        timed_out = scope.cancelled_caught
    finally:
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    killed = timed_out or capped
    return ProcessResult(
        returncode=None if killed else process.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        output_capped=capped,
        seconds=time.perf_counter() - start,
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)
