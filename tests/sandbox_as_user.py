"""Run one command at the posix sandbox level and print its ProcessResult as JSON.

tests/test_sandbox.py starts this as an unprivileged user (`setpriv` to nobody) where the tests
run as root, because RLIMIT_NPROC does not bind root: only as another user can a fork bomb or
a thread explosion show that the posix level's process limit holds. It also records whether
this process opened anything under /proc (the posix level must not: macOS has no /proc).

    python sandbox_as_user.py TIMEOUT_S PROCESSES -- COMMAND ARGS...
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import anyio

from rlaif.judges.rust import sandbox
from rlaif.judges.rust.sandbox_levels import resolve

proc_reads: list[str] = []


def audit(event: str, args: tuple) -> None:
    if event in ("open", "os.scandir", "os.listdir") and args and args[0] is not None:
        path = args[0]
        if isinstance(path, str | bytes | os.PathLike) and os.fsdecode(path).startswith("/proc"):
            proc_reads.append(os.fsdecode(path))


async def main(timeout_s: float, processes: int, argv: list[str]) -> dict:
    with sandbox.job(resolve("posix")) as job:
        result = await sandbox.run_sandboxed(
            argv,
            job=job,
            env=sandbox.scrubbed_env(job.workdir),
            timeout_s=timeout_s,
            limits=sandbox.Limits(cpu_s=5, memory_mb=1024, processes=processes),
        )
    return {**dataclasses.asdict(result), "uid": os.getuid(), "proc_reads": proc_reads}


if __name__ == "__main__":
    timeout, processes, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    sys.addaudithook(audit)
    print(json.dumps(anyio.run(main, float(timeout), int(processes), command)))
