"""`python -m rlaif score`: reward terms of completions from a JSONL file, without any model.

Each input line is a JSON object with a `completion` (the student's reply, as text) and either
- `task_id`: a task of the dataset (`data.train` and `data.eval` of the config, or `--tasks`), or
- the task itself, inline: the fields of a task file row (`id`, `prompt`, `tests`, ...).

Each output line carries, in input order, the line number, the task id, the reward, every reward
component, rustc's whole record, the syntax-tree metrics and the teacher's verdict (the teacher is
used when configured and its key is set, as in training). Every bad input line is reported
together, as `file:line: key: problem`, before anything is compiled. rustc results go through the
result cache (`cache.rust`), so scoring the same file twice compiles nothing the second time.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TextIO

import anyio

from rlaif import strict_json
from rlaif.config import Config
from rlaif.data.tasks import (
    DataError,
    json_object,
    load_tasks,
    numbered_lines,
    raise_if_any,
    task_from_row,
)
from rlaif.judges.rust.jobs import RustJudge, Toolchain, rust_cache
from rlaif.judges.scoring import Scorer
from rlaif.judges.teacher.client import Teacher
from rlaif.records.metrics import sample_record
from rlaif.student.extract import code_for_task
from rlaif.types import Sample, Scored, Task


def read_requests(path: Path, dataset: dict[str, Task] | None) -> list[tuple[int, Task, str]]:
    """(line number, task, completion) per non-blank line; DataError listing every bad line.

    `dataset` maps task ids to tasks; None means none was loaded (no line names a task_id).
    """
    requests, errors = [], []
    for number, where, line in numbered_lines(path, "input"):
        try:
            requests.append((number, *_request(json_object(line, where), where, dataset)))
        except DataError as exc:
            errors.extend(str(exc).split("\n"))
    if not requests and not errors:
        errors.append(f"{path}: no lines to score")
    raise_if_any(errors)
    return requests


def _request(row: dict, where: str, dataset: dict[str, Task] | None) -> tuple[Task, str]:
    completion = row.get("completion")
    if not isinstance(completion, str):
        raise DataError(
            f"{where}: completion: {'missing' if completion is None else 'expected a string'}"
        )
    if "task_id" in row:
        extra = sorted(set(row) - {"task_id", "completion"})
        if extra:
            raise DataError(f"{where}: {extra[0]}: unknown field beside task_id (only completion)")
        task = (dataset or {}).get(row["task_id"])
        if task is None:
            raise DataError(f"{where}: task_id: {row['task_id']!r} is not a task of the dataset")
        return task, completion
    fields = {k: v for k, v in row.items() if k != "completion"}
    return task_from_row(fields, where), completion


def needs_dataset(path: Path) -> bool:
    """Whether any line names a task_id (so the task files must be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the input: {exc}") from exc
    return '"task_id"' in text


def load_dataset(paths: list[str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for path in paths:
        for task in load_tasks(path):
            tasks.setdefault(task.id, task)
    return tasks


async def score_requests(
    config: Config,
    requests: list[tuple[int, Task, str]],
    toolchain: Toolchain,
    teacher: Teacher | None,
    concurrency: int,
) -> tuple[list[Scored], dict[str, float]]:
    """Score every request (in order) and return them with stats: seconds, cache hits, misses."""
    cache = rust_cache(config.cache)
    judge = RustJudge(toolchain, config.rust, concurrency, cache)
    scorer = Scorer(judge, teacher, config.rewards)
    samples = [
        Sample(task, 0, [], [], [], completion, code_for_task(task, completion), 0, True)
        for _, task, completion in requests
    ]
    start = time.perf_counter()
    try:
        scored = await scorer.score(samples)
    finally:
        if teacher is not None:
            await teacher.aclose()
        if cache is not None:
            cache.close()
    stats = {"seconds": time.perf_counter() - start}
    if cache is not None:
        stats.update(cache_hits=cache.stats.hits, cache_misses=cache.stats.misses)
    return scored, stats


def output_record(line: int, s: Scored) -> dict:
    """One output line: sample_record's fields, less the training-only ones, plus the input
    line it answers."""
    record = sample_record(0, s, math.nan)
    for key in ("step", "sample", "policy_version", "advantage", "finished"):
        record.pop(key, None)
    return {"line": line, **record}


def write_results(lines: list[int], scored: list[Scored], out: TextIO) -> None:
    for line, s in zip(lines, scored, strict=True):
        out.write(strict_json.dumps(output_record(line, s)) + "\n")


def run_score(
    config: Config,
    input_path: Path,
    tasks_path: str | None,
    toolchain: Toolchain,
    teacher: Teacher | None,
    concurrency: int,
) -> tuple[list[int], list[Scored], dict[str, float]]:
    """Read, check and score a whole input file: (input line numbers, results, stats).

    Raises DataError on bad lines, before anything is compiled."""
    dataset = None
    if needs_dataset(input_path):
        dataset = load_dataset(
            [tasks_path] if tasks_path else [config.data.train, config.data.eval]
        )
    requests = read_requests(input_path, dataset)
    scored, stats = anyio.run(score_requests, config, requests, toolchain, teacher, concurrency)
    return [number for number, _, _ in requests], scored, stats
