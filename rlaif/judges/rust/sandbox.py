"""Run one untrusted process: confined, limited, timed out, its output capped, its env scrubbed.

Everything that compiles or runs model-written code goes through `run_sandboxed`, inside a `Job`
(a temp dir of its own, removed afterwards). How far a job is confined depends on the level
`rust.sandbox` picks (`sandbox_levels.resolve`: `auto` takes the strongest available, a named
level that is not available is an error):

| property                        | namespaces (Linux root) | seatbelt (macOS)  | posix (POSIX)  |
| ------------------------------- | ----------------------- | ----------------- | -------------- |
| wall-clock timeout, group kill  | yes                     | yes               | yes            |
| CPU s, file size, no core files | yes (prlimit)           | yes (setrlimit)   | yes (setrlimit)|
| scrubbed env, capped output     | yes                     | yes               | yes            |
| address space (`memory`)        | yes                     | no: macOS ignores | yes; not macOS |
| processes                       | yes: a uid of its own   | yes: yours + N    | yes: yours + N*|
| threads                         | yes                     | no: macOS counts  | yes; not macOS |
|                                 |                         | processes only    |                |
| network                         | cut: netns              | cut: profile      | NOT cut        |
| writes outside the job dir      | vanish with the job     | denied: profile   | NOT confined   |
| reads of the account's files    | hidden (own uid, tmpfs) | NOT confined      | NOT confined   |
| a process leaving the group     | dies (PID namespace)    | survives          | survives       |

(* not as root: RLIMIT_NPROC does not bind root, so as root only the timeout and the group kill
bound a fork bomb; `sandbox_levels.gaps` lists it and `doctor` prints it.)

"namespaces" (jail.py): fresh PID, mount and network namespaces per process, the command as a
uid of its own, /tmp, /var/tmp, /dev/shm, /run, /home and /root replaced by empty tmpfs mounts,
only the job dir and the toolchain bound back in; limits through util-linux `prlimit`.

"posix" (limited_exec.py): what any POSIX system gives an ordinary account, after OpenAI
human-eval's `reliability_guard` and nanochat's `execution.py`: limits set in the child by
`resource.setrlimit` (a fresh interpreter that then execs the command), a new session whose
process group is SIGKILLed at the timeout, on cancellation and once more after the command
exits; no `prlimit`, nothing read from /proc. RLIMIT_NPROC counts every process of the account
(on Linux every thread too), so it is set to what the account runs now (counted with `ps`) plus
`processes`: a fork bomb still stops, a little later, and concurrent jobs share the headroom.
Like human-eval's guard, it is not a security sandbox: the code runs as you, on your files.

"seatbelt" (seatbelt.py; UNTESTED ON A MAC): posix, plus macOS `sandbox-exec` with a profile
that denies every network operation and every write outside the job dir.

At every level: the environment holds only PATH, HOME, TMPDIR and LANG (HOME and TMPDIR point
at the job dir), so API keys and secrets in the parent's environment are not visible; stdout and
stderr are each capped and a process that floods them is killed. Not covered anywhere: memory
and process counts by cgroup (the host's cgroup tree is left alone), disk use of the job dir
beyond the per-file limit, a job's CPU time summed over its processes (RLIMIT_CPU is per
process; the wall clock bounds the rest), reading world-readable files, and kernel exploits.
A harness that fails (a jail that cannot be set up, a limit that cannot be set) raises
RuntimeError rather than returning a result: the caller must not score it as the code's fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from rlaif.judges.rust import jail, seatbelt
from rlaif.judges.rust.sandbox_levels import Level

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
LIMITED_EXEC = str(Path(__file__).with_name("limited_exec.py"))


@dataclass(frozen=True)
class Limits:
    """Resource limits for one process (None: not limited)."""

    cpu_s: int | None = None
    memory_mb: int | None = None
    file_mb: int | None = None
    processes: int | None = None  # processes and threads of the job's uid


@dataclass(frozen=True)
class ProcessResult:
    returncode: int | None  # None when killed by us (timeout, flood); -N when killed by signal N
    stdout: str
    stderr: str
    timed_out: bool
    output_capped: bool
    seconds: float


@dataclass(frozen=True)
class Job:
    """One job's own temp dir, at one level; `uid` and `fstab` only at the namespaces level.

    There the job's tree is `base/` (root's, 0711) holding `work/` (the job uid's: the only place
    its processes may write) and `jail.fstab` (root's, 0600: the mounts of the jail, out of the
    job's reach). At the other levels `workdir` is the temp dir itself.
    """

    workdir: str
    level: str = "posix"
    uid: int | None = None
    fstab: str | None = None


def scrubbed_env(workdir: str, extra_path: str | None = None, **extra: str) -> dict[str, str]:
    """The whole environment a sandboxed process sees; nothing is inherited from the parent."""
    path = f"{extra_path}:{SAFE_PATH}" if extra_path else SAFE_PATH
    return {"PATH": path, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", **extra}


@contextlib.contextmanager
def job(level: Level, prefix: str = "rlaif-job-", read_only: tuple[str, ...] = ()) -> Iterator[Job]:
    """A fresh temp dir (and at the namespaces level a fresh uid); removed (released) on exit.

    `read_only` names directories (the toolchain) that the namespace jail keeps visible,
    read-only; the other levels leave the filesystem as it is."""
    base = tempfile.mkdtemp(prefix=prefix)
    uid = jail.take_uid() if level.name == "namespaces" else None
    try:
        if uid is None:
            yield Job(base, level.name)
            return
        workdir, fstab = jail.prepare(base, uid, read_only)
        yield Job(workdir, level.name, uid, fstab)
    finally:
        _remove_tree(base)
        if uid is not None:
            jail.release_uid(uid)


def _remove_tree(path: str) -> None:
    """rmtree, once the owner may enter every dir again (a job may chmod its dirs to 000)."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for root, dirs, _ in os.walk(path):  # top-down: each dir is opened before it is walked
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


async def run_sandboxed(
    argv: list[str],
    *,
    job: Job,
    env: dict[str, str],
    timeout_s: float,
    cwd: str | None = None,
    limits: Limits | None = None,
    no_network: bool = False,
    max_output_bytes: int = 64 * 1024,
) -> ProcessResult:
    """Run `argv` in `job` at its level to completion or until killed; the code's failures are
    in the result, the harness's raise RuntimeError. `no_network` cuts the network where the
    level can (`Level.network_cut`); the posix level cannot, and says so when it is chosen."""
    cwd = cwd or job.workdir
    if job.level == "namespaces":
        return await _run_in_jail(
            argv,
            job,
            limits,
            no_network,
            cwd=cwd,
            env=env,
            timeout_s=timeout_s,
            max_output_bytes=max_output_bytes,
        )
    return await _run_limited(
        argv,
        job,
        limits or Limits(),
        cwd=cwd,
        env=env,
        timeout_s=timeout_s,
        max_output_bytes=max_output_bytes,
    )


async def _run_in_jail(
    argv: list[str],
    job: Job,
    limits: Limits | None,
    no_network: bool,
    *,
    cwd: str,
    env: dict[str, str],
    timeout_s: float,
    max_output_bytes: int,
) -> ProcessResult:
    """The namespaces level: `argv` (behind `prlimit` when there are `limits`) in a jail of its
    own (jail.py).

    The jail's shell leaves a mark once its mounts are set up (`jail.ready`), so an exit without
    the mark is the harness's failure (RuntimeError); a kill the shell reports as 128 + N is
    turned back into -N, as a process killed outside a jail reports it."""
    assert job.uid is not None and job.fstab is not None
    command = list(argv)
    if limits is not None:  # a uid of its own starts from zero processes: no base to add
        command = jail.limit_args(limits) + command
    command = jail.jail_command(command, job.fstab, job.uid, cwd, no_network)
    jail.ready(job.fstab, reset=True)
    result = await _run(command, cwd, env, timeout_s, max_output_bytes, ())
    if result.timed_out or result.output_capped:
        await jail.reap_uid(job.uid)
    if not jail.ready(job.fstab):
        # Not the code's failure: the sample must be left out (NaN), not scored as bad code.
        raise RuntimeError(
            f"the jail could not be set up (exit {result.returncode}): {result.stderr[-500:]}"
        )
    if result.returncode is not None and result.returncode > 128:
        # The jail's shell reports "killed by N" as 128 + N.
        result = dataclasses.replace(result, returncode=128 - result.returncode)
    return result


async def _run_limited(
    argv: list[str],
    job: Job,
    limits: Limits,
    *,
    cwd: str,
    env: dict[str, str],
    timeout_s: float,
    max_output_bytes: int,
) -> ProcessResult:
    """The posix and seatbelt levels: `argv` behind limited_exec.py (`_limited_command`).

    limited_exec.py writes one byte to a pipe once the limits are set, just before it execs
    `argv`; without that byte a limit could not be set or the child did not start at all,
    which is the harness's failure (RuntimeError), not the code's."""
    read_end, write_end = os.pipe()
    try:
        command = await _limited_command(argv, job, limits, write_end)
        result = await _run(command, cwd, env, timeout_s, max_output_bytes, (write_end,))
        os.close(write_end)
        write_end = -1
        os.set_blocking(read_end, False)  # never wait on the event loop, whatever went wrong
        try:
            ready = os.read(read_end, 1) == b"1"  # the child is gone: its byte, or EOF
        except BlockingIOError:
            ready = False
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if not ready:
        raise RuntimeError(
            f"the {job.level} sandbox could not start the command (exit {result.returncode}): "
            f"{result.stderr[-500:]}"
        )
    return result


async def _limited_command(argv: list[str], job: Job, limits: Limits, ready_fd: int) -> list[str]:
    """limited_exec.py in front of `argv` (inside sandbox-exec at the seatbelt level)."""
    nproc = None
    if limits.processes is not None:
        # Root is not bound by RLIMIT_NPROC at all (a gap the level lists); anyone else is
        # bound by the count of all their processes, so the job gets its allowance on top.
        nproc = limits.processes + (0 if os.geteuid() == 0 else await tasks_of_account())
    memory = None if sys.platform == "darwin" else limits.memory_mb  # macOS ignores RLIMIT_AS
    values = [limits.cpu_s, memory, limits.file_mb, nproc]
    child = [sys.executable, "-I", "-S", "-B", LIMITED_EXEC, str(ready_fd)]
    child += ["-" if v is None else str(v) for v in values] + ["--", *argv]
    if job.level == "seatbelt":
        return seatbelt.command(child, job.workdir)
    return child


async def tasks_of_account() -> int:
    """What RLIMIT_NPROC counts for this real uid now: its processes, and on Linux also their
    threads. Counted with `ps` (POSIX; on Linux it reads /proc itself, on macOS sysctl)."""
    uid = str(os.getuid())
    linux = sys.platform.startswith("linux")
    argv = ["ps", "-L", "-U", uid, "-o", "lwp="] if linux else ["ps", "-U", uid, "-o", "pid="]
    done = await anyio.run_process(argv, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
        raise RuntimeError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
    return len(done.stdout.split())


async def _run(
    command: list[str],
    cwd: str,
    env: dict[str, str],
    timeout_s: float,
    max_output_bytes: int,
    pass_fds: tuple[int, ...],
) -> ProcessResult:
    """Run `command` in a new session: drain its output up to the cap, kill its process group
    at the timeout, on a flood, on cancellation and once more after it exits."""
    start = time.perf_counter()
    out, err = bytearray(), bytearray()
    capped = timed_out = False
    process = await anyio.open_process(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        pass_fds=pass_fds,
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
    return ProcessResult(
        returncode=None if timed_out or capped else process.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        output_capped=capped,
        seconds=time.perf_counter() - start,
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def signal_name(returncode: int | None) -> str | None:
    """'SIGKILL' for -9 and so on; None when the process was not killed by a signal."""
    if returncode is None or returncode >= 0:
        return None
    with contextlib.suppress(ValueError):
        return signal.Signals(-returncode).name
    return f"signal {-returncode}"
