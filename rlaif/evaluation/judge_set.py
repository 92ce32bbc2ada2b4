"""The labelled set `judge-check` grades: completions of training tasks with what their hidden
tests say, as JSONL records

    {"task_id", "code", "source": "reference" | "mutant" | "student", "compiles": bool,
     "tests_passed": fraction of the hidden tests that pass (null when it does not compile),
     "all_pass": bool}

(mutants also carry a "mutation" note). Labels come from the real rustc judge (`jobs.RustJudge`,
the task's hidden tests, in the sandbox), never from a guess; a record whose job had no verdict
(`sandbox_error`) is left out. Only training tasks are used: data.eval is held out, and a set
built from it would tune the judge on it. The three sources: task references (which pass),
wrong-but-compiling mutants of them (one site each: a flipped comparison, an integer off by one,
`+` for `-`, `*` for `/`, `&&` for `||`, `..` for `..=`, `min` for `max`, `first` for `last`, a
dropped `.rev()`, `true` for `false`; kept only when they compile and fail a hidden test) and a
run's own samples. The default set, data/judge_check.jsonl, was written by

    python -m rlaif judge-check --build data/judge_check.jsonl \\
        --from-samples /work/learnrun/runs/learning/learn-20261206-051315/samples.jsonl \\
        --per-class 40 --per-task 1 --seed 0

from a run of the Qwen2.5-Coder-0.5B student on the training tasks (that run folder is not part
of the repository; the file keeps all it needs). The same command writes the same file, given the
same rustc, tasks and samples: every choice is seeded.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from rlaif import strict_json
from rlaif.data.tasks import DataError, json_object, numbered_lines, raise_if_any
from rlaif.judges.rust.jobs import RustJudge
from rlaif.types import RustResult, Task

SOURCES = ("reference", "mutant", "student")
OUTCOMES = ("all_pass", "compiles_fails", "no_compile")
DEFAULT_SET = "data/judge_check.jsonl"
MUTANT_TRIES = 6  # mutants compiled per task, at most, to find one that compiles and fails


# --- labelled records ----------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """One completion of a training task and what the hidden tests said about it."""

    task_id: str
    code: str
    source: str  # one of SOURCES
    compiles: bool  # type-checks and builds with the hidden tests (RustResult.compiles_as_solution)
    tests_passed: float | None  # fraction of the hidden tests passed; None when it does not compile
    all_pass: bool
    mutation: str | None = None  # for mutants: what was changed, e.g. "line 3: `<` -> `<=`"
    where: str = ""  # "file:line" it was read from, for messages (not written)

    @property
    def outcome(self) -> str:
        """The record's class, one of OUTCOMES."""
        if self.all_pass:
            return "all_pass"
        return "compiles_fails" if self.compiles else "no_compile"

    def row(self) -> dict:
        """The JSONL object: labels first, then the code (so a reader sees the label first)."""
        row = {
            "task_id": self.task_id,
            "source": self.source,
            "compiles": self.compiles,
            "tests_passed": self.tests_passed,
            "all_pass": self.all_pass,
        }
        if self.mutation is not None:
            row["mutation"] = self.mutation
        return {**row, "code": self.code}


def label(
    task_id: str, code: str, source: str, rust: RustResult, mutation: str | None = None
) -> Labelled | None:
    """The Labelled record of rustc's result, or None when the job gave no verdict (a sandbox
    error, a rustc timeout) or the task has no tests to pass: no label is ever guessed."""
    if rust.sandbox_error is not None:
        return None
    compiles = rust.compiles_as_solution
    if compiles and rust.tests_total == 0:
        return None
    fraction = rust.tests_passed / rust.tests_total if compiles else None
    return Labelled(
        task_id, code, source, compiles, fraction, compiles and fraction == 1.0, mutation
    )


def read_labelled(path: str | Path) -> list[Labelled]:
    """Every record of a labelled JSONL file; DataError listing each bad line as
    `file:line: key: problem`."""
    records, errors = [], []
    for _, where, line in numbered_lines(path, "labelled set"):
        try:
            records.append(labelled_from_row(json_object(line, where), where))
        except DataError as exc:
            errors.extend(str(exc).split("\n"))
    if not records and not errors:
        errors.append(f"{path}: no records in the file")
    raise_if_any(errors)
    return records


_KEYS = ("task_id", "code", "source", "compiles", "tests_passed", "all_pass", "mutation")


