"""Tasks from JSONL files, validated line by line, in our own format or MultiPL-E's.

Our format, one JSON object per line:
    {"id": "sum_of_evens", "prompt": "...", "tests": "#[test] fn ...", "difficulty": "easy",
     "reference": "fn sum_of_evens(...) { ... }"}
`id`, `prompt`, `tests` and `difficulty` are required, `reference` is optional.

MultiPL-E's format (the public HumanEval and MBPP translations to Rust; REFERENCE.md) is told
apart per row by its `name` and `language` fields:
    {"name": "HumanEval_53_add", "language": "rs", "prompt": "/// Add x and y\\nfn add(...) {\\n",
     "tests": "}\\n\\nfn main() { ... assert_eq!(...) ... }", "stop_tokens": ["\\n}"]}
`tests` may be called `test`, and in some releases it starts with the `}` that closes the
function: that brace is dropped here, so a task's tests are always a whole `fn main()`.
`entry_point` is read when present, else taken from the prompt's last `fn`; `difficulty` defaults
to "medium". Other fields of those releases (`doctests`, `original`, ...) are metadata and ignored.
Such a task runs under the "main" harness: the program is the function plus the tests' `main`,
and it passes when it exits 0.

Every problem in a file is reported together, each as `file:line: field: what is wrong`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rlaif.types import DIFFICULTIES, Task

REQUIRED = ("id", "prompt", "tests", "difficulty")
OPTIONAL = ("reference",)
MULTIPL_E_LANGUAGES = ("rs", "rust")
MULTIPL_E_DIFFICULTY = "medium"  # MultiPL-E rows carry no difficulty; a field may override it
MULTIPL_E_STOP_TOKENS = ("\n}",)
_LAST_FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")
_CLOSING_BRACE = re.compile(r"\A\s*\}")
MULTIPL_E_REQUEST = (
    "Complete this Rust function. Keep its signature and doc comment as given.\n\n"
    "```rust\n{prefix}\n```"
)


class DataError(ValueError):
    """A task file that cannot be used; the message names file:line and field of each problem."""


MAX_SHOWN_ERRORS = 20  # problems listed in one DataError; the rest are counted


def numbered_lines(path: str | Path, what: str) -> list[tuple[int, str, str]]:
    """(line number, "file:line", text) of each non-blank line of a JSONL file; DataError naming
    the file (as "the `what`") when it cannot be read as UTF-8 text."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return [(n, f"{path}:{n}", line) for n, line in enumerate(lines, start=1) if line.strip()]


def raise_if_any(errors: list[str]) -> None:
    """One DataError listing every problem, one per line (the first MAX_SHOWN_ERRORS)."""
    if errors:
        extra = len(errors) - MAX_SHOWN_ERRORS
        shown = errors[:MAX_SHOWN_ERRORS] + ([f"... and {extra} more"] if extra > 0 else [])
        raise DataError("\n".join(shown))


def load_tasks(path: str | Path) -> list[Task]:
    tasks: list[Task] = []
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    for number, where, line in numbered_lines(path, "task file"):
        try:
            task = task_from_row(json_object(line, where), where)
        except DataError as exc:
            errors.extend(str(exc).split("\n"))
            continue
        if task.id in first_seen:
            errors.append(f"{where}: id: {task.id!r} already used on line {first_seen[task.id]}")
            continue
        first_seen[task.id] = number
        tasks.append(task)
    if not tasks and not errors:
        errors.append(f"{path}: no tasks in the file")
    raise_if_any(errors)
    return tasks


def json_object(line: str, where: str) -> dict:
    """One JSONL line as a dict; DataError naming `where` otherwise."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def is_multipl_e(row: dict[str, Any]) -> bool:
    """MultiPL-E rows name their task `name` and their language `language`; ours use `id`."""
    return "id" not in row and ("name" in row or "language" in row)


def task_from_row(row: dict, where: str) -> Task:
    """One task from one parsed row of either format; `where` ("file:line") prefixes messages.

    Raises DataError listing every problem of the row, one per line, each naming its field.
    """
    if is_multipl_e(row):
        return _multipl_e_task(row, where)
    problems = []
    for name in REQUIRED:
        if name not in row:
            problems.append(f"{where}: {name}: missing")
        elif not isinstance(row[name], str) or not row[name].strip():
            problems.append(f"{where}: {name}: expected a non-empty string")
    if isinstance(row.get("difficulty"), str) and row["difficulty"] not in DIFFICULTIES:
        problems.append(f"{where}: difficulty: {row['difficulty']!r} is not one of {DIFFICULTIES}")
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        problems.append(f"{where}: reference: expected a string")
    for name in row:
        if name not in REQUIRED + OPTIONAL:
            problems.append(
                f"{where}: {name}: unknown field (known: {', '.join(REQUIRED + OPTIONAL)})"
            )
    if problems:
        raise DataError("\n".join(problems))
    return Task(
        id=row["id"],
        prompt=row["prompt"],
        tests=row["tests"],
        difficulty=row["difficulty"],
        reference=reference,
        source=where,
    )


def _multipl_e_task(row: dict[str, Any], where: str) -> Task:
    problems = []

    def text(name: str) -> str:
        value = row.get(name)
        if name not in row:
            problems.append(f"{where}: {name}: missing (a MultiPL-E row)")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: {name}: expected a non-empty string")
        else:
            return value
        return ""

    name = text("name")
    prefix = text("prompt")
    if "tests" in row and "test" in row:
        problems.append(f"{where}: test: give `tests` or `test`, not both")
    tests = text("tests" if "tests" in row or "test" not in row else "test")
    language = row.get("language")
    if language not in MULTIPL_E_LANGUAGES:
        problems.append(
            f"{where}: language: {language!r} is not Rust (expected one of {MULTIPL_E_LANGUAGES})"
        )
    if prefix and not prefix.rstrip().endswith("{"):
        problems.append(f"{where}: prompt: must end with the `{{` that opens the function body")
    stop_tokens = row.get("stop_tokens", list(MULTIPL_E_STOP_TOKENS))
    if (
        not isinstance(stop_tokens, list)
        or not stop_tokens
        or not all(isinstance(t, str) and t for t in stop_tokens)
    ):
        problems.append(f"{where}: stop_tokens: expected a non-empty list of non-empty strings")
    entry_point = row.get("entry_point")
    if entry_point is None and prefix:
        found = _LAST_FN.findall(prefix)
        entry_point = found[-1] if found else None
        if entry_point is None:
            problems.append(f"{where}: prompt: no `fn NAME` in it (or give entry_point)")
    elif entry_point is not None and (
        not isinstance(entry_point, str) or not re.fullmatch(r"[A-Za-z_]\w*", entry_point)
    ):
        problems.append(f"{where}: entry_point: expected a Rust function name")
    difficulty = row.get("difficulty", MULTIPL_E_DIFFICULTY)
    if difficulty not in DIFFICULTIES:
        problems.append(f"{where}: difficulty: {difficulty!r} is not one of {DIFFICULTIES}")
    if problems:
        raise DataError("\n".join(problems))
    # The variant whose tests open with the function's closing brace: the judge closes the
    # function itself (code_for_task), so the tests keep only their `fn main`.
    tests = _CLOSING_BRACE.sub("", tests, count=1).strip("\n") + "\n"
    return Task(
        id=name,
        prompt=MULTIPL_E_REQUEST.format(prefix=prefix.rstrip()),
        tests=tests,
        difficulty=difficulty,
        reference=None,
        source=where,
        harness="main",
        prefix=prefix,
        entry_point=entry_point,
        stop_tokens=tuple(stop_tokens),
    )
