"""Tasks from JSONL files, validated line by line.

Format, one JSON object per line:
    {"id": "sum_of_evens", "prompt": "...", "tests": "#[test] fn ...", "difficulty": "easy",
     "reference": "fn sum_of_evens(...) { ... }"}
`id`, `prompt`, `tests` and `difficulty` are required, `reference` is optional. Every problem in a
file is reported together, each as `file:line: field: what is wrong`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .types import DIFFICULTIES, Task

REQUIRED = ("id", "prompt", "tests", "difficulty")
OPTIONAL = ("reference",)


class DataError(ValueError):
    """A task file that cannot be used; the message names file:line and field of each problem."""


def load_tasks(path: str | Path) -> list[Task]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the task file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    tasks: list[Task] = []
    errors: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        task = _parse_line(line, where, errors)
        if task is None:
            continue
        if task.id in first_seen:
            errors.append(f"{where}: id: {task.id!r} already used on line {first_seen[task.id]}")
            continue
        first_seen[task.id] = number
        tasks.append(task)
    if not tasks and not errors:
        errors.append(f"{path}: no tasks in the file")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise DataError("\n".join(shown))
    return tasks


def _parse_line(line: str, where: str, errors: list[str]) -> Task | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        errors.append(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})")
        return None
    if not isinstance(row, dict):
        errors.append(f"{where}: expected a JSON object, got {type(row).__name__}")
        return None
    try:
        return task_from_row(row, where)
    except DataError as exc:
        errors.extend(str(exc).split("\n"))
        return None


def task_from_row(row: dict, where: str) -> Task:
    """One task from a parsed JSON row; raises DataError naming `where` and each bad field."""
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