def labelled_from_row(row: dict, where: str) -> Labelled:
    """One record from one parsed line; DataError naming `where` and the key of each problem."""
    problems = [f"{where}: {key}: unknown key" for key in row if key not in _KEYS]
    for key in ("task_id", "code", "source", "compiles", "tests_passed", "all_pass"):
        if key not in row:
            problems.append(f"{where}: {key}: missing")
    for key in ("task_id", "code"):
        if key in row and (not isinstance(row[key], str) or not row[key].strip()):
            problems.append(f"{where}: {key}: expected a non-empty string")
    if "source" in row and row["source"] not in SOURCES:
        problems.append(f"{where}: source: {row['source']!r} is not one of {SOURCES}")
    for key in ("compiles", "all_pass"):
        if key in row and not isinstance(row[key], bool):
            problems.append(f"{where}: {key}: expected true or false")
    if "mutation" in row and not isinstance(row["mutation"], str):
        problems.append(f"{where}: mutation: expected a string")
    fraction = row.get("tests_passed")
    number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if fraction is not None and (not number or not 0.0 <= fraction <= 1.0):
        problems.append(f"{where}: tests_passed: expected a fraction 0..1 or null")
    if not problems:
        problems += _inconsistent(row, where)
    if problems:
        raise DataError("\n".join(problems))
    return Labelled(
        row["task_id"],
        row["code"],
        row["source"],
        row["compiles"],
        None if fraction is None else float(fraction),
        row["all_pass"],
        row.get("mutation"),
        where,
    )


def _inconsistent(row: dict, where: str) -> list[str]:
    """Labels that contradict each other (a hand-edited file), naming the key at fault."""
    compiles, fraction, all_pass = row["compiles"], row["tests_passed"], row["all_pass"]
    if not compiles and fraction is not None:
        return [f"{where}: tests_passed: must be null for code that does not compile"]
    if not compiles and all_pass:
        return [f"{where}: all_pass: must be false for code that does not compile"]
    if compiles and fraction is None:
        return [f"{where}: tests_passed: null, but compiles is true (give the fraction passed)"]
    if compiles and all_pass != (fraction == 1.0):
        return [f"{where}: all_pass: {all_pass} contradicts tests_passed {fraction}"]
    return []


def write_labelled(path: str | Path, records: Sequence[Labelled]) -> None:
    Path(path).write_text("".join(strict_json.dumps(r.row()) + "\n" for r in records))


# --- mutants: wrong code that still compiles -------------------------------------------------

# Comments, strings and char literals (a lifetime `'a` is not one: no closing quote after one
# character), which mutations must not touch.
_LITERALS = re.compile(
    r"""//[^\n]*
      | /\*.*?\*/
      | (?<!\w)b?r(\#*)".*?"\1
      | (?<!\w)b?"(?:\\.|[^"\\])*"
      | (?<!\w)b?'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^'\\\n])'
    """,
    re.VERBOSE | re.DOTALL,
)
_SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
_SWAPS |= {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "&&": "||", "||": "&&"}
_SWAPS |= {"..": "..=", "..=": "..", ".rev()": "", "true": "false", "false": "true"}
_SWAPS |= {".min(": ".max(", ".max(": ".min(", ".first(": ".last(", ".last(": ".first("}
# A binary operator with a space each side, as rustfmt writes it (so `Vec<T>`, `->`, `*x` and
# unary minus are left alone); a range's `..` or `..=` between its bounds; `.rev()` (dropped);
# `.min(`, `.max(`, `.first(`, `.last(`; the boolean literals.
_SITE = re.compile(
    r"(?<= )(?:<=|>=|==|!=|\+=|-=|&&|\|\||<|>|\+|-|\*|/)(?= )"
    r"|(?<=[\w)])\.\.=?(?=[\w(])"
    r"|\.rev\(\)|\.(?:min|max|first|last)\(|\b(?:true|false)\b"
)
# A decimal integer, suffixed or not (`1`, `1i32`), but not a tuple field (`x.0`), part of a
# float (`1.5`) or of a name; range bounds (`0..n`, `..10`) are integers.
_INTEGER = re.compile(r"(?<!\w)(?<![^.]\.)\d+(?=(?:[iu](?:8|16|32|64|128|size))?(?!\w|\.\d))")


def _masked(code: str) -> str:
    """`code` with comments and literals blanked out, character for character (offsets hold)."""
    return _LITERALS.sub(lambda m: re.sub(r"[^\n]", "_", m.group(0)), code)


def mutants(code: str) -> list[tuple[str, str]]:
    """Every one-site mutation of `code` as (what changed, new code), in source order: each
    operator site swapped (_SWAPS) and each integer literal moved by one either way."""
    masked = _masked(code)
    edits = [(m.start(), m.group(0), _SWAPS[m.group(0)]) for m in _SITE.finditer(masked)]
    for m in _INTEGER.finditer(masked):
        value = int(m.group(0))  # the digits only: a suffix stays as it is
        edits += [(m.start(), m.group(0), str(v)) for v in (value + 1, value - 1) if v >= 0]
    out = []
    for start, old, new in sorted(edits):
        line = code.count("\n", 0, start) + 1
        out.append(
            (f"line {line}: `{old}` -> `{new}`", code[:start] + new + code[start + len(old) :])
        )
    return out


# --- building a labelled set ------------------------------------------------------------------


