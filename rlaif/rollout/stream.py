"""Generation streamed into scoring: each task's group is scored the moment it is generated.

A `Rollout` samples a batch chunk by chunk in a worker thread (`student.generate_batch_size`
sequences a call, whole groups only) and starts scoring each group in a task group the caller
owns, so scoring outlives the call that generated it: the pipeline generates the next step while
this one's rustc jobs and teacher calls are still running, and waits on `Batch.wait` only when it
needs the rewards.

How many torch threads generation uses is threads.py's business (`ThreadPolicy`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup

from rlaif.judges.scoring import Scorer
from rlaif.rollout.threads import ThreadPolicy, in_torch_thread
from rlaif.student.model import Generator
from rlaif.types import Sample, Scored, Task

T = TypeVar("T")


@dataclass
class Batch:
    """One set of task groups on its way through scoring, with the time each stage took."""

    tasks: list[Task]
    group_size: int
    version: int  # updates the weights had seen when it was generated
    groups: list[list[Scored] | None] = field(init=False)
    gen_seconds: float = 0.0
    first_request: float = math.inf  # when its first group went to scoring
    last_verdict: float = 0.0  # when its last group came back
    _left: int = field(init=False)
    _scored: anyio.Event = field(init=False, default_factory=anyio.Event)

    def __post_init__(self) -> None:
        self.groups = [None] * len(self.tasks)
        self._left = len(self.tasks)
        if not self.tasks:
            self._scored.set()

    @property
    def score_seconds(self) -> float:
        """From the first group sent to scoring to the last verdict."""
        return max(0.0, self.last_verdict - self.first_request) if self.tasks else 0.0

    @property
    def done(self) -> bool:
        return self._scored.is_set()

    async def wait(self) -> list[list[Scored]]:
        """Every group, scored, in task order."""
        await self._scored.wait()
        return [group for group in self.groups if group is not None]

    def _finished(self, index: int, group: list[Scored]) -> None:
        self.groups[index] = group
        self.last_verdict = time.perf_counter()
        self._left -= 1
        if not self._left:
            self._scored.set()


class Rollout:
    """Generates batches and hands each group to scoring in `scoring` (a task group)."""

    def __init__(
        self,
        generator: Generator,
        scorer: Scorer,
        threads: ThreadPolicy,
        batch_size: int,
        scoring: TaskGroup,
    ):
        self.generator = generator
        self.scorer = scorer
        self.threads = threads
        self.batch_size = batch_size
        self.scoring = scoring

    async def generate(self, tasks: list[Task], group_size: int, version: int) -> Batch:
        """Generate `group_size` samples per task; returns once generated, scoring still running."""
        batch = Batch(tasks, group_size, version)
        per_call = max(1, self.batch_size // group_size)
        for first in range(0, len(tasks), per_call):
            chunk = tasks[first : first + per_call]
            started = time.perf_counter()
            groups = await in_torch_thread(
                self.threads,
                "gen",
                self.generator.generate,
                chunk,
                group_size,
                version,
                before_step=self.threads.hook("gen"),
            )
            batch.gen_seconds += time.perf_counter() - started
            for offset, group in enumerate(groups):
                self.scoring.start_soon(self._score, batch, first + offset, group)
        return batch

    async def _score(self, batch: Batch, index: int, group: list[Sample]) -> None:
        batch.first_request = min(batch.first_request, time.perf_counter())
        batch._finished(index, await self.scorer.score(group))


async def generate_and_score(
    generator: Generator,
    scorer: Scorer,
    tasks: list[Task],
    group_size: int,
    version: int,
    batch_size: int,
    threads: ThreadPolicy,
) -> tuple[list[Scored], dict[str, float]]:
    """One batch start to finish: the scored samples, task by task, and {"gen", "score"} seconds."""
    async with anyio.create_task_group() as scoring:
        batch = await Rollout(generator, scorer, threads, batch_size, scoring).generate(
            tasks, group_size, version
        )
    groups = await batch.wait()
    scored = [s for group in groups for s in group]
    return scored, {"gen": batch.gen_seconds, "score": batch.score_seconds}
