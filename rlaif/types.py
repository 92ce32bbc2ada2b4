"""Plain records passed between the stages: a task, a sampled completion, and what judged it.

They hold data only; the stages that make them live in their own modules. Expected failures are
fields here (`RustResult.timed_out`, `Judgement.abstained`), never exceptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DIFFICULTIES = ("easy", "medium", "hard")
# How a task's tests are run: "libtest" = `#[test]` functions in a module beside the code, each
# counted; "main" = a `fn main()` of assertions appended to the code (the MultiPL-E format),
# one test that passes when the program exits 0.
HARNESSES = ("libtest", "main")


@dataclass(frozen=True)
class Task:
    """One programming task. `tests` are hidden from the student: it sees only `prompt`."""

    id: str
    prompt: str  # what to write, with the exact signature
    tests: str  # per `harness`: `#[test]` functions (in a `use super::*;` module) or a `fn main`
    difficulty: str  # one of DIFFICULTIES
    reference: str | None = None  # a known-good solution, for data checks
    source: str = ""  # "file:line" it was read from, for messages
    harness: str = "libtest"  # one of HARNESSES
    prefix: str | None = None  # code a raw completion continues (MultiPL-E's prompt), if any
    entry_point: str | None = None  # the function a prefix task asks for, e.g. "add"
    stop_tokens: tuple[str, ...] = ()  # a raw continuation ends at the first of these


@dataclass
class Sample:
    """One completion of one task, with what the trainer needs to score and replay it."""

    task: Task
    index: int  # position within the task's group of samples
    prompt_ids: list[int]  # the exact tokens the student was given
    completion_ids: list[int]  # sampled tokens, up to and including EOS when it was produced
    logprobs: list[
        float
    ]  # sampler's log-prob of each completion token, at the sampling temperature
    completion: str  # decoded completion text
    code: str  # the Rust code extracted from it ("" when there is none)
    policy_version: int  # number of updates the weights had seen when this was sampled
    finished: bool  # True when the student stopped by itself (EOS), False when cut at max tokens


@dataclass(frozen=True)
class RustResult:
    """What rustc, clippy and the task's tests said about one piece of code (one rustc job).

    Every count and every stage's timing is here, for expected failures too; stages that did not
    run keep their zeros. Cached results keep the timings of the run that produced them.
    """

    parsed: bool = False
    compiled: bool = False
    errors: int = 0
    warnings: int = 0  # rustc's own lints; clippy's are counted apart
    error_codes: tuple[str, ...] = ()  # e.g. ("E0425", "E0308"); parse errors have no code
    warning_names: tuple[str, ...] = ()  # lint names, e.g. ("unused_variables",)
    clippy_ran: bool = False  # clippy linted the code (it is on, and the code type-checked)
    clippy_lints: int = 0
    clippy_names: tuple[str, ...] = ()  # e.g. ("clippy::needless_return",), one per lint
    tests_total: int = 0
    tests_built: bool = False  # the code built together with the task's tests (it has the API)
    tests_passed: int = 0
    timed_out: bool = False  # rustc (then sandbox_error says so) or the test binary ran out of time
    run_signal: str | None = None  # the test program was killed by this signal ("SIGABRT")
    output_capped: bool = False  # a stage flooded stdout/stderr and was stopped
    rejected: str | None = None  # refused before rustc ran (a compile-time file read), and why
    # No verdict (not the code's doing): the harness failed, or rustc timed out. Rust terms NaN.
    sandbox_error: str | None = None
    seconds: float = 0.0  # the whole job
    check_seconds: float = 0.0  # rustc (or clippy-driver) --emit=metadata
    parse_seconds: float = 0.0  # the syntax-only pass, run when the check failed
    build_seconds: float = 0.0  # the build with the hidden tests
    run_seconds: float = 0.0  # running them
    cached: bool = False  # served from the result cache, not run again
    log: str = ""  # tail of the first failing stage's output, for people reading samples.jsonl

    @property
    def all_tests_passed(self) -> bool:
        return self.tests_total > 0 and self.tests_passed == self.tests_total

    @property
    def unused_variables(self) -> int:
        """rustc's `unused_variables` warnings: a body that ignores its parameters is a stub."""
        return self.warning_names.count("unused_variables")

    @property
    def compiles_as_solution(self) -> bool:
        """It type-checks and, when the task has tests, builds with them: it provides the
        functions and types the task asks for, with their signatures."""
        return self.compiled and (self.tests_built or self.tests_total == 0)


# Why a sample has no teacher term although the teacher never refused it: the teacher is off
# for the run, or the sample was not sent (code that does not compile, `teacher.only_compiled`).
# These are not the teacher's abstentions and are not counted as such (`Judgement.asked`).
TEACHER_OFF = "off"
NOT_COMPILED = "not sent: did not compile"


@dataclass(frozen=True)
class Judgement:
    """The teacher's verdict on one sample. `score` is NaN when the teacher abstained."""

    score: float = math.nan  # weighted rubric score in [0, 1]
    scores: dict[str, float] = field(default_factory=dict)  # rubric criterion -> 0..10
    reason: str = ""
    abstained: str | None = (
        None  # why no verdict could be had ("off", "timeout", "unparsable", ...)
    )

    @property
    def asked(self) -> bool:
        """The teacher was asked about this sample (so an abstention here is its own)."""
        return self.abstained not in (TEACHER_OFF, NOT_COMPILED)


@dataclass
class Scored:
    """A sample with its judges' results and the reward terms computed from them."""

    sample: Sample
    rust: RustResult
    judgement: Judgement
    components: dict[str, float]  # reward term -> weighted value (NaN when its judge abstained)
    sources: dict[str, float]  # judge ("rust", "teacher") -> sum of its terms, NaN when unknown
    ast: Any = None  # syntax.AstMetrics of the code (scoring.Scorer always sets it)
    placeholder: bool = False  # the task's functions have placeholder bodies: scored as no code

    @property
    def compiles(self) -> bool:
        """The project's one meaning of "compiles", the one the reward pays for: it type-checks,
        builds with the task's tests (`RustResult.compiles_as_solution`) and is not a
        placeholder. Training metrics, the curriculum and evaluation all count this."""
        return self.rust.compiles_as_solution and not self.placeholder

    @property
    def reward(self) -> float:
        """The total reward: the sum of the judges that gave an answer."""
        known = [v for v in self.sources.values() if not math.isnan(v)]
        return sum(known) if known else math.nan


# One step's scored samples: a group of `samples_per_prompt` per task, in task order.
Groups = list[list[Scored]]
