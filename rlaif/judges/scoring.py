"""The fan-out: every sample's rustc job, then its teacher call, concurrently, results in order.

The teacher sees what rustc said about the sample, so a sample's two judges run one after the
other; samples run side by side, bounded by the judges' own limiters (`RustJudge.limiter`,
`Teacher.limiter`). The syntax-tree metrics (`syntax.rust_metrics`, pure and ~1 ms) are
computed in line for every sample with code, and decide whether the sample is a placeholder
answer (`syntax.placeholder_answer` for the functions `declared_functions` finds in the task),
which rewards.py scores as no code and which is not sent to the teacher.

Code that does not compile is not sent to the teacher by default (`teacher.only_compiled`): the
compiler has judged it, and its rust terms already carry that verdict. Such a sample gets no
teacher term: a NaN recorded as NOT_COMPILED, which `algo.group_advantages` leaves out of the
group's teacher baseline, so its teacher advantage is 0 and the compiled samples of the group are
ranked against each other alone. Scoring it 0 instead would punish the same failure twice, and
with mostly broken samples the teacher term would then mostly repeat the compile bit. (Leaving
the "teacher" source out of the sample's terms would give the same advantages, since a missing
source is NaN in the pipeline's reward tensor; the explicit NaN keeps samples.jsonl saying why.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

from rlaif.config import RewardsConfig
from rlaif.judges.rewards import reward_terms
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.rust.syntax import placeholder_answer, rust_metrics
from rlaif.judges.teacher.client import Teacher
from rlaif.types import NOT_COMPILED, TEACHER_OFF, Judgement, Sample, Scored, Task

_FN_NAME = re.compile(r"\bfn\s+([A-Za-z_]\w*)")


def declared_functions(task: Task) -> frozenset[str]:
    """The functions a task asks for: its `entry_point` (MultiPL-E), else every `fn name` its
    prompt writes out (data/check.py makes sure the prompt gives each free function's
    signature)."""
    if task.entry_point:
        return frozenset({task.entry_point})
    return frozenset(_FN_NAME.findall(task.prompt))


class Gauge:
    """How many of something are in flight: now, and per window its time-weighted mean and peak.

    The pipeline keeps one for rustc jobs and one for teacher calls, and reads a window per step:
    a mean near the judge's concurrency bound says scoring is saturated; near 0, it idles.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.current = 0
        self._since = self._changed = clock()
        self._area = 0.0  # integral of `current` over time since the window opened
        self._peak = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one thing in flight for the duration of the block."""
        self._move(+1)
        try:
            yield
        finally:
            self._move(-1)

    def _move(self, delta: int) -> None:
        now = self.clock()
        self._area += self.current * (now - self._changed)
        self._changed = now
        self.current += delta
        self._peak = max(self._peak, self.current)

    def window(self) -> tuple[float, int]:
        """(mean, peak) since the last call (or since made), and open the next window."""
        self._move(0)
        elapsed = self._changed - self._since
        mean = self._area / elapsed if elapsed > 0 else float(self.current)
        peak = self._peak
        self._since, self._area, self._peak = self._changed, 0.0, self.current
        return mean, peak


class Scorer:
    def __init__(self, rust: RustJudge, teacher: Teacher | None, weights: RewardsConfig):
        self.rust = rust
        self.teacher = teacher
        self.weights = weights
        # Requests submitted and not yet answered (queued for a slot included), per judge.
        self.rust_jobs = Gauge()
        self.teacher_calls = Gauge()

    async def score_one(self, sample: Sample) -> Scored:
        with self.rust_jobs.track():
            rust = await self.rust.judge(sample.code, sample.task.tests, sample.task.harness)
        ast = rust_metrics(sample.code)  # for code-less samples too: every sample has every term
        placeholder = bool(sample.code) and placeholder_answer(ast, declared_functions(sample.task))
        if self.teacher is None:
            judgement = Judgement(abstained=TEACHER_OFF)
        elif placeholder:
            # Scored as no code, and so, like code that does not compile, not worth a call.
            judgement = Judgement(abstained=NOT_COMPILED, reason="placeholder body")
        elif self.teacher.only_compiled and not rust.compiled:
            judgement = Judgement(abstained=NOT_COMPILED)
        else:
            with self.teacher_calls.track():
                judgement = await self.teacher.judge(
                    sample.task, sample.code, rust, sample.finished
                )
        components, sources = reward_terms(
            rust, judgement, bool(sample.code), self.weights, ast, placeholder
        )
        return Scored(sample, rust, judgement, components, sources, ast, placeholder)

    def in_flight(self) -> dict[str, float]:
        """Per-window metrics of both gauges: mean and peak of jobs and calls in flight."""
        row = {}
        for name, gauge in (("rust_jobs", self.rust_jobs), ("teacher_calls", self.teacher_calls)):
            mean, peak = gauge.window()
            row.update({f"{name}_in_flight_mean": mean, f"{name}_in_flight_max": float(peak)})
        return row

    async def score(self, samples: list[Sample]) -> list[Scored]:
        """Score all samples at once; the i-th result belongs to the i-th sample."""
        results: list[Scored | None] = [None] * len(samples)

        async def run(i: int, sample: Sample) -> None:
            results[i] = await self.score_one(sample)

        async with anyio.create_task_group() as group:
            for i, sample in enumerate(samples):
                group.start_soon(run, i, sample)
        return [r for r in results if r is not None]
