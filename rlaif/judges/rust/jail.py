"""The "namespaces" sandbox level: a jail of fresh Linux namespaces around each process.

Needs root with util-linux `unshare`, `setpriv` and `prlimit` (`probe` says whether this
machine can build it). What it covers, in short (sandbox.py has the table of every level):

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
- Network: a fresh network namespace (only an unconfigured loopback) when `no_network` is set.
- Limits: util-linux `prlimit` (CPU seconds, address space, file size, processes).
- Cost: 20 to 60 ms a job of three or four jailed processes on a busy 2-core machine
  (bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import threading
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from rlaif.judges.rust.sandbox import Limits  # sandbox imports this module

# Emptied (a fresh tmpfs each) inside the jail: the world-writable dirs and the homes.
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/root")
TMPFS_MB = 64  # size of each of those tmpfs mounts
# Job uids: far above any real account, and per parent process, so that two trainers on one
# host do not share a uid (RLIMIT_NPROC counts a uid's processes host-wide).
UID_BASE = 1_500_000_000
UIDS_PER_PROCESS = 1000
READY_FILE = "jail-ready"
JAIL_NAME = "rlaif-jail"  # the jail shell's argv[0]: `pgrep -f rlaif-jail` finds live jobs
NAMESPACE_FLAGS = ("--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private")


def probe() -> str | None:
    """Why this process cannot build the jail, or None when it can (one real jail is tried)."""
    if os.geteuid() != 0:
        return f"needs root (this process runs as uid {os.geteuid()})"
    tools = {name: shutil.which(name) for name in ("unshare", "setpriv", "prlimit")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        return f"util-linux {', '.join(missing)} not on PATH"
    attempt = [
        tools["unshare"],
        *NAMESPACE_FLAGS,
        "--net",
        "/bin/sh",
        "-c",
        f"mount -t tmpfs -o size=1m tmpfs /tmp && exec {tools['setpriv']} --reuid={UID_BASE} "
        f"--regid={UID_BASE} --clear-groups true",
    ]
    try:
        done = subprocess.run(attempt, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"a trial jail failed: {exc}"
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
        return f"a trial jail failed (exit {done.returncode}: {tail})"
    return None


_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def take_uid() -> int:
    """A job uid no other job of this process holds now."""
    base = UID_BASE + (os.getpid() % 1000) * UIDS_PER_PROCESS
    with _uid_lock:
        for uid in itertools.count(base):
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise AssertionError("unreachable")


def release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def prepare(base: str, uid: int, read_only: tuple[str, ...]) -> tuple[str, str]:
    """Lay out a job's tree under `base` (root's, 0711): `work/` (the job uid's: the only place
    its processes may write) and `jail.fstab` (root's, 0600: the jail's mounts, out of the job's
    reach). Returns (workdir, fstab)."""
    os.chmod(base, 0o711)
    workdir = os.path.join(base, "work")
    os.mkdir(workdir, 0o700)
    os.chown(workdir, uid, uid)
    fstab = os.path.join(base, "jail.fstab")
    with open(os.open(fstab, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(jail_fstab(workdir, read_only))
    return workdir, fstab


def limit_args(limits: Limits) -> list[str]:
    """util-linux `prlimit` in front of a command; the job's own uid starts from 0 processes,
    so `processes` is the whole limit."""
    args = [shutil.which("prlimit") or "prlimit"]
    if limits.cpu_s is not None:
        # Soft limit N sends SIGXCPU (which callers read as "out of CPU time"); hard N+1 kills.
        args.append(f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}")
    if limits.memory_mb is not None:
        args.append(f"--as={limits.memory_mb * 2**20}")
    if limits.file_mb is not None:
        args.append(f"--fsize={limits.file_mb * 2**20}")
    if limits.processes is not None:
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"]


def jail_fstab(workdir: str, read_only: tuple[str, ...]) -> str:
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
        f"{JAIL_NAME} {field(d)} tmpfs size={TMPFS_MB}m,mode=1777,nosuid,nodev 0 0"
        for d in HIDDEN_DIRS
        if os.path.isdir(d) and not os.path.islink(d)
    ]
    keep = [(workdir, "bind"), *((d, "bind,ro") for d in read_only)]
    lines += [
        f"/proc/self/fd/{3 + i} {field(path)} none {options},X-mount.mkdir 0 0"
        for i, (path, options) in enumerate(keep)
    ]
    return "\n".join(lines) + "\n"


def jail_command(argv: list[str], fstab: str, uid: int, cwd: str, no_network: bool) -> list[str]:
    """The full jail around `argv` (see the module docstring and `jail_fstab`)."""
    with open(fstab) as f:
        kept = [_unescape(line.split()[1]) for line in f if line.startswith("/proc/self/fd/")]
    # fd 3, 4, ...: the kept dirs (as the fstab expects), then the job's base dir, where the
    # shell leaves READY_FILE once the mounts are in place: the jailed command never holds that
    # fd nor sees that dir, so it cannot fake a successful setup (see `ready`).
    base_fd = 3 + len(kept)
    assert base_fd <= 9, "sh redirects single-digit fds only"
    opens = " ".join(f"{3 + i}< {shlex.quote(p)}" for i, p in enumerate(kept))
    closes = " ".join(f"{fd}<&-" for fd in range(3, base_fd + 1))
    script = "\n".join(
        [
            "set -e",
            f"exec {opens} {base_fd}< {shlex.quote(os.path.dirname(fstab))}",
            f"mount -a -c -T {shlex.quote(fstab)}",
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
    prefix = [*orphan_guard, unshare, *NAMESPACE_FLAGS, *(("--net",) if no_network else ())]
    return [*prefix, "/bin/sh", "-c", script, JAIL_NAME, *argv]


def ready(fstab: str, reset: bool = False) -> bool:
    """Whether the jail's shell finished its setup (see `jail_command`); `reset` clears it."""
    path = os.path.join(os.path.dirname(fstab), READY_FILE)
    if reset:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return False
    return os.path.exists(path)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                pids.append(int(entry.name))
        except OSError:
            continue  # exited while we looked
    return pids


async def reap_uid(uid: int, timeout_s: float = 5.0) -> None:
    """Wait until no process of the job's uid is left (killing any that are).

    Killing the jail's outer process returns at once, while the kernel is still tearing down
    the PID namespace: its processes die a few milliseconds later. Waiting here means a job that
    returns has nothing left running, and its uid can be reused.
    """
    with anyio.move_on_after(timeout_s), anyio.CancelScope(shield=True):
        while pids := pids_of_uid(uid):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await anyio.sleep(0.005)