def read_samples(path: str | Path, tasks: Mapping[str, Task]) -> list[tuple[str, str]]:
    """The distinct (task_id, code) pairs with code of a run's samples.jsonl, in file order.

    Other fields are ignored. DataError lists bad lines, and lines naming a task that is not a
    training task (a labelled set is built from training tasks only)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the samples: {exc}") from exc
    pairs: dict[tuple[str, str], None] = {}
    errors = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json_object(line, where)
        except DataError as exc:
            errors.append(str(exc))
            continue
        task_id, code = row.get("task_id"), row.get("code")
        if not isinstance(task_id, str):
            errors.append(f"{where}: task_id: expected a string")
        elif task_id not in tasks:
            errors.append(f"{where}: task_id: {task_id!r} is not a training task (data.train)")
        elif not isinstance(code, str):
            errors.append(f"{where}: code: expected a string")
        elif code.strip():
            pairs[(task_id, code)] = None
    raise_if_any(errors)
    return list(pairs)


async def build_labelled_set(
    tasks: Sequence[Task],
    samples: Sequence[tuple[str, str]],
    judge: RustJudge,
    *,
    per_class: int = 40,
    per_task: int = 1,
    seed: int = 0,
) -> list[Labelled]:
    """Up to `per_class` references that pass, as many mutants that compile and fail (at most
    `per_task` a task) and as many student samples (at most `per_task` a task), labelled by
    rustc; in a seeded order, so that any prefix (`--limit`) mixes the sources.

    Every choice is seeded by `seed` and the task's id, never by the order jobs finish in."""
    by_id = {t.id: t for t in tasks}
    from_tasks = await _references_and_mutants(tasks, judge, per_class, per_task, seed)
    students = await _students(samples, by_id, judge, per_class, per_task, seed)
    records = from_tasks + students
    random.Random(f"{seed}:order").shuffle(records)
    return records


async def _references_and_mutants(tasks, judge, per_class, per_task, seed) -> list[Labelled]:
    order = [t for t in tasks if t.reference]
    random.Random(f"{seed}:tasks").shuffle(order)
    references: list[Labelled] = []
    wrong: list[Labelled] = []
    start = 0
    while start < len(order) and (len(references) < per_class or len(wrong) < per_class):
        # Enough tasks to fill both quotas if every one gives its share, judged side by side.
        need = max(per_class - len(references), -(-(per_class - len(wrong)) // per_task), 1)
        chunk = order[start : start + need]
        start += need
        for reference, kept in await in_order(
            [lambda t=t: _task_records(t, judge, per_task, seed) for t in chunk]
        ):
            if reference is not None and len(references) < per_class:
                references.append(reference)
            wrong += kept[: per_class - len(wrong)]
    return references + wrong


async def _task_records(task: Task, judge: RustJudge, per_task: int, seed: int):
    """(the reference's record when it passes every test, else None; up to `per_task` mutants of
    it that compile and fail), trying at most MUTANT_TRIES mutants, in a seeded order."""
    rust = await judge.judge(task.reference, task.tests, task.harness)
    reference = label(task.id, task.reference, "reference", rust)
    if reference is None or not reference.all_pass:
        return None, []  # a broken reference says nothing about its mutants
    candidates = mutants(task.reference)
    random.Random(f"{seed}:{task.id}").shuffle(candidates)
    kept: list[Labelled] = []
    for what, code in candidates[: max(MUTANT_TRIES, 3 * per_task)]:
        if len(kept) == per_task:
            break
        record = label(
            task.id, code, "mutant", await judge.judge(code, task.tests, task.harness), what
        )
        if record is not None and record.outcome == "compiles_fails":
            kept.append(record)
    return reference, kept


async def _students(samples, by_id, judge, per_class, per_task, seed) -> list[Labelled]:
    """Up to `per_task` samples from each task in a seeded order of tasks, `per_class` in all,
    each labelled by rustc; those without a verdict are left out."""
    by_task: dict[str, list[str]] = {}
    for task_id, code in samples:
        by_task.setdefault(task_id, []).append(code)
    rng = random.Random(f"{seed}:students")
    ids = sorted(by_task)
    rng.shuffle(ids)
    picked = []
    for task_id in ids:
        codes = rng.sample(by_task[task_id], min(per_task, len(by_task[task_id])))
        picked += [(task_id, code) for code in codes][: per_class - len(picked)]
    results = await in_order(
        [lambda t=t, c=c: judge.judge(c, by_id[t].tests, by_id[t].harness) for t, c in picked]
    )
    labelled = [label(t, c, "student", r) for (t, c), r in zip(picked, results, strict=True)]
    return [r for r in labelled if r is not None]


async def in_order(jobs: list[Callable[[], Awaitable]]) -> list:
    """Run the jobs side by side (the rustc judge's limiter bounds the work); results in order."""
    results: list = [None] * len(jobs)

    async def run(i: int) -> None:
        results[i] = await jobs[i]()

    async with anyio.create_task_group() as group:
        for i in range(len(jobs)):
            group.start_soon(run, i)
    return results


def class_counts(records: Sequence[Labelled]) -> dict[str, int]:
    """Records per outcome and per source, every key present."""
    counts = Counter(r.outcome for r in records) + Counter(r.source for r in records)
    return {key: counts[key] for key in (*OUTCOMES, *SOURCES)}
