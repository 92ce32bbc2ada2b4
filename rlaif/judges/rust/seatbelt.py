"""The "seatbelt" sandbox level's profile: macOS `sandbox-exec` with no network and writes only
inside the job dir.

UNTESTED ON A MAC. Nobody has run this on macOS yet: it is written from Apple's documented
`sandbox-exec` behaviour and how OpenAI's Codex CLI confines commands (`/usr/bin/sandbox-exec
-p PROFILE -DNAME=VALUE -- command`, paths passed as parameters and canonicalised because
/var and /tmp are symlinks into /private). On Linux the tests check only the text made here.
If the profile is wrong on some macOS release, the smoke job that `python -m rlaif doctor` and
`python -m rlaif train` run first fails, and the run does not start: `rust.sandbox: posix`
then runs without it (and says what that leaves uncovered).

The profile starts from `(allow default)` and denies only what this level promises to cut,
because the toolchain behind rustc on a Mac (`cc` -> xcrun -> clang -> ld) uses system
services that a deny-by-default profile would have to list one by one, untested:
- network: every socket operation (`network*`), so a test binary cannot reach anything;
- writes: everywhere but the job dir and a few character devices (/dev/null ...). SBPL applies
  the last rule that matches, so the allow for the job dir comes after the deny.
Reads, process creation, IPC and system services are left as they are (sandbox.py lists
what that leaves uncovered). Resource limits come from limited_exec.py, inside the profile:
the order is sandbox-exec -> limited_exec.py -> command, so a sandbox-exec that cannot apply
the profile never reports the limits as set.
"""

from __future__ import annotations

import os

SANDBOX_EXEC = "/usr/bin/sandbox-exec"  # never from PATH: a planted one would confine nothing
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/dtracehelper")


def profile() -> str:
    """The profile text; the job dir comes in as the JOB_DIR parameter (`command`)."""
    devices = " ".join(f'(literal "{d}")' for d in WRITABLE_DEVICES)
    return "\n".join(
        [
            "(version 1)",
            "(allow default)",
            "(deny network*)",
            "(deny file-write*)",
            '(allow file-write* (subpath (param "JOB_DIR")))',
            f"(allow file-write* {devices})",
            "",
        ]
    )


def command(argv: list[str], job_dir: str) -> list[str]:
    """`argv` under the profile, writable only in `job_dir` (canonicalised: /private/var/...)."""
    return [SANDBOX_EXEC, "-p", profile(), f"-DJOB_DIR={os.path.realpath(job_dir)}", "--", *argv]
