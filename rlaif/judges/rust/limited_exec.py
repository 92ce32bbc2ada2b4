"""The child side of the "posix" and "seatbelt" sandbox levels: set limits, say so, exec.

    python -I -S -B limited_exec.py READY_FD CPU_S MEMORY_MB FILE_MB NPROC -- COMMAND ARGS...

("-" for a limit that is not set). A fresh interpreter rather than a `preexec_fn`: the trainer
runs threads (torch, anyio's workers), and Python code between fork() and exec() in a threaded
process can deadlock; a new process has one thread. It imports only the standard library and
nothing of rlaif, so `-I -S` (no site, no user paths) starts it in ~20 ms.

Limits go through `resource.setrlimit`, the POSIX call, never clamped above the hard limits
already in force (a non-root process may not raise them; a lower limit is only stricter):
- CPU seconds: soft N sends SIGXCPU (callers read it as "out of CPU time"), hard N + 1 kills;
- address space, where the OS enforces it (the parent passes "-" on macOS, which does not);
- file size (a larger write gets SIGXFSZ), and no core files;
- processes: RLIMIT_NPROC counts every process (on Linux also every thread) of the real uid,
  so the parent passes what the account runs already plus the job's allowance.

Only once every limit is set does it write one byte to READY_FD and close it, then exec: the
command never holds that pipe, so it can neither fake a successful setup nor a failed one (a
command that exits as this script does on failure is still the code's own exit).
"""

import os
import resource
import sys

FAILED = 126  # exit status when a limit cannot be set (the parent reads the missing byte)


def _set(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def main(argv: list[str]) -> None:
    ready_fd, cpu_s, memory_mb, file_mb, nproc, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(f"usage: {__doc__.splitlines()[2].strip()}")
    try:
        _set(resource.RLIMIT_CORE, 0)
        if cpu_s != "-":
            _set(resource.RLIMIT_CPU, int(cpu_s), int(cpu_s) + 1)
        if memory_mb != "-":
            _set(resource.RLIMIT_AS, int(memory_mb) * 2**20)
        if file_mb != "-":
            _set(resource.RLIMIT_FSIZE, int(file_mb) * 2**20)
        if nproc != "-":
            _set(resource.RLIMIT_NPROC, int(nproc))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"rlaif sandbox: a resource limit could not be set: {exc}\n")
        os._exit(FAILED)
    os.write(int(ready_fd), b"1")
    os.close(int(ready_fd))
    try:
        os.execvp(command[0], command)  # PATH from the scrubbed environment
    except OSError as exc:
        sys.stderr.write(f"rlaif sandbox: cannot run {command[0]}: {exc}\n")
        os._exit(127)  # as a shell says "command not found": the command's failure


if __name__ == "__main__":
    main(sys.argv[1:])
