"""Run one untrusted process: a jail, a scrubbed environment, limits, a timeout, capped output.

Everything that compiles or runs model-written code goes through `run_sandboxed`, inside a `Job`
(a temp dir of its own, removed afterwards, and an unprivileged uid of its own).

Two levels, picked once per process by probing what the OS allows (`jail_level()`):

"namespaces" (root, with `unshare` and `setpriv`; the project's machines):
- Processes: a fresh PID namespace (`unshare --pid --fork --kill-child`). When the namespace's
  first process (a `sh` that waits for the command) dies, the kernel kills every process left
  in it, so nothing survives a job, even a process that left its group with setsid(); a killed
  jail returns only once no process of the job's uid is left. `unshare` itself gets a parent-death
  signal, so a job dies with the process that started it even when that one is killed outright.
  RLIMIT_NPROC does not bind root, so the command runs as a uid of its own (`setpriv`), one per
  concurrent job, where the `processes` limit does bind: a fork bomb or a thread explosion hits
  EAGAIN (measured: tests/test_sandbox.py) and cannot starve other jobs of their slots.
- Files: a private mount namespace in which /tmp, /var/tmp, /dev/shm, /run, /home and /root are
  empty tmpfs mounts that vanish with the job; only the job dir (read-write) and the toolchain
  (read-only) are bound back in, all by one `mount -a` from a root-only fstab beside the job dir.
  As an unprivileged uid the command cannot write anywhere else that outlives the job, nor read
  root-only files (API key files in /root, other processes' environments). It can read what
  every user can read (/etc/passwd, world-readable files of the project).
- Cost: 20 to 60 ms a job of three or four jailed processes on a busy 2-core machine
  (bench/RESULTS.md).
- Network: a fresh network namespace (only an unconfigured loopback) when `no_network` is set.

"basic" (anything else, e.g. a developer's unprivileged account): the host's filesystem and
processes; network isolation via `unshare --user --net` where user namespaces are allowed.
RLIMIT_NPROC binds a non-root user, but it counts every process and thread the user already runs
(a desktop session has hundreds), so there the limit is set to that count plus `processes`:
a fork bomb still stops, a little later, and concurrent jobs share the headroom. As root outside
the jail, nothing limits processes: only the timeout and the process-group kill remain.

At both levels:
- Environment: only PATH, HOME, TMPDIR and LANG (HOME and TMPDIR point at the job dir), so API
  keys and user secrets in the parent's environment are not visible.
- Time: a wall-clock timeout; the process runs in a new session and its whole process group is
  SIGKILLed at the timeout, on cancellation, and once more after it exits.
- Resources (`Limits`, through util-linux `prlimit`): CPU seconds, address space, file size and
  processes (threads count as processes).
- Output: stdout and stderr are each capped; a process that floods them is killed.

Not covered: memory and process counts by cgroup (this machine has cgroup v1 controllers, but the
host's cgroup tree is left alone: the address-space limit and a uid per job give the bounds),
disk use of the job dir beyond the per-file limit, a job's CPU time summed over its processes
(RLIMIT_CPU is per process; the wall-clock timeout bounds the rest), reading world-readable
files, and kernel exploits.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
from anyio.abc import ByteReceiveStream

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Emptied (a fresh tmpfs each) inside the jail: the world-writable dirs and the homes.
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/root")
TMPFS_MB = 64  # size of each of those tmpfs mounts
# Job uids: far above any real account, and per parent process, so that two trainers on one
# host do not share a uid (RLIMIT_NPROC counts a uid's processes host-wide).
UID_BASE = 1_500_000_000
UIDS_PER_PROCESS = 1000
READY_FILE = "jail-ready"


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
    """One job's own temp dir and uid (uid None at the basic level: the caller's own).

    At the namespace level the job's tree is `base/` (root's, 0711) holding `work/` (the job
    uid's: the only place its processes may write) and `jail.fstab` (root's, 0600: the mounts
    of the jail, out of the job's reach).
    """

    workdir: str
    uid: int | None
    fstab: str | None = None


def scrubbed_env(workdir: str, extra_path: str | None = None, **extra: str) -> dict[str, str]:
    """The whole environment a sandboxed process sees; nothing is inherited from the parent."""
    path = f"{extra_path}:{SAFE_PATH}" if extra_path else SAFE_PATH
    return {"PATH": path, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", **extra}


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


@contextlib.contextmanager
def job(prefix: str = "rlaif-job-", read_only: tuple[str, ...] = ()) -> Iterator[Job]:
    """A fresh temp dir owned by a fresh uid; both are released (dir removed) on exit.

    `read_only` names directories (the toolchain) that the jail keeps visible, read-only."""
    base = tempfile.mkdtemp(prefix=prefix)
    uid = _take_uid() if jail_level() == "namespaces" else None
    try:
        if uid is None:
            yield Job(base, None)
            return
        os.chmod(base, 0o711)
        workdir = os.path.join(base, "work")
        os.mkdir(workdir, 0o700)
        os.chown(workdir, uid, uid)
        fstab = os.path.join(base, "jail.fstab")
        with open(os.open(fstab, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(_jail_fstab(workdir, read_only))
        yield Job(workdir, uid, fstab)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if uid is not None:
            with _uid_lock:
                _uids_in_use.discard(uid)


def _take_uid() -> int:
    base = UID_BASE + (os.getpid() % 1000) * UIDS_PER_PROCESS
    with _uid_lock:
        for uid in itertools.count(base):
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise AssertionError("unreachable")


@functools.cache
def jail_level() -> str:
    """'namespaces' where this process may build the full jail, else 'basic' (probed once)."""
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() != 0 or unshare is None or setpriv is None:
        return "basic"
    probe = [
        unshare,
        *_NAMESPACE_FLAGS,
        "--net",
        "/bin/sh",
        "-c",
        f"mount -t tmpfs -o size=1m tmpfs /tmp && exec {setpriv} --reuid={UID_BASE} "
        f"--regid={UID_BASE} --clear-groups true",
    ]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return "namespaces" if ok else "basic"


_NAMESPACE_FLAGS = ("--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private")


@functools.cache
def network_isolation_prefix() -> tuple[str, ...]:
    """At the basic level: the prefix that runs a process without network, or () if refused."""
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


def _limit_args(limits: Limits, own_uid: bool) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError(
            "util-linux `prlimit` is needed to limit sandboxed processes; install util-linux"
        )
    args = [prlimit]
    if limits.cpu_s is not None:
        # Soft limit N sends SIGXCPU (which callers read as "out of CPU time"); hard N+1 kills.
        args.append(f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}")
    if limits.memory_mb is not None:
        args.append(f"--as={limits.memory_mb * 2**20}")
    if limits.file_mb is not None:
        args.append(f"--fsize={limits.file_mb * 2**20}")
    if limits.processes is not None:
        # A uid of its own starts from zero; the caller's uid already runs tasks of its own.
        base = 0 if own_uid else tasks_of_uid(os.geteuid())
        args.append(f"--nproc={base + limits.processes}")
    return [*args, "--"]


def tasks_of_uid(uid: int) -> int:
    """Processes and threads `uid` runs now (what RLIMIT_NPROC counts), from /proc."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue  # exited while we looked
    return count


def _jail_fstab(workdir: str, read_only: tuple[str, ...]) -> str:
    """The jail's mounts, in order, as one fstab for a single `mount -a` (one process, not ten).

    First an empty tmpfs over each of HIDDEN_DIRS, then the kept directories bound back at their
    own paths from /proc/self/fd/N: the jail's shell opens them (fd 3, 4, ...) before the tmpfs
    mounts hide their names, and the fd still points at the real directory. `mount -a` reads the
    whole table before mounting, so the table may itself live in a hidden directory.
    """

    def field(path: str) -> str:  # fstab escapes whitespace as octal
        return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")

    lines = [
        # The source name is ours: `mount -a` skips an entry whose source is already mounted on
        # its target, and a host's /dev/shm is often "tmpfs" already.
        f"rlaif-jail {field(d)} tmpfs size={TMPFS_MB}m,mode=1777,nosuid,nodev 0 0"
        for d in HIDDEN_DIRS
        if os.path.isdir(d) and not os.path.islink(d)
    ]
    keep = [(workdir, "bind"), *((d, "bind,ro") for d in read_only)]
    lines += [
        f"/proc/self/fd/{3 + i} {field(path)} none {options},X-mount.mkdir 0 0"
        for i, (path, options) in enumerate(keep)
    ]
    return "\n".join(lines) + "\n"


def _jail_command(argv: list[str], job: Job, cwd: str, no_network: bool) -> list[str]:
    """The full jail around `argv` (see the module docstring and `_jail_fstab`)."""
    assert job.fstab is not None
    with open(job.fstab) as f:
        kept = [_unescape(line.split()[1]) for line in f if line.startswith("/proc/self/fd/")]
    # fd 3, 4, ...: the kept dirs (as the fstab expects), then the job's base dir, where the
    # shell leaves READY_FILE once the mounts are in place: the jailed command never holds that
    # fd nor sees that dir, so it cannot fake a successful setup (see `run_sandboxed`).
    base_fd = 3 + len(kept)
    assert base_fd <= 9, "sh redirects single-digit fds only"
    opens = " ".join(f"{3 + i}< {shlex.quote(p)}" for i, p in enumerate(kept))
    closes = " ".join(f"{fd}<&-" for fd in range(3, base_fd + 1))
    uid = job.uid
    script = "\n".join(
        [
            "set -e",
            f"exec {opens} {base_fd}< {shlex.quote(os.path.dirname(job.fstab))}",
            f"mount -a -c -T {shlex.quote(job.fstab)}",
            f": > /proc/self/fd/{base_fd}/{READY_FILE}",
            f"exec {closes}",
            f"cd {shlex.quote(cwd)}",
            # Not `exec`: the shell stays PID 1 of the namespace, so the command gets the default
            # signal handling (the kernel shields a namespace's PID 1 from its own signals).
            f"set +e; {shutil.which('setpriv')} --reuid={uid} --regid={uid} --clear-groups "
            f'--no-new-privs -- "$@"; exit $?',
        ]
    )
    unshare = shutil.which("unshare") or "unshare"
    # pdeathsig: should this process die without killing the job (kill -9, a second Ctrl-C),
    # the kernel kills `unshare`, whose --kill-child then takes the whole namespace with it.
    orphan_guard = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "KILL", "--"]
    prefix = [*orphan_guard, unshare, *_NAMESPACE_FLAGS, *(("--net",) if no_network else ())]
    return [*prefix, "/bin/sh", "-c", script, "rlaif-jail", *argv]


