"""`data check`: prove that task files teach the right thing before anything trains on them.

A wrong test teaches the wrong thing, so every task is checked with the real rustc:
- its `reference` compiles without warnings and passes every hidden test;
- a stub of it (the reference with every function body replaced by `todo!()`, so types, traits
  and signatures stay) compiles and fails every hidden test: a test that a stub passes does not
  exercise the code the student writes;
- a constant answer (every body replaced by `Default::default()`, or by `todo!()` where the
  return type has no default) fails at least half of the hidden tests: tests that mostly expect
  `0`, `false`, `None` or an empty value pay a student for ignoring its input (the first learning
  run's `Some(50)` answer, issue 16);
- its tests hold at least `MIN_ASSERTIONS` assertions, and no test is named like a free function
  of the reference (the test's name would shadow the function inside the test module);
- each free function of the reference has its signature written out in the prompt, so the
  student is told exactly what the tests will call;
- ids are unique across all the files given, and no prompt of a later file duplicates one of an
  earlier file (eval after train) exactly or nearly (word 3-gram Jaccard similarity after
  lower-casing and collapsing whitespace, the shingling test of Broder 1997).

Every problem names the task's `file:line`, its id and what failed. The rustc jobs go through
`RustJudge.judge(code, tests)` concurrently (the judge's limiter bounds them).

Not covered: tasks in the MultiPL-E format (`harness: main`), whose tests are a `fn main`, are
counted and skipped; their files ship no reference to check anyway.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from rlaif.data.tasks import DataError, load_tasks
from rlaif.judges.rust.jobs import RustJudge
from rlaif.types import RustResult, Task

MIN_ASSERTIONS = 3
NEAR_DUPLICATE_JACCARD = 0.8  # word 3-gram overlap above which two prompts count as one task
_ASSERTION = re.compile(r"\b(?:debug_)?assert(?:_eq|_ne)?!")
_TEST_OK = re.compile(r"^test \S+::(\S+) \.\.\. ok$", re.MULTILINE)
_FN_ITEM = re.compile(r"\bfn\s+[A-Za-z_]\w*")
_TEST_FN = re.compile(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*fn\s+(\w+)")
_MUT_BINDING = re.compile(r"\bmut\s+(?=\w+\s*:)")  # `mut x: T` binds mutably; callers see `x: T`
_ERROR_LINE = re.compile(r"--> \S*?lib\.rs:(\d+):")  # where a rendered rustc error points


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line" of the task (or just the file when it could not be read)
    task_id: str  # "" when the problem is the file's, not one task's
    what: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.where, self.task_id, self.what) if part)


@dataclass
class CheckReport:
    files: int = 0
    tasks: int = 0
    skipped: int = 0  # tasks whose harness this check does not run (MultiPL-E `main`)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_files(paths: list[str | Path], judge: RustJudge) -> CheckReport:
    """Check every task of every file; files are compared with the ones given before them."""
    start = time.perf_counter()
    report = CheckReport(files=len(paths))
    loaded: list[list[Task]] = []
    for path in paths:
        try:
            loaded.append(load_tasks(path))
        except DataError as exc:
            # The loader lists every malformed line (and repeated ids) as `file:line: ...`.
            report.problems.extend(Problem("", "", line) for line in str(exc).splitlines())
            loaded.append([])
    tasks = [task for batch in loaded for task in batch]
    report.tasks = len(tasks)
    report.problems.extend(_repeated_ids(tasks))
    for later in range(1, len(loaded)):
        for earlier in range(later):
            report.problems.extend(duplicate_prompts(loaded[earlier], loaded[later]))

    runnable = [t for t in tasks if t.harness == "libtest"]
    report.skipped = len(tasks) - len(runnable)
    found: list[list[Problem]] = [[] for _ in runnable]

    async def one(index: int) -> None:
        found[index] = await check_task(runnable[index], judge)

    async with anyio.create_task_group() as group:
        for index in range(len(runnable)):
            group.start_soon(one, index)
    for problems in found:
        report.problems.extend(problems)
    report.seconds = time.perf_counter() - start
    return report


async def check_task(task: Task, judge: RustJudge) -> list[Problem]:
    """The static checks, then the reference and its stub through rustc (concurrently)."""
    problems = [Problem(task.source, task.id, what) for what in static_problems(task)]
    if not task.reference:
        return problems
    results: dict[str, RustResult] = {}

    async def run(name: str, code: str) -> None:
        results[name] = await judge.judge(code, task.tests)

    async def constant() -> None:
        results["constant"] = await judge_constant_answer(task.reference, task.tests, judge)

    async with anyio.create_task_group() as group:
        group.start_soon(run, "reference", task.reference)
        group.start_soon(run, "stub", stub_of(task.reference))
        group.start_soon(constant)
    problems += [
        Problem(task.source, task.id, what)
        for what in _reference_problems(results["reference"], task.tests)
        + _stub_problems(results["stub"])
        + _constant_problems(results["constant"])
    ]
    return problems


async def judge_constant_answer(reference: str, tests: str, judge: RustJudge) -> RustResult:
    """rustc's verdict on `constant_of(reference)`, the bodies whose return type has no default
    turned to `todo!()` one round at a time (the functions rustc's errors point into), down to
    the all-`todo!()` stub at worst."""
    todo: set[int] = set()
    while True:
        code = constant_of(reference, todo)
        result = await judge.judge(code, tests)
        spans = _body_lines(code)
        if result.compiled or result.sandbox_error or len(todo) == len(spans):
            return result
        lines = {int(line) for line in _ERROR_LINE.findall(result.log)}
        pointed = {
            i for i, (first, last) in enumerate(spans) if any(first <= n <= last for n in lines)
        }
        # An error outside every body (or a log cut short) turns all of them: the stub compiles.
        todo |= (pointed - todo) or set(range(len(spans)))


def static_problems(task: Task) -> list[str]:
    """What is wrong with a task without compiling anything."""
    problems = []
    if not task.reference:
        problems.append("reference: missing (data check needs a known-good solution)")
    if "#[test]" not in task.tests:
        problems.append("tests: no #[test] function")
    assertions = len(_ASSERTION.findall(task.tests))
    if assertions < MIN_ASSERTIONS:
        problems.append(f"tests: {assertions} assertions, at least {MIN_ASSERTIONS} needed")
    if task.reference:
        # `use super::*` loses to a test's own name: a test named like a free function it calls
        # shadows it, and the test build fails with a confusing arity error. (Methods are
        # reached through a type or value, so their names are free to reuse.)
        defined = {
            _FN_ITEM.match(task.reference, start).group(0).split()[-1]
            for start, body, _, depth in _fn_items(task.reference)
            if depth == 0 and body >= 0
        }
        for name in sorted(defined & set(_TEST_FN.findall(task.tests))):
            problems.append(f"tests: test `{name}` shadows the function `{name}` it should test")
        prompt = _collapse(task.prompt)
        for signature in free_fn_signatures(task.reference):
            if signature not in prompt:
                problems.append(f"prompt: does not give the signature `{signature}`")
    return problems


def _reference_problems(result: RustResult, tests: str) -> list[str]:
    if result.sandbox_error:
        return [f"reference: the sandbox failed: {result.sandbox_error}"]
    if result.timed_out:
        return ["reference: timed out"]
    if not result.compiled:
        return [f"reference: does not compile: {_first_line(result.log)}"]
    problems = []
    if result.warnings:
        names = ", ".join(result.warning_names) or "unnamed"
        problems.append(f"reference: {result.warnings} warning(s) ({names})")
    expected = tests.count("#[test]")
    if result.tests_total != expected or result.tests_passed != result.tests_total:
        detail = _first_line(result.log) if result.log else ""
        problems.append(
            f"reference: passes {result.tests_passed} of {expected} tests"
            + (f": {detail}" if detail else "")
        )
    return problems


def _stub_problems(result: RustResult) -> list[str]:
    if result.sandbox_error:
        return [f"stub: the sandbox failed: {result.sandbox_error}"]
    if not result.compiled or "test build:" in result.log:
        return [f"stub (todo!() bodies) does not compile: {_first_line(result.log)}"]
    if result.tests_passed:
        passing = ", ".join(_TEST_OK.findall(result.log)) or "some"
        return [
            f"stub (todo!() bodies) passes {result.tests_passed} of {result.tests_total} tests "
            f"({passing}): they do not exercise the code"
        ]
    return []


def _constant_problems(result: RustResult) -> list[str]:
    if result.sandbox_error:
        return [f"constant answer: the sandbox failed: {result.sandbox_error}"]
    if result.tests_total and 2 * result.tests_passed >= result.tests_total:
        passing = ", ".join(_TEST_OK.findall(result.log)) or "some"
        return [
            f"constant answer (Default::default() bodies) passes {result.tests_passed} of "
            f"{result.tests_total} tests ({passing}): most tests accept an answer that ignores "
            "its input"
        ]
    return []


def _first_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    interesting = [line for line in lines if "error" in line or "panicked" in line]
    return (interesting or lines or ["(no output)"])[0][:300]


def _repeated_ids(tasks: list[Task]) -> list[Problem]:
    """Ids repeated across files (the loader already rejects repeats within one file)."""
    first: dict[str, Task] = {}
    problems = []
    for task in tasks:
        if (
            task.id in first
            and first[task.id].source.rsplit(":", 1)[0] != task.source.rsplit(":", 1)[0]
        ):
            problems.append(
                Problem(task.source, task.id, f"id: already used at {first[task.id].source}")
            )
        first.setdefault(task.id, task)
    return problems


# ---------------------------------------------------------------------------------------------
# Prompt duplicates


def _collapse(text: str) -> str:
    return " ".join(text.split())


def normalise_prompt(prompt: str) -> str:
    """Lower case, whitespace collapsed: what two copies of one prompt have in common."""
    return _collapse(prompt.lower())


def _shingles(prompt: str) -> set[tuple[str, ...]]:
    words = normalise_prompt(prompt).split()
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def duplicate_prompts(earlier: list[Task], later: list[Task]) -> list[Problem]:
    """Each task of `later` whose prompt duplicates one in `earlier`, exactly or nearly."""
    exact = {normalise_prompt(t.prompt): t for t in earlier}
    shingled = [(t, _shingles(t.prompt)) for t in earlier]
    problems = []
    for task in later:
        twin = exact.get(normalise_prompt(task.prompt))
        if twin is not None:
            what = f"prompt: the same as {twin.id} ({twin.source}) after normalisation"
            problems.append(Problem(task.source, task.id, what))
            continue
        mine = _shingles(task.prompt)
        score, twin = max(
            ((jaccard(mine, s), t) for t, s in shingled),
            key=lambda pair: pair[0],
            default=(0, None),
        )
        if twin is not None and score >= NEAR_DUPLICATE_JACCARD:
            what = f"prompt: nearly the same as {twin.id} ({twin.source}), similarity {score:.2f}"
            problems.append(Problem(task.source, task.id, what))
    return problems


# ---------------------------------------------------------------------------------------------
# Stubs and signatures: a small scanner that knows Rust's comments and literals, so that braces
# inside strings or chars are not taken for blocks.


def _skip_literal(src: str, i: int) -> int:
    """If a comment, string or char literal starts at `i`, the index just after it; else i."""
    c, nxt = src[i], src[i + 1 : i + 2]
    if c == "/" and nxt == "/":
        end = src.find("\n", i)
        return len(src) if end < 0 else end
    if c == "/" and nxt == "*":
        depth, j = 1, i + 2  # block comments nest in Rust
        while j < len(src) and depth:
            if src.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif src.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if c == "r" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
        raw = re.match(r'r(#*)"', src[i:])
        if raw:
            close = '"' + raw.group(1)
            end = src.find(close, i + raw.end())
            return len(src) if end < 0 else end + len(close)
    if c == '"':
        j = i + 1
        while j < len(src) and src[j] != '"':
            j += 2 if src[j] == "\\" else 1
        return j + 1
    if c == "'":
        if nxt == "\\":
            end = src.find("'", i + 3)  # '\n', '\'', '\u{1F600}'
            return len(src) if end < 0 else end + 1
        if src[i + 2 : i + 3] == "'":
            return i + 3  # 'a'; otherwise a lifetime, whose quote is plain text
    return i


def _scan_to(src: str, i: int, stops: str) -> int:
    """Index of the first char in `stops` at bracket depth 0 from `i`, skipping literals."""
    depth = 0
    while i < len(src):
        j = _skip_literal(src, i)
        if j != i:
            i = j
            continue
        c = src[i]
        if c in stops and depth == 0:
            return i
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return len(src)


def _fn_items(src: str):
    """(start of `fn`, its body's `{` or -1, the index after the item, brace depth) per fn."""
    i, depth = 0, 0
    while i < len(src):
        j = _skip_literal(src, i)
        if j != i:
            i = j
            continue
        item = _FN_ITEM.match(src, i)
        if item and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            stop = _scan_to(src, item.end(), "{;")
            if stop >= len(src) or src[stop] == ";":  # a declaration without a body
                yield i, -1, stop + 1, depth
                i = stop + 1
                continue
            end = _scan_to(src, stop + 1, "}")
            yield i, stop, end + 1, depth
            i = end + 1
            continue
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
        i += 1


def stub_of(reference: str) -> str:
    """The reference with every function body replaced by `todo!()`: same items, no behaviour."""
    return _replace_bodies(reference, lambda _: "todo!()")


def constant_of(reference: str, todo: set[int] | frozenset[int] = frozenset()) -> str:
    """The reference with every function body replaced by `Default::default()`, but `todo!()`
    for the bodies numbered in `todo` (0 is the first body): an answer that ignores its input."""
    return _replace_bodies(reference, lambda i: "todo!()" if i in todo else "Default::default()")


def _replace_bodies(reference: str, body_for) -> str:
    parts, last = [], 0
    bodies = ((body, end) for _, body, end, _ in _fn_items(reference) if body >= 0)
    for i, (body, end) in enumerate(bodies):
        parts.append(reference[last : body + 1] + f" {body_for(i)} }}")
        last = end
    parts.append(reference[last:])
    return "".join(parts)


def _body_lines(code: str) -> list[tuple[int, int]]:
    """(first line, last line), counted from 1, of each function body of `code`."""
    return [
        (code.count("\n", 0, body) + 1, code.count("\n", 0, end) + 1)
        for _, body, end, _ in _fn_items(code)
        if body >= 0
    ]


def free_fn_signatures(reference: str) -> list[str]:
    """Signatures of the reference's top-level functions as callers see them: whitespace
    collapsed, no body, no `mut` on parameter bindings (that is the body's business) and no
    trailing comma after a `where` clause (rustfmt adds one)."""
    return [
        _MUT_BINDING.sub("", _collapse(reference[start:body])).removesuffix(",")
        for start, body, _, depth in _fn_items(reference)
        if depth == 0 and body >= 0
    ]
