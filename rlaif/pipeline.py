"""The training loop on one anyio event loop.

Per step: pick tasks -> generate (worker thread) -> score (rustc jobs and teacher calls, async)
-> advantages -> update (worker thread) -> metrics. Generation runs in chunks of whole groups
(`student.generate_batch_size` sequences); each task's group goes to scoring the moment its chunk
is generated, so rustc and the teacher work while the next chunk is sampled. Generation of the
next step waits for this step's update: samples are always on-policy here.

CPU threads are set deliberately: torch slows down badly when another busy process wants the
same cores (measured on a 2-core machine: 2 torch threads went from 0.9 s to 7.9 s per step beside
one, while 1 thread stayed at 1.1 s), so generation uses `pipeline.torch_threads` (default: the
cores rustc leaves free) while scoring overlaps it, and every core otherwise.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import torch
from rich.console import Console

from . import config as config_module
from .algo import group_advantages
from .checkpoint import save_checkpoint
from .config import Config
from .curriculum import TaskSampler
from .metrics import RunLogger, StepProgress, score_metrics
from .rust import RustJudge, Toolchain, rust_cache
from .scoring import Scorer
from .student import Generator, load_student, pick_device, pick_dtype, resolve_source
from .teacher import Teacher
from .trainer import Trainer, make_accelerator
from .types import Sample, Scored, Task


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPolicy:
    """torch's thread count while rustc jobs run beside it, and while it runs alone."""

    beside_rustc: int
    alone: int

    @classmethod
    def for_config(cls, config: Config) -> ThreadPolicy:
        cores = cpu_count()
        beside = config.pipeline.torch_threads or max(1, cores - rust_concurrency(config))
        return cls(beside_rustc=beside, alone=cores)


def rust_concurrency(config: Config) -> int:
    return config.rust.concurrency or max(1, cpu_count() - 1)


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
    ):
        self.config = config
        self.run_dir = run_dir
        self.threads = ThreadPolicy.for_config(config)
        rust_jobs = rust_concurrency(config)

        torch.manual_seed(config.run.seed)
        device = pick_device(config.student.device)
        dtype = pick_dtype(config.student.dtype, device)
        model, self.tokenizer = load_student(config.student, device, dtype)
        self.trainer = Trainer(model, config, make_accelerator(device))
        self.generator = Generator(self.trainer.policy, self.tokenizer, config.student)
        judge = RustJudge(toolchain, config.rust, rust_jobs, rust_cache(config.cache))
        self.scorer = Scorer(judge, teacher, config.rewards)
        self.sampler = TaskSampler(tasks, config.curriculum.shuffle, config.run.seed)
        self.logger = RunLogger(run_dir, config.logging.samples)
        params = sum(p.numel() for p in model.parameters())
        console.print(
            f"student: {config.student.model} ({params / 1e6:.1f}M params, {dtype}, "
            f"{self.trainer.accelerator.device}); rustc jobs: {rust_jobs}; torch threads: "
            f"{self.threads.beside_rustc} beside rustc, {self.threads.alone} alone"
        )

    async def step(self, iteration: int) -> dict[str, float]:
        cfg = self.config.trainer
        started = time.perf_counter()
        tasks = self.sampler.next(cfg.tasks_per_step)
        scored, timings = await generate_and_score(
            self.generator,
            self.scorer,
            tasks,
            cfg.samples_per_prompt,
            self.trainer.version,
            self.config.student.generate_batch_size,
            self.threads,
        )

        rewards = _reward_tensor(scored, cfg.tasks_per_step, cfg.samples_per_prompt)  # [B, G, S]
        advantages, zero_std = group_advantages(rewards, cfg.whiten_eps)  # [B, G], [B]
        flat_adv = advantages.flatten().tolist()

        train_start = time.perf_counter()
        torch.set_num_threads(self.threads.alone)  # nothing else runs during the update
        stats = await anyio.to_thread.run_sync(
            self.trainer.update, [s.sample for s in scored], flat_adv
        )
        train_seconds = time.perf_counter() - train_start

        row = {"iteration": iteration, **score_metrics(scored), **stats}
        row.update(
            frac_zero_std=zero_std.float().mean().item(),
            gen_seconds=timings["gen"],
            score_seconds=timings["score"],
            train_seconds=train_seconds,
            step_seconds=time.perf_counter() - started,
        )
        self.logger.log_step(row)
        self.logger.log_samples(iteration, scored, flat_adv)
        return row

    def save(self, step: int) -> Path:
        state = {"policy_version": self.trainer.version, "sampler": self.sampler.state()}
        return save_checkpoint(self.run_dir, step, self.trainer.policy, self.tokenizer, state)


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
) -> Path:
    """Run `trainer.max_steps` steps and save the final checkpoint; returns the run directory."""
    resolve_source(config.student.model)  # a missing model fails before a run dir is made
    run_dir = make_run_dir(config)
    config_module.save(config, run_dir / "config.yaml")
    console.print(f"run: {run_dir}")
    run = await anyio.to_thread.run_sync(
        lambda: Run(config, tasks, toolchain, teacher, run_dir, console)
    )
    steps = config.trainer.max_steps
    try:
        with StepProgress(steps, config.logging.progress, console) as progress:
            for iteration in range(1, steps + 1):
                progress.advance(await run.step(iteration))
    finally:
        if teacher is not None:
            await teacher.aclose()
    checkpoint = await anyio.to_thread.run_sync(run.save, steps)
    console.print(
        f"done: {steps} steps; metrics in {run_dir / 'metrics.csv'}; model in {checkpoint}"
    )
    return run_dir
