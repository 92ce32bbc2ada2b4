"""Which sandbox level runs here, chosen once and said out loud: `rust.sandbox`.

`resolve("auto")` picks the strongest level this machine offers (namespaces, then seatbelt,
then posix); naming a level that is not available is an error, never a quiet step down. The
`Level` it returns says whether the network is cut and lists what it leaves uncovered, by
property; `python -m rlaif doctor` and the first lines of `train` print them, and
tests/test_sandbox.py checks each property at each level this machine has (an attack is
either contained or listed here as not covered).

The properties, one attack each:
- network: a test binary cannot open a connection, even to this host's loopback;
- writes: files written outside the job dir do not outlive the job;
- reads: files private to the trainer's account (0600 keys, /root) cannot be read;
- processes / threads: a fork bomb / a thread explosion stops at `rust.test_processes`;
- memory: an allocation past `rust.test_memory_mb` fails;
- escape: a process that leaves the job's process group still dies with the job.
Every level covers the rest: a wall-clock timeout, CPU seconds, file size, capped output, a
scrubbed environment (no API keys), and a job dir of its own that is removed afterwards.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from rlaif.config import ConfigError
from rlaif.judges.rust import jail, seatbelt

LEVELS = ("namespaces", "seatbelt", "posix")  # strongest first: the order `auto` tries
CHOICES = ("auto", *LEVELS)
PROPERTIES = ("network", "writes", "reads", "processes", "threads", "memory", "escape")
# Left uncovered by every level (sandbox.py says why).
EVERYWHERE = (
    "memory and processes by cgroup, disk use of the job dir beyond the per-file limit, CPU "
    "summed over a job's processes, world-readable files, kernel exploits"
)


class SandboxUnavailable(ConfigError):
    """The requested level cannot run on this machine (a config problem: pick another)."""


@dataclass(frozen=True)
class Level:
    """A level as it runs here: its name, the request it answers, and its gaps."""

    name: str  # one of LEVELS
    requested: str = "auto"  # rust.sandbox as written
    gaps: dict[str, str] = field(default_factory=dict)  # property -> why it is not covered
    skipped: dict[str, str] = field(default_factory=dict)  # stronger level -> why unavailable

    @property
    def network_cut(self) -> bool:
        return "network" not in self.gaps

    def covers(self, prop: str) -> bool:
        assert prop in PROPERTIES, prop
        return prop not in self.gaps

    def lines(self) -> list[tuple[str, str]]:
        """(name, detail) of what `train` prints first and `doctor` reports: the level, whether
        the network is cut, and what is not covered."""
        why = "; ".join(f"{name}: {reason}" for name, reason in self.skipped.items())
        chosen = f"rust.sandbox={self.requested}" + (f"; not available: {why}" if why else "")
        network = "cut" if self.network_cut else "NOT cut (test binaries can reach the network)"
        by_reason: dict[str, list[str]] = {}  # "processes, threads: RLIMIT_NPROC ..." once
        for prop, reason in self.gaps.items():
            by_reason.setdefault(reason, []).append(prop)
        gaps = "".join(f"{', '.join(props)}: {reason}; " for reason, props in by_reason.items())
        return [
            ("sandbox", f"{self.name} ({chosen})"),
            ("sandbox network", network),
            ("sandbox not covered", f"{gaps}at every level: {EVERYWHERE}"),
        ]


def resolve(requested: str = "auto") -> Level:
    """The level `requested` names, or for "auto" the strongest available; raises
    SandboxUnavailable (naming the reason and the fix) when there is none."""
    if requested not in CHOICES:
        raise SandboxUnavailable(f"rust.sandbox={requested!r}: choose one of {', '.join(CHOICES)}")
    if requested != "auto":
        why = unavailable(requested)
        if why is not None:
            others = [name for name in LEVELS if unavailable(name) is None]
            fix = (
                f"set rust.sandbox to auto (here: {others[0]})"
                if others
                else "this machine offers no level"
            )
            raise SandboxUnavailable(
                f"rust.sandbox={requested} is not available here: {why}; {fix} "
                "(`python -m rlaif doctor` shows what runs)"
            )
        return Level(requested, requested, gaps(requested))
    skipped = {}
    for name in LEVELS:
        why = unavailable(name)
        if why is None:
            return Level(name, requested, gaps(name), skipped)
        skipped[name] = why
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    raise SandboxUnavailable(f"no sandbox level can run here ({reasons})")


@functools.cache
def unavailable(name: str) -> str | None:
    """Why level `name` cannot run in this process, or None (probed once per process)."""
    if name == "namespaces":
        if not sys.platform.startswith("linux"):
            return "Linux only"
        return jail.probe()
    posix = _posix_unavailable()
    if name == "posix" or posix is not None:
        return posix
    if sys.platform != "darwin" or not os.path.exists(seatbelt.SANDBOX_EXEC):
        return f"macOS only ({seatbelt.SANDBOX_EXEC} not found)"
    trial = [seatbelt.SANDBOX_EXEC, "-p", "(version 1)(allow default)", "/usr/bin/true"]
    try:
        done = subprocess.run(trial, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sandbox-exec does not run: {exc}"
    if done.returncode != 0:  # e.g. already inside a sandbox, which cannot be nested
        tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
        return f"sandbox-exec refused a trial profile (exit {done.returncode}: {tail})"
    return None


def _posix_unavailable() -> str | None:
    if os.name != "posix":
        return f"needs a POSIX system (this is {os.name})"
    if os.geteuid() != 0 and shutil.which("ps") is None:
        return "needs `ps` to count this account's processes for RLIMIT_NPROC"
    return None


def gaps(name: str) -> dict[str, str]:
    """What level `name` leaves uncovered on this machine (this OS, this uid)."""
    if name == "namespaces":
        return {}
    mac = sys.platform == "darwin"
    found: dict[str, str] = {}
    if name == "posix":
        found["network"] = "not cut"
        found["writes"] = "anywhere this account may write (/tmp, your home)"
    found["reads"] = "every file this account may read (only the environment is scrubbed)"
    if os.geteuid() == 0:
        why = "RLIMIT_NPROC does not bind root: run as an ordinary user"
        found["processes"] = found["threads"] = why
    elif mac:
        found["threads"] = "macOS's RLIMIT_NPROC counts processes, not threads"
    if mac:
        found["memory"] = "macOS does not enforce RLIMIT_AS"
    found["escape"] = (
        "a process that leaves the job's process group outlives the job (still under its CPU limit)"
    )
    return found
