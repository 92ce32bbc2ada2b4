"""The training loop: generation, scoring and updates overlapped on one anyio event loop.

One driver performs every operation on the weights, in a fixed order, and everything else runs
around it:

    generate k+1 ─ update k ─ generate k+2 ─ update k+1 ─ ...      (worker thread, one at a time)
    ····score k···········  ····score k+1·················          (rustc jobs, teacher calls)

Generation of step k+1 starts while step k is still being scored, and step k+1's scoring runs
behind step k's update, so with `pipeline.max_staleness: 1` a step costs about
max(generation + update, scoring) instead of their sum. Each group is sent to scoring the moment
its chunk is generated (`rollout.stream.Rollout`). Generation may run ahead of the update by at most
`max_staleness` steps (`Schedule`); samples carry the policy version that made them, and the loss
corrects the ones that are a version or more old (truncated importance sampling, `trainer.is_cap`).

Generation and the update never touch the weights at the same time, because the driver awaits one
before it starts the other: the driver is the lock, and its fixed order makes two runs with the
same seed take the same steps, however long scoring takes. Generation does not run ahead past a
step that is checkpointed, so a checkpoint never holds a batch sampled ahead and resuming from it
repeats exactly what the uninterrupted run did.

A SIGINT or SIGTERM stops the run cleanly (`stop.StopRequest`): work in flight is cancelled, the
update in progress finishes, a checkpoint is written, and the command that resumes is printed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from rich.console import Console

from rlaif import config as config_module
from rlaif.config import Config, ConfigError
from rlaif.judges.rust.jobs import Toolchain
from rlaif.judges.teacher.client import Teacher, TeacherBudgetExhausted
from rlaif.loop.blind import BlindGuard
from rlaif.loop.run import Run, make_run_dir
from rlaif.loop.stop import StopRequest
from rlaif.records.checkpoint import remove_after
from rlaif.records.metrics import StepProgress
from rlaif.records.resume import ResumePoint, trim_logs
from rlaif.rollout.stream import Batch, Rollout
from rlaif.student.model import pick_device, resolve_source
from rlaif.training.advantages import step_advantages, zero_std_groups
from rlaif.training.curriculum import CurriculumSampler, group_outcomes
from rlaif.training.processes import from_main, make_accelerator
from rlaif.types import Groups, Task


@dataclass(frozen=True)
class Schedule:
    """Which step's batch may be generated once `updated` updates are done."""

    max_staleness: int
    checkpoint_every: int
    last_step: int

    def may_generate(self, step: int, updated: int) -> bool:
        """Step `step`'s samples would be `step - 1 - updated` updates old when trained on."""
        if step > self.last_step or step - 1 - updated > self.max_staleness:
            return False
        return not any(self.checkpointed(c) for c in range(updated + 1, step))

    def checkpointed(self, step: int) -> bool:
        """Whether a checkpoint is written after `step` (the last step's always is)."""
        every = self.checkpoint_every
        return step == self.last_step or bool(every) and step % every == 0


@dataclass
class StepTimes:
    """Seconds one step spent per stage; `wait` is how long the update waited on scoring."""

    gen: float = 0.0
    score: float = 0.0
    wait: float = 0.0

    def add(self, batch: Batch, waited: float) -> None:
        self.gen += batch.gen_seconds
        self.score += batch.score_seconds
        self.wait += waited

    def row(self, train: float, step: float, samples: int) -> dict[str, float | None]:
        return {
            "gen_seconds": self.gen,
            "score_seconds": self.score,
            "score_wait_seconds": self.wait,
            # Scoring that ran while the driver generated or trained instead of waiting for it.
            "score_hidden_frac": 1.0 - min(self.wait, self.score) / self.score
            if self.score > 0
            else None,
            "train_seconds": train,
            "step_seconds": step,
            "samples_per_s": samples / step if step > 0 else None,
        }


@dataclass
class ScoredBatch:
    """One step's scored groups, as the update takes them."""

    groups: Groups  # `trainer.tasks_per_step` groups, in task order
    processes: list[int]  # the process that generated each group
    dropped: Groups = field(default_factory=list)  # swapped out by dynamic sampling