def _jail_ready(job: Job, reset: bool = False) -> bool:
    """Whether the jail's shell finished its setup (see `_jail_command`); `reset` clears it."""
    assert job.fstab is not None
    path = os.path.join(os.path.dirname(job.fstab), READY_FILE)
    if reset:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    return os.path.exists(path)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


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
    """Run `argv` in `job`'s jail to completion or until killed; failures are in the result."""
    cwd = cwd or job.workdir
    command = list(argv)
    jailed = job.uid is not None
    if limits is not None:
        command = _limit_args(limits, own_uid=jailed) + command
    if jailed:
        command = _jail_command(command, job, cwd, no_network)
        _jail_ready(job, reset=True)
    elif no_network:
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
    if jailed and killed:
        await _reap_uid(job.uid)
    if jailed and not _jail_ready(job):
        # Not the code's failure: the sample must be left out (NaN), not scored as bad code.
        tail = err.decode("utf-8", "replace")[-500:]
        raise RuntimeError(f"the jail could not be set up (exit {process.returncode}): {tail}")
    returncode = process.returncode
    if jailed and returncode is not None and returncode > 128:
        returncode = 128 - returncode  # the jail's shell reports "killed by N" as 128 + N
    return ProcessResult(
        returncode=None if killed else returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        output_capped=capped,
        seconds=time.perf_counter() - start,
    )


def pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                pids.append(int(entry.name))
        except OSError:
            continue  # exited while we looked
    return pids


async def _reap_uid(uid: int | None, timeout_s: float = 5.0) -> None:
    """Wait until no process of the job's uid is left (killing any that are).

    Killing the jail's outer process returns at once, while the kernel is still tearing down
    the PID namespace: its processes die a few milliseconds later. Waiting here means a job that
    returns has nothing left running, and its uid can be reused.
    """
    if uid is None:
        return
    with anyio.move_on_after(timeout_s), anyio.CancelScope(shield=True):
        while pids := pids_of_uid(uid):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await anyio.sleep(0.005)


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
