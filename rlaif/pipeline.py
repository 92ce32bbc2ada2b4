"""The training loop on one anyio event loop.

Per step: pick tasks -> generate (worker thread) -> score (rustc jobs and teacher calls, async)
-> advantages -> update (worker thread) -> metrics. Generation runs in chunks of whole groups
(`student.generate_batch_size` sequences); each task's group goes to scoring the moment its chunk
is generated, so rustc and the teacher work while the next chunk is sampled. Generation of the
next step waits for this step's update: samples are always on-policy here. With dynamic sampling
on (`curriculum.max_replacements`), groups whose rewards are all equal are swapped for fresh
tasks' groups before the update (`replace_zero_variance`); the curriculum learns from every group.

Under `accelerate launch` every process runs this loop: it generates and scores its contiguous
share of the step's tasks (whole groups), all scored samples are gathered so every process
whitens the same rewards, each trains on its own share, and only the main process writes files.

CPU threads are set deliberately: torch slows down badly when another busy process wants the
same cores (measured on a 2-core machine: 2 torch threads went from 0.9 s to 7.9 s per step beside
one, while 1 thread stayed at 1.1 s), so generation uses `pipeline.torch_threads` (default: the
cores rustc leaves free) while scoring overlaps it, and every core otherwise.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import torch
from rich.console import Console

from . import config as config_module
from .algo import batch_normalize, group_advantages
from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_policy_weights,
    prune_checkpoints,
    remove_after,
    save_checkpoint,
    set_rng_state,
)
from .config import Config, ConfigError
from .curriculum import CurriculumSampler, sample_success
from .metrics import RunLogger, StepProgress, score_metrics
from .resume import ResumePoint, trim_logs
from .rust import RustJudge, Toolchain, cpu_count, default_concurrency, rust_cache
from .scoring import Scorer
from .student import Generator, load_student, pick_device, pick_dtype, resolve_source
from .teacher import Teacher, TeacherBudgetExhausted
from .trainer import (
    Trainer,
    from_main,
    gather_lists,
    make_accelerator,
    process_share,
    share_bounds,
)
from .types import Sample, Scored, Task


@dataclass(frozen=True)
class ThreadPolicy:
    """torch's thread count while rustc jobs run beside it, and while it runs alone."""

    beside_rustc: int
    alone: int

    @classmethod
    def for_config(cls, config: Config, processes: int = 1) -> ThreadPolicy:
        cores = max(1, cpu_count() // processes)  # processes on this machine share its cores
        beside = config.pipeline.torch_threads or max(1, cores - rust_concurrency(config))
        return cls(beside_rustc=beside, alone=cores)


def rust_concurrency(config: Config) -> int:
    return default_concurrency(config.rust)


def make_run_dir(config: Config) -> Path:
    """runs/<name>: a new directory; an explicit name that is already used is refused."""
    root = Path(config.run.output_dir)
    if config.run.name:
        run_dir = root / config.run.name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(
                f"{run_dir} already holds a run; choose another run.name (--set run.name=...)"
            )
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir, n = root / stamp, 1
        while run_dir.exists():
            run_dir, n = root / f"{stamp}-{n}", n + 1
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class Run:
    """Everything one training run holds; `step()` runs one iteration of the loop."""

    def __init__(
        self,
        config: Config,
        tasks: list[Task],
        toolchain: Toolchain,
        teacher: Teacher | None,
        run_dir: Path,
        console: Console,
        accelerator=None,
        eval_tasks: list[Task] | None = None,
    ):
        """`accelerator`: this process's (from `make_accelerator`); made here when None.

        With several processes (`accelerate launch`), every process samples the same tasks
        (same seed), generates and scores its contiguous share of them, and trains on its own
        samples; only the main process writes files.
        """
        self.config = config
        self.run_dir = run_dir
        acc = accelerator or make_accelerator(pick_device(config.student.device))
        self.is_main = acc.is_main_process
        self.threads = ThreadPolicy.for_config(config, local_processes(acc.num_processes))
        rust_jobs = rust_concurrency(config)

        # Seeded per process, so processes do not draw the same random numbers for sampling.
        torch.manual_seed(config.run.seed + acc.process_index)
        device = acc.device
        dtype = pick_dtype(config.student.dtype, device)
        model, self.tokenizer = load_student(config.student, device, dtype)
        self.trainer = Trainer(model, config, acc)
        self.generator = Generator(self.trainer.policy, self.tokenizer, config.student)
        judge = RustJudge(toolchain, config.rust, rust_jobs, rust_cache(config.cache))
        self.scorer = Scorer(judge, teacher, config.rewards)
        # Every process holds the same sampler and feeds it the same gathered results, so all
        # of them draw the same tasks each step.
        self.sampler = CurriculumSampler(tasks, config.curriculum, config.run.seed)
        self.logger = (
            RunLogger(run_dir, config.logging.samples, config.logging.tensorboard)
            if self.is_main
            else None
        )
        self.eval_tasks = (eval_tasks or [])[: config.eval.max_tasks or None]
        params = sum(p.numel() for p in model.parameters())
        console.print(
            f"student: {config.student.model} ({params / 1e6:.1f}M params, {dtype}, "
            f"{self.trainer.accelerator.device}); rustc jobs: {rust_jobs}; torch threads: "
            f"{self.threads.beside_rustc} beside rustc, {self.threads.alone} alone"
            + (f"; processes: {acc.num_processes}" if acc.num_processes > 1 else "")
        )

    async def step(self, iteration: int) -> dict[str, float]:
        cfg = self.config.trainer
        started = time.perf_counter()
        acc = self.trainer.accelerator
        timings = {"gen": 0.0, "score": 0.0}
        made_by: dict[int, int] = {}  # id(group) -> the process that generated it

        async def groups_of(tasks: list[Task]) -> list[list[Scored]]:
            """Each process generates and scores its share of whole tasks; all get all groups."""
            mine, _ = process_share(tasks, acc)
            local, spent = await generate_and_score(
                self.generator,
                self.scorer,
                mine,
                cfg.samples_per_prompt,
                self.trainer.version,
                self.config.student.generate_batch_size,
                self.threads,
            )
            timings.update({k: timings[k] + spent[k] for k in timings})
            gathered = gather_lists(local, acc)  # process order = task order
            g = cfg.samples_per_prompt
            groups = [gathered[i * g : (i + 1) * g] for i in range(len(tasks))]
            for process in range(acc.num_processes):
                first, end = share_bounds(len(tasks), acc.num_processes, process)
                made_by.update({id(group): process for group in groups[first:end]})
            return groups

        groups, dropped = await replace_zero_variance(
            await groups_of(self.sampler.next(cfg.tasks_per_step)),
            self.sampler,
            groups_of,
            cfg.whiten_eps,
            self.config.curriculum.max_replacements,
        )
        # Every process sees every reward before whitening, and the curriculum sees them all.
        self.sampler.update(
            [
                (g[0].sample.task.id, [sample_success(s, self.config.curriculum) for s in g])
                for g in groups + dropped
            ]
        )
        scored = [s for group in groups for s in group]
        processes = [made_by[id(group)] for group in groups for _ in group]

        rewards = _reward_tensor(scored, cfg.tasks_per_step, cfg.samples_per_prompt)  # [B, G, S]
        advantages, zero_std = group_advantages(
            rewards, cfg.whiten_eps, cfg.advantage_mode
        )  # [B, G], [B]
        if cfg.batch_normalize:
            advantages = batch_normalize(advantages, zero_std, cfg.whiten_eps)  # [B, G]
        flat_adv = advantages.flatten().tolist()
        # Each process trains on an equal contiguous share of the batch's groups.
        train_groups, first_group = process_share(groups, acc)
        first = first_group * cfg.samples_per_prompt
        local = [s for group in train_groups for s in group]
        local_adv = flat_adv[first : first + len(local)]

        train_start = time.perf_counter()
        torch.set_num_threads(self.threads.alone)  # nothing else runs during the update
        stats = await anyio.to_thread.run_sync(
            self.trainer.update, [s.sample for s in local], local_adv
        )
        train_seconds = time.perf_counter() - train_start

        row = {"iteration": iteration, **score_metrics(scored), **stats}
        row.update(self.sampler.metrics(), curriculum_replaced=len(dropped))
        row.update(
            frac_zero_std=zero_std.float().mean().item(),
            gen_seconds=timings["gen"],
            score_seconds=timings["score"],
            train_seconds=train_seconds,
            step_seconds=time.perf_counter() - started,
        )
        if self.scorer.teacher is not None:
            row.update(self.scorer.teacher.metrics())  # this process's teacher calls
        row.update(await self.periodic_eval(iteration))
        if self.logger is not None:
            self.logger.log_step(row)
            self.logger.log_samples(iteration, scored, flat_adv, processes)
        return row

    async def periodic_eval(self, iteration: int) -> dict[str, float | None]:
        """eval_* columns: measured every `eval.every` steps, empty (None) in between."""
        from .evaluate import evaluate_policy  # evaluate imports this module

        cfg = self.config.eval
        if not cfg.every or not self.eval_tasks:
            return {}
        ks = sorted({1, cfg.samples})
        keys = ["parse_rate", "compile_rate", "test_pass_rate", "mean_reward"]
        keys += [f"pass@{k}" for k in ks]
        if iteration % cfg.every:
            return {f"eval_{key}": None for key in [*keys, "seconds"]}
        started = time.perf_counter()
        scorer = Scorer(self.scorer.rust, None, self.config.rewards)
        result = await evaluate_policy(
            self.generator,
            scorer,
            self.eval_tasks,
            cfg.samples,
            ks,
            self.threads,
            self.config.run.seed,
        )
        row: dict[str, float | None] = {f"eval_{key}": result.rows["all"][key] for key in keys}
        row["eval_seconds"] = time.perf_counter() - started
        return row

    def save(self, step: int) -> Path:
        """Checkpoint after `step`, then delete all but the newest `checkpoint.keep`."""
        path = save_checkpoint(
            self.run_dir,
            step,
            model=self.trainer.policy,
            tokenizer=self.tokenizer,
            trainer_state=self.trainer.state_dict(),
            sampler_state=self.sampler.state(),
            config=self.config,
            metrics_rows=self.logger.rows if self.logger is not None else 0,
            tasks=self.sampler.tasks,
        )
        prune_checkpoints(self.run_dir, self.config.checkpoint.keep)
        return path

    def restore(self, path: Path) -> Checkpoint:
        """Continue from a checkpoint: weights, trainer and sampler state, then the RNGs (last,
        so nothing done while loading draws from them)."""
        checkpoint = load_checkpoint(path)
        load_policy_weights(self.trainer.policy, path)
        self.trainer.load_state_dict(checkpoint.trainer)
        self.sampler.load_state(checkpoint.sampler)
        set_rng_state(checkpoint.rng)
        return checkpoint


async def generate_and_score(
    generator: Generator,
    scorer: Scorer,
    tasks: list[Task],
    group_size: int,
    version: int,
    batch_size: int,
    threads: ThreadPolicy,
) -> tuple[list[Scored], dict[str, float]]:
    """Generate chunk by chunk in a worker thread; score each group as soon as it exists.

    A chunk holds as many whole groups as fit in `batch_size` sequences. With one chunk nothing
    overlaps generation, so it gets every core.
    Returns the scored samples, task by task in order, and {"gen", "score"} seconds.
    """
    per_call = max(1, batch_size // group_size)
    chunks = [tasks[i : i + per_call] for i in range(0, len(tasks), per_call)]
    torch.set_num_threads(threads.beside_rustc if len(chunks) > 1 else threads.alone)
    results: list[list[Scored]] = [[] for _ in tasks]
    gen_seconds = 0.0
    score_window = [math.inf, 0.0]  # first scoring start, last scoring end
    send, receive = anyio.create_memory_object_stream[tuple[int, list[Sample]]](len(tasks))

    async def produce() -> None:
        nonlocal gen_seconds
        async with send:
            first = 0
            for chunk in chunks:
                t0 = time.perf_counter()
                groups = await anyio.to_thread.run_sync(
                    generator.generate, chunk, group_size, version
                )
                gen_seconds += time.perf_counter() - t0
                for offset, group in enumerate(groups):
                    await send.send((first + offset, group))
                first += len(chunk)

    async def score(index: int, group: list[Sample]) -> None:
        score_window[0] = min(score_window[0], time.perf_counter())
        results[index] = await scorer.score(group)
        score_window[1] = time.perf_counter()

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async with receive:
            async for index, group in receive:
                tg.start_soon(score, index, group)
    scored = [item for group in results for item in group]
    return scored, {"gen": gen_seconds, "score": max(0.0, score_window[1] - score_window[0])}


def local_processes(world: int) -> int:
    """Processes on this machine (torchrun / accelerate set LOCAL_WORLD_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


async def replace_zero_variance(
    groups: list[list[Scored]],
    sampler: CurriculumSampler,
    score: Callable[[list[Task]], Awaitable[list[list[Scored]]]],
    eps: float,
    budget: int,
) -> tuple[list[list[Scored]], list[list[Scored]]]:
    """Dynamic sampling (DAPO, Yu et al. 2025): swap each group whose rewards are all equal for a
    fresh task's group, at most `budget` fresh groups a step, while the sampler has fresh tasks.

    A fresh group may be uninformative too; it is then swapped again while budget remains.
    Returns (the batch, same size and order, and the groups swapped out of it).
    """
    groups, dropped, spent = list(groups), [], 0
    while spent < budget:
        flat = [i for i, zero in enumerate(_zero_std_groups(groups, eps)) if zero]
        fresh = sampler.replacements(min(len(flat), budget - spent)) if flat else []
        if not fresh:
            break
        spent += len(fresh)
        # Fresh tasks may be fewer than the uninformative groups: the first ones are swapped.
        for i, group in zip(flat[: len(fresh)], await score(fresh), strict=True):
            dropped.append(groups[i])
            groups[i] = group
    return groups, dropped


def _zero_std_groups(groups: list[list[Scored]], eps: float) -> list[bool]:
    """Which groups the whitening gives advantage 0 (its own rule, per judge with abstentions)."""
    scored = [s for group in groups for s in group]
    rewards = _reward_tensor(scored, len(groups), len(groups[0]))
    return group_advantages(rewards, eps)[1].tolist()


def _reward_tensor(scored: list[Scored], tasks: int, group: int) -> torch.Tensor:
    """[B, G, S] rewards by judge; a judge that is off for the whole run has no column."""
    sources = sorted({name for s in scored for name in s.sources})
    values = [[s.sources.get(name, math.nan) for name in sources] for s in scored]
    return torch.tensor(values, dtype=torch.float64).reshape(tasks, group, len(sources))


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
    main = accelerator.is_main_process
    if not main:
        console = Console(quiet=True)
    made: tuple[str | None, str | None] = (None, None)
    if main:
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
    if main:
        config_module.save(config, run_dir / "config.yaml")
    console.print(f"run: {run_dir}")
    run = await anyio.to_thread.run_sync(
        lambda: Run(config, tasks, toolchain, teacher, run_dir, console, accelerator, eval_tasks)
    )
    done, saved = 0, None
    if resume is not None:
        restored = await anyio.to_thread.run_sync(run.restore, resume.checkpoint)
        done = saved = restored.step
        if run.logger is not None and run.logger.rows != restored.metrics_rows:
            console.print(
                f"note: metrics.jsonl holds {run.logger.rows} rows up to step {done}; the "
                f"checkpoint counted {restored.metrics_rows} (was the file edited?)"
            )
    steps, every = config.trainer.max_steps, config.checkpoint.every
    try:
        with StepProgress(steps, config.logging.progress, console, start=done) as progress:
            for iteration in range(done + 1, steps + 1):
                progress.advance(await run.step(iteration))
                if every and iteration % every == 0 and iteration < steps and main:
                    await anyio.to_thread.run_sync(run.save, iteration)
                    saved = iteration
                # teacher.on_budget=stop ends the run after this step; the main process decides,
                # so every process stops at the same step.
                if from_main(_budget_stop(teacher), accelerator):
                    console.print(
                        f"{_budget_stop(teacher)}; teacher.on_budget is stop: the run ends "
                        f"after step {iteration}"
                    )
                    steps = iteration
                    break
    finally:
        if run.logger is not None:
            run.logger.close()
        if teacher is not None:
            await teacher.aclose()
    last = max(steps, done)
    checkpoint = run_dir / "checkpoints" / f"step_{last}"
    if saved != last and main:
        checkpoint = await anyio.to_thread.run_sync(run.save, last)
    console.print(
        f"done: {last} steps; metrics in {run_dir / 'metrics.csv'}; model in {checkpoint}"
    )
    accelerator.wait_for_everyone()
    return run_dir


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
