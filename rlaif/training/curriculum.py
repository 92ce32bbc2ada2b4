"""Which tasks each step trains on: difficulty buckets that move with pass rates, and promotion.

Two ideas combined, as REFERENCE.md ("Curriculum") suggests:
- Buckets (the Python RLAIF seed): a task is hard while its pass-rate EMA is below `hard_below`
  (0.3), easy from `easy_from` (0.7) on, medium in between. The EMA starts at the middle of the
  band of the task's label (easy 0.85, medium 0.5, hard 0.15 by default), so a task starts in its
  labelled bucket, and each step that samples it moves the EMA by `task_ema` toward the group's
  success rate: a task the student keeps solving becomes easy, one it keeps failing becomes hard.
- Stages (prime-rl pools tasks by running pass rate and checkpoints its sampler): the sampler
  starts at the easy bucket and moves to the next one when the success EMA of what it drew from
  its current bucket reaches `promote_at` after at least `min_stage_steps` steps. Once moved on, a
  `review_share` of every batch comes from the easier buckets, so what was learnt stays practised.

Within a pool the least drawn task goes first (ties: seeded random order, or file order when
`shuffle` is off), so every task of a bucket is seen before any is seen twice. When the current
bucket has no task left to draw, the next harder bucket lends them, then the easier ones.

What a "success" is comes from `curriculum.success` (see `sample_success`). Dynamic sampling
(DAPO, Yu et al. 2025) lives here on the sampler's side: `replacements(n)` gives fresh tasks for
this step; the pipeline asks the whitening (`algo.group_advantages`, the one rule) which groups
teach nothing and regenerates those.

Pure: no I/O, no clock; all randomness from one seeded `random.Random` whose state is part of
`state()`, so a resumed run draws the same tasks.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rlaif.config import CurriculumConfig
from rlaif.types import DIFFICULTIES, Scored, Task

BUCKETS = DIFFICULTIES  # easy, medium, hard: the order the sampler walks them
STATE_VERSION = 1


def label_prior(label: str, hard_below: float, easy_from: float) -> float:
    """The pass-rate EMA a task starts with: the middle of its label's band."""
    if label == "easy":
        return (easy_from + 1.0) / 2
    if label == "hard":
        return hard_below / 2
    return (hard_below + easy_from) / 2


def bucket_of(ema: float, hard_below: float, easy_from: float) -> str:
    """low < hard_below <= medium < easy_from <= high; a high pass rate makes a task easy."""
    if ema >= easy_from:
        return "easy"
    if ema < hard_below:
        return "hard"
    return "medium"


def sample_success(scored: Scored, config: CurriculumConfig) -> bool | None:
    """Whether a sample succeeded, or None when its judge could not tell (left out of rates)."""
    if config.success == "reward":
        reward = scored.reward
        return None if math.isnan(reward) else reward >= config.reward_threshold
    if scored.rust.sandbox_error is not None:
        return None
    if config.success == "tests":
        return scored.rust.all_tests_passed
    return scored.compiles


def group_outcomes(
    groups: Sequence[Sequence[Scored]], config: CurriculumConfig
) -> list[tuple[str, list[bool | None]]]:
    """What `CurriculumSampler.update` takes: each group's task id and its samples' success."""
    return [(g[0].sample.task.id, [sample_success(s, config) for s in g]) for g in groups]


def _match(step: list[_Draw], task_id: str, tasks: list[Task]) -> _Draw:
    for draw in step:
        if not draw.matched and tasks[draw.index].id == task_id:
            draw.matched = True
            return draw
    raise ValueError(f"task {task_id!r} was not drawn this step (or reported twice)")


@dataclass
class _Draw:
    index: int  # position in the sampler's task list
    bucket: str  # the task's bucket when it was drawn
    current: bool  # drawn for the current stage (False: a review task)
    matched: bool = False  # its outcome has been reported by `update`