class Pipeline:
    """Runs the steps of one run in the order `Schedule` allows; see the module docstring.

    `step` is one training step, top to bottom; `steps` runs them, logs each row and decides
    when to checkpoint or stop.
    """

    def __init__(self, run: Run, schedule: Schedule, stop: StopRequest, console: Console):
        self.run = run
        self.schedule = schedule
        self.stop = stop
        self.console = console
        self.config = run.config
        self.saved: int | None = None  # the step of the newest checkpoint written
        self.done = 0  # the last step whose update was applied
        self._ahead: deque[Batch] = deque()  # generated, not yet trained on
        self._next = 1  # the next step to generate
        self._rollout: Rollout | None = None
        self._step_began = 0.0
        self.blind = BlindGuard(self.config.run.max_blind_steps, self.config.teacher.required)

    async def steps(self, first: int, teacher: Teacher | None) -> int:
        """Run steps `first`..last; returns the last step whose update was applied."""
        run, last = self.run, self.schedule.last_step
        self.done, self._next = first - 1, first
        self._step_began = time.perf_counter()
        run.scorer.in_flight()  # open the gauges' first window
        progress = StepProgress(last, self.config.logging.progress, self.console, start=first - 1)
        with progress:
            async with anyio.create_task_group() as scoring:
                self._rollout = run.rollout(scoring)
                try:
                    for iteration in range(first, last + 1):
                        row = await self.step(iteration)
                        if row is None:
                            break
                        if run.logger is not None:
                            run.logger.log_step(row)
                        progress.advance(row)
                        due = self.schedule.checkpointed(iteration) and iteration < last
                        if due and not self.blind.blind:  # no checkpoint of blind steps
                            await self.save(iteration)
                        if self._budget_stop(teacher, iteration) or self._stopping():
                            break
                finally:
                    scoring.cancel_scope.cancel()  # batches generated ahead of a stop
        return self.done

    async def step(self, iteration: int) -> dict[str, float | None] | None:
        """One training step, in order; returns its metrics row, or None when a stop came
        before its update."""
        run, config = self.run, self.config
        times, batch = StepTimes(), None
        with self.stop.cancellable():
            # 1. Generate ahead (a worker thread, one batch at a time): every batch that the
            #    staleness bound allows. Each task's group goes to scoring (rustc jobs, teacher
            #    calls) the moment it is generated, and scoring runs on in the background, behind
            #    this step's update and the next generation.
            while self.schedule.may_generate(self._next, self.done):
                tasks = run.sampler.next(config.trainer.tasks_per_step)
                self._ahead.append(await run.generate(self._rollout, tasks))
                self._next += 1
            # 2. Wait for this step's batch (the oldest generated) to be scored.
            batch = await self._collect(self._ahead.popleft(), config.trainer.tasks_per_step, times)
            # 3. Dynamic sampling: a group whose rewards are all equal teaches nothing; swap it
            #    for a fresh task's group, generated and scored now.
            batch = await self._replace_zero_variance(batch, times)
        if batch is None or self._stopping():
            return None
        # 4. No training blind: raise before the update once no judge answered for K steps.
        self.blind.observe(iteration, [s for g in batch.groups + batch.dropped for s in g])
        trained = time.perf_counter()
        # 5. The curriculum learns every group's outcome, the swapped-out groups' too.
        run.sampler.update(group_outcomes(batch.groups + batch.dropped, config.curriculum))
        # 6. Advantages: each judge's rewards whitened within its group (per-prompt baseline).
        advantages = step_advantages(batch.groups, config.trainer)
        staleness = run.staleness(batch.groups)
        # 7. The update, on this process's share of the groups (a worker thread).
        stats = await run.update(batch.groups, advantages.per_sample)
        row = run.metrics_row(iteration, batch.groups, batch.dropped, stats, advantages, staleness)
        run.log_samples(iteration, batch.groups, advantages.per_sample, batch.processes)
        train_seconds = time.perf_counter() - trained
        self.done = iteration
        # 8. Held-out evaluation, every `eval.every` steps.
        row.update(await run.periodic_eval(iteration))
        # 9. Timings: how much of scoring hid behind generation and the update.
        now = time.perf_counter()
        samples = sum(len(g) for g in batch.groups)
        row.update(times.row(train_seconds, now - self._step_began, samples))
        row.update(run.scorer.in_flight())
        self._step_began = now
        return row

    async def _collect(self, batch: Batch, n_tasks: int, times: StepTimes) -> ScoredBatch:
        """Wait for a batch's scores from every process (`n_tasks` in all), timing the wait."""
        waited = time.perf_counter()
        groups, processes = await self.run.collect(batch, n_tasks)
        times.add(batch, time.perf_counter() - waited)
        return ScoredBatch(groups, processes)

    async def _replace_zero_variance(self, batch: ScoredBatch, times: StepTimes) -> ScoredBatch:
        """`replace_zero_variance` on the step's batch: fresh groups are generated and scored
        at once, and remember which process made them."""
        made_by = dict(zip(map(id, batch.groups), batch.processes, strict=True))

        async def fresh_groups(tasks: list[Task]) -> Groups:
            batch = await self.run.generate(self._rollout, tasks)
            fresh = await self._collect(batch, len(tasks), times)
            made_by.update(zip(map(id, fresh.groups), fresh.processes, strict=True))
            return fresh.groups

        groups, dropped = await replace_zero_variance(
            batch.groups,
            self.run.sampler,
            fresh_groups,
            self.config.trainer.whiten_eps,
            self.config.curriculum.max_replacements,
        )
        return ScoredBatch(groups, [made_by[id(g)] for g in groups], dropped)

    async def save(self, step: int) -> Path | None:
        """Checkpoint after `step` (the main process writes it)."""
        if not self.run.is_main:
            return None
        path = await anyio.to_thread.run_sync(self.run.save, step)
        self.saved = step
        return path

    def _stopping(self) -> bool:
        """A signal arrived (on the main process, when there are several)."""
        return bool(from_main(bool(self.stop), self.run.accelerator))

    def _budget_stop(self, teacher: Teacher | None, iteration: int) -> bool:
        """teacher.on_budget=stop ends the run after this step; the main process decides."""
        reason = from_main(_budget_stop(teacher), self.run.accelerator)
        if reason is not None:
            self.console.print(
                f"{reason}; teacher.on_budget is stop: the run ends after step {iteration}"
            )
        return reason is not None


