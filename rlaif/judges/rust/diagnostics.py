"""Reading what rustc and libtest print: JSON diagnostics in, counts of tests out.

Pure text in, records out: nothing here runs a process, so each rule can be tried on crafted
output. `parse_diagnostics` reads `rustc --error-format=json` (clippy-driver's lints included,
named `clippy::...`) and leaves out the summary lines ("aborting due to ...", "N warnings
emitted"), which carry no code and would be counted as one more error or warning.
`parse_test_output` reads libtest's plain output, also when the test binary was killed before
its summary line. `jobs` runs the processes whose output this reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_SUMMARY = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")
_RUNNING = re.compile(r"^running (\d+) tests?$", re.MULTILINE)
_PASSED_LINE = re.compile(r"^test \S+ \.\.\. ok$", re.MULTILINE)


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "error" or "warning"
    code: str | None  # "E0425", a lint name ("unused_variables", "clippy::needless_return"), None
    message: str
    rendered: str
    line: int | None = None  # first line of the primary span, when it has one

    @property
    def is_clippy(self) -> bool:
        return bool(self.code and self.code.startswith("clippy::"))


def parse_diagnostics(stderr: str) -> list[Diagnostic]:
    """rustc's JSON diagnostics, without the summary lines ("aborting due to ...")."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        level, message = item.get("level"), item.get("message", "")
        if level not in ("error", "warning"):
            continue  # notes, help and "failure-note" lines
        if item.get("code") is None and _is_summary(message):
            continue
        code = (item.get("code") or {}).get("code")
        primary = [s for s in item.get("spans") or [] if s.get("is_primary")]
        line = primary[0].get("line_start") if primary else None
        found.append(Diagnostic(level, code, message, item.get("rendered") or message, line))
    return found


def _is_summary(message: str) -> bool:
    return message.startswith("aborting due to") or bool(
        re.fullmatch(r"\d+ warnings? emitted", message)
    )


def parse_test_output(stdout: str, expected_total: int) -> tuple[int, int]:
    """(tests run, tests passed) from libtest's plain output, even when it was cut short."""
    running = _RUNNING.search(stdout)
    total = int(running.group(1)) if running else expected_total
    summary = _SUMMARY.search(stdout)
    passed = int(summary.group(1)) if summary else len(_PASSED_LINE.findall(stdout))
    return total, passed