class CurriculumSampler:
    """Draws each step's tasks, learns from their outcomes, and reports per-bucket metrics.

    Per step: `next(n)`, optionally `replacements(k)`, then `update(outcomes)` with every group
    that was scored, then `metrics()`. `state()` / `load_state()` between steps. The pipeline may
    draw steps ahead (`pipeline.max_staleness`): `next` opens a step, and `replacements` and
    `update` belong to the oldest step not yet reported.
    """

    def __init__(self, tasks: list[Task], config: CurriculumConfig, seed: int):
        if not tasks:
            raise ValueError("the curriculum needs at least one task")
        self.tasks = tasks
        self.config = config
        self._ids = {task.id: i for i, task in enumerate(tasks)}
        if len(self._ids) != len(tasks):
            raise ValueError("task ids must be unique")
        self.ema = [label_prior(t.difficulty, config.hard_below, config.easy_from) for t in tasks]
        self.draws = [0] * len(tasks)
        self.stage = 0  # index into BUCKETS of the bucket being learnt
        self.stage_success: float | None = None  # EMA of the current stage's success per step
        self.stage_steps = 0  # steps with a known outcome since this stage began
        self.review_credit = 0.0  # fractional review slots carried between steps
        self._rng = random.Random(seed)
        self._steps: deque[list[_Draw]] = deque()  # drawn, not yet reported; oldest first
        self._metrics: dict[str, float] = {}

    # -- drawing ----------------------------------------------------------------------------

    def bucket(self, index: int) -> str:
        return bucket_of(self.ema[index], self.config.hard_below, self.config.easy_from)

    def next(self, n: int) -> list[Task]:
        """The tasks of a new step: n - r from the current stage, r for review (see module doc)."""
        step: list[_Draw] = []
        self._steps.append(step)
        review = 0
        if self.config.enabled and self.stage > 0:
            # Carry the fraction, so a share of 0.25 with 2 tasks a step reviews 1 task every
            # second step instead of rounding to 0 or 1 every step.
            self.review_credit += n * self.config.review_share
            review = min(n, int(self.review_credit))
            self.review_credit -= review
        current, older = self._current_pools(), self._review_pools()
        picked = [self._pick(step, current, True, repeat=True) for _ in range(n - review)]
        picked += [self._pick(step, older, False, repeat=True) for _ in range(review)]
        return [self.tasks[i] for i in picked]

    def replacements(self, n: int) -> list[Task]:
        """Up to n tasks not drawn yet in the oldest open step, from the current stage's pools;
        [] when none. For dynamic sampling: each replaces a group whose rewards were all equal.
        """
        picked = []
        for _ in range(n):
            index = self._pick(self._oldest(), self._current_pools(), True, repeat=False)
            if index is None:
                break
            picked.append(index)
        return [self.tasks[i] for i in picked]

    def _current_pools(self) -> list[list[int]]:
        """Task indices by bucket in the order they are drawn from for the current stage."""
        if not self.config.enabled:
            return [list(range(len(self.tasks)))]
        order = [*range(self.stage, len(BUCKETS)), *range(self.stage - 1, -1, -1)]
        by_bucket = {b: [] for b in BUCKETS}
        for i in range(len(self.tasks)):
            by_bucket[self.bucket(i)].append(i)
        return [by_bucket[BUCKETS[s]] for s in order]

    def _review_pools(self) -> list[list[int]]:
        easier = set(BUCKETS[: self.stage])
        return [[i for i in range(len(self.tasks)) if self.bucket(i) in easier]]

    def _oldest(self) -> list[_Draw]:
        if not self._steps:
            raise ValueError("no step was drawn: call next() first")
        return self._steps[0]

    def _pick(
        self, step: list[_Draw], pools: list[list[int]], current: bool, repeat: bool
    ) -> int | None:
        """The least drawn task not yet in `step`, from the first pool that has one.

        Review picks fall back on the current stage's pools. With `repeat`, a step larger than
        the task set draws a task twice rather than coming up short.
        """
        taken = {d.index for d in step}
        candidates = pools if current else [*pools, *self._current_pools()]
        free = next(([i for i in p if i not in taken] for p in candidates if set(p) - taken), [])
        if not free:
            if not repeat:
                return None
            free = list(range(len(self.tasks)))
        fewest = min(self.draws[i] for i in free)
        ties = [i for i in free if self.draws[i] == fewest]
        index = self._rng.choice(ties) if self.config.shuffle else ties[0]
        self.draws[index] += 1
        step.append(_Draw(index, self.bucket(index), current))
        return index

    # -- learning ---------------------------------------------------------------------------

    def update(self, outcomes: Sequence[tuple[str, Sequence[bool | None]]]) -> None:
        """Learn from this step's groups: (task id, each sample's success or None if unknown).

        Give every group that was scored this step, replaced ones included: they are real
        evidence of the task's pass rate. Moves each task's EMA, then the stage's success EMA,
        and promotes when it has reached `promote_at`.
        """
        c = self.config
        step = self._oldest()
        observed = {b: [0, 0] for b in BUCKETS}  # bucket -> [successes, known]
        stage_hits = [0, 0]
        for task_id, successes in outcomes:
            draw = _match(step, task_id, self.tasks)
            known = [bool(s) for s in successes if s is not None]
            if not known:
                continue
            rate = sum(known) / len(known)
            observed[draw.bucket][0] += sum(known)
            observed[draw.bucket][1] += len(known)
            if draw.current:
                stage_hits[0] += sum(known)
                stage_hits[1] += len(known)
            self.ema[draw.index] += c.task_ema * (rate - self.ema[draw.index])

        drawn_stage = self.stage
        promoted = False
        if stage_hits[1]:
            rate = stage_hits[0] / stage_hits[1]
            if self.stage_success is None:
                self.stage_success = rate  # the first step sets it: no bias toward a guess
            else:
                self.stage_success += c.stage_ema * (rate - self.stage_success)
            self.stage_steps += 1
        reached = self.stage_success
        if (
            c.enabled
            and self.stage < len(BUCKETS) - 1
            and self.stage_steps >= c.min_stage_steps
            and reached is not None
            and reached >= c.promote_at
        ):
            self.stage, self.stage_success, self.stage_steps = self.stage + 1, None, 0
            promoted = True
        self._metrics = self._step_metrics(step, observed, drawn_stage, reached, promoted)
        self._steps.popleft()

    def _step_metrics(
        self,
        step: list[_Draw],
        observed: dict,
        stage: int,
        success: float | None,
        promoted: bool,
    ) -> dict[str, float]:
        drawn = len(step) or 1
        row: dict[str, float] = {
            "curriculum_stage": stage,
            "curriculum_stage_success": math.nan if success is None else success,
            "curriculum_promoted": int(promoted),
        }
        for b in BUCKETS:
            hits, known = observed[b]
            row[f"curriculum_{b}_share"] = sum(d.bucket == b for d in step) / drawn
            row[f"curriculum_{b}_success"] = hits / known if known else math.nan
            row[f"curriculum_{b}_tasks"] = sum(self.bucket(i) == b for i in range(len(self.tasks)))
        return row

    def metrics(self) -> dict[str, float]:
        """The last step's row: per bucket the share of tasks drawn from it, their success rate
        (NaN when none), and how many tasks it holds now; the stage it drew at, its success EMA,
        and whether it moved on."""
        return dict(self._metrics)

    # -- state --------------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything the next draws depend on, as JSON-able data (taken between steps).

        Per task by id: EMA and draw count; the stage, its success EMA and steps; the review
        credit; and the RNG's full state.
        """
        version, internal, gauss = self._rng.getstate()
        return {
            "version": STATE_VERSION,
            "stage": self.stage,
            "stage_success": self.stage_success,
            "stage_steps": self.stage_steps,
            "review_credit": self.review_credit,
            "ema": {t.id: self.ema[i] for i, t in enumerate(self.tasks)},
            "draws": {t.id: self.draws[i] for i, t in enumerate(self.tasks)},
            "rng": [version, list(internal), gauss],
        }

    def load_state(self, state: dict) -> None:
        """Continue from `state()`. Tasks it does not name keep their label's start; ids it names
        that are no longer in the task set are ignored (the data changed between runs)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"curriculum state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        try:
            stage = int(state["stage"])
            if not 0 <= stage < len(BUCKETS):
                raise ValueError(f"stage {stage} out of range")
            version, internal, gauss = state["rng"]
            rng_state = (version, tuple(internal), gauss)
            ema, draws = dict(state["ema"]), dict(state["draws"])
            success = state["stage_success"]
            steps, credit = int(state["stage_steps"]), float(state["review_credit"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed curriculum state: {exc}") from exc
        self._rng.setstate(rng_state)
        self.stage, self.stage_steps, self.review_credit = stage, steps, credit
        self.stage_success = None if success is None else float(success)
        for task_id, i in self._ids.items():
            if task_id in ema:
                self.ema[i] = float(ema[task_id])
            if task_id in draws:
                self.draws[i] = int(draws[task_id])
        self._steps.clear()