async def replace_zero_variance(
    groups: Groups,
    sampler: CurriculumSampler,
    fresh_groups: Callable[[list[Task]], Awaitable[Groups]],
    eps: float,
    budget: int,
) -> tuple[Groups, Groups]:
    """Dynamic sampling (DAPO, Yu et al. 2025): swap each group whose rewards are all equal for a
    fresh task's group, at most `budget` fresh groups a step, while the sampler has fresh tasks.

    A fresh group may be uninformative too; it is then swapped again while budget remains.
    Returns (the batch, same size and order, and the groups swapped out of it).
    """
    groups, dropped, spent = list(groups), [], 0
    while spent < budget:
        flat = [i for i, zero in enumerate(zero_std_groups(groups, eps)) if zero]
        fresh = sampler.replacements(min(len(flat), budget - spent)) if flat else []
        if not fresh:
            break
        spent += len(fresh)
        # Fresh tasks may be fewer than the uninformative groups: the first ones are swapped.
        for i, group in zip(flat[: len(fresh)], await fresh_groups(fresh), strict=True):
            dropped.append(groups[i])
            groups[i] = group
    return groups, dropped


async def train(
    config: Config,
    tasks: list[Task],
    toolchain: Toolchain,
    teacher: Teacher | None,
    console: Console,
    *,
    resume: ResumePoint | None = None,
    eval_tasks: list[Task] | None = None,
) -> Path:
    """Run steps up to `trainer.max_steps`, checkpointing every `checkpoint.every` and after the
    last; with `resume`, continue that run from its checkpoint. Returns the run directory.

    Under `accelerate launch` every process runs this; only the main process makes (or prepares)
    the run directory, prints and writes files, and the others learn its name from it.
    """
    resolve_source(config.student.model)  # a missing model fails before a run dir is made
    accelerator = make_accelerator(pick_device(config.student.device))
    world = accelerator.num_processes
    if config.trainer.tasks_per_step % world:
        raise ConfigError(
            f"trainer.tasks_per_step={config.trainer.tasks_per_step}: with {world} processes it "
            f"must be a multiple of {world} (each process takes whole tasks)"
        )
    if not accelerator.is_main_process:
        console = Console(quiet=True)
    run_dir = _run_directory(config, resume, accelerator, console)
    run = await anyio.to_thread.run_sync(
        lambda: Run(config, tasks, toolchain, teacher, run_dir, console, accelerator, eval_tasks)
    )
    done = 0 if resume is None else await _restore(run, resume, console)
    stop = StopRequest(console, cancel_in_flight=world == 1)
    run.generator.stop_requested = stop.requested
    schedule = Schedule(
        config.pipeline.max_staleness, config.checkpoint.every, config.trainer.max_steps
    )
    pipeline = Pipeline(run, schedule, stop, console)
    pipeline.saved = done if resume is not None else None
    try:
        async with anyio.create_task_group() as signals:
            signals.start_soon(stop.watch)
            try:
                done = await pipeline.steps(done + 1, teacher)
            finally:
                signals.cancel_scope.cancel()
    finally:
        if run.logger is not None:
            run.logger.close()
        if teacher is not None:
            await teacher.aclose()
    checkpoint = run_dir / "checkpoints" / f"step_{done}"
    if done and pipeline.saved != done:
        checkpoint = await pipeline.save(done) or checkpoint
    accelerator.wait_for_everyone()
    console.print(_ending(stop, done, config.trainer.max_steps, run_dir, checkpoint))
    return run_dir


def _run_directory(
    config: Config, resume: ResumePoint | None, accelerator, console: Console
) -> Path:
    """The run's directory: made (or, to resume, trimmed to its checkpoint) by the main process,
    whose name every other process learns from it; the resolved config saved in it."""
    made: tuple[str | None, str | None] = (None, None)
    if accelerator.is_main_process:
        try:
            if resume is None:
                made = (str(make_run_dir(config)), None)
            else:
                _prepare_resume(resume, console)
                made = (str(resume.run_dir), None)
        except FileExistsError as exc:
            made = (None, str(exc))
    path, problem = from_main(made, accelerator)
    if problem is not None:
        raise FileExistsError(problem)
    run_dir = Path(path)
    if accelerator.is_main_process:
        config_module.save(config, run_dir / "config.yaml")
    console.print(f"run: {run_dir}")
    return run_dir


async def _restore(run: Run, resume: ResumePoint, console: Console) -> int:
    """Load the checkpoint into the run; returns its step."""
    restored = await anyio.to_thread.run_sync(run.restore, resume.checkpoint)
    if run.logger is not None and run.logger.rows != restored.metrics_rows:
        console.print(
            f"note: metrics.jsonl holds {run.logger.rows} rows up to step {restored.step}; the "
            f"checkpoint counted {restored.metrics_rows} (was the file edited?)"
        )
    return restored.step


def _ending(stop: StopRequest, done: int, steps: int, run_dir: Path, checkpoint: Path) -> str:
    """The run's last line: where its model is, or, after a stop, how to resume it."""
    if not stop:
        return f"done: {done} steps; metrics in {run_dir / 'metrics.csv'}; model in {checkpoint}"
    if not done:
        return f"stopped by {stop.signal} before the first step finished: nothing saved"
    return (
        f"stopped by {stop.signal} after step {done} of {steps}; checkpoint: {checkpoint}\n"
        f"resume with: python -m rlaif train --resume {run_dir}"
    )


def _budget_stop(teacher: Teacher | None) -> str | None:
    """Why the teacher ended the run (on_budget=stop and the budget is spent), if it did."""
    if teacher is None:
        return None
    try:
        teacher.raise_if_stopped()
    except TeacherBudgetExhausted as exc:
        return str(exc)
    return None


def _prepare_resume(resume: ResumePoint, console: Console) -> None:
    """Make the run directory agree with the checkpoint: no later checkpoints, no later rows."""
    removed = remove_after(resume.run_dir, resume.step)
    dropped = trim_logs(resume.run_dir, resume.step)
    console.print(f"resuming {resume.run_dir} from {resume.checkpoint.name}")
    if removed:
        console.print(f"removed newer checkpoints: {', '.join(p.name for p in removed)}")
    if any(dropped.values()):
        console.print(
            "dropped rows logged after the checkpoint: "
            + ", ".join(f"{n} from {name}" for name, n in dropped.items() if n)
        )
