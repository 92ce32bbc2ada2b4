"""What one training run holds, and how a step's scored groups become an update.

`Run` loads the student, trainer, judges, curriculum and logger, and offers the pieces that one
training step (`pipeline.Pipeline.step`, which reads in order) calls: `generate` a batch,
`collect` its scored groups from every process, `update` the weights, build the step's
`metrics_row`, `log_samples`, `periodic_eval`, `save` and `restore`. Nothing here calls back into
the pipeline, and nothing here overlaps anything: the pipeline decides when each runs.

Under `accelerate launch` every process holds a Run: it generates and scores its contiguous share
of the step's tasks (whole groups), all scored samples are gathered so every process whitens the
same rewards, each trains on its own share, and only the main process writes files.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console

from rlaif.config import Config
from rlaif.evaluation.evaluate import evaluate_policy
from rlaif.judges.rust.jobs import RustJudge, Toolchain, default_concurrency, rust_cache
from rlaif.judges.scoring import Scorer
from rlaif.judges.teacher.client import Teacher
from rlaif.records.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_policy_weights,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from rlaif.records.metrics import RunLogger, score_metrics
from rlaif.rollout.stream import Batch, Rollout
from rlaif.rollout.threads import ThreadPolicy, in_torch_thread
from rlaif.student.model import Generator, load_student, pick_device, pick_dtype
from rlaif.student.precision import pick_autocast
from rlaif.training.advantages import Advantages
from rlaif.training.curriculum import CurriculumSampler
from rlaif.training.processes import gather_lists, make_accelerator, process_share, share_bounds
from rlaif.training.trainer import Trainer, update_objective
from rlaif.types import Groups, Task


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


def local_processes(world: int) -> int:
    """Processes on this machine (torchrun / accelerate set LOCAL_WORLD_SIZE)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


class Run:
    """Everything one training run holds, and the steps of one iteration."""

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
        """`accelerator`: this process's (from `make_accelerator`); made here when None."""
        self.config = config
        self.run_dir = run_dir
        acc = accelerator or make_accelerator(pick_device(config.student.device))
        self.accelerator = acc
        self.is_main = acc.is_main_process
        rust_jobs = default_concurrency(config.rust)

        # Seeded per process, so processes do not draw the same random numbers for sampling.
        torch.manual_seed(config.run.seed + acc.process_index)
        device = acc.device
        dtype = pick_dtype(config.student.dtype, device)
        model, self.tokenizer = load_student(config.student, device, dtype)
        self.trainer = Trainer(model, config, acc)
        self.generator = Generator(
            self.trainer.policy, self.tokenizer, config.student, precision=self.trainer.autocast
        )
        judge = RustJudge(toolchain, config.rust, rust_jobs, rust_cache(config.cache))

        # torch's threads follow the CPU work of scoring at each moment
        # (rollout.threads.ThreadPolicy): the rustc jobs running, and a local teacher server while
        # it answers.
        def busy() -> int:
            return judge.running() + (teacher.busy_cores() if teacher is not None else 0)

        self.threads = ThreadPolicy.for_config(config, busy, local_processes(acc.num_processes))
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
        compute = pick_autocast(config.student.autocast, device)
        threads = (
            f"{self.threads.fixed} (pipeline.torch_threads)"
            if self.threads.fixed
            else f"{self.threads.cores} less the rustc jobs running"
        )
        console.print(
            f"student: {config.student.model} ({params / 1e6:.1f}M params, {dtype} weights, "
            f"{'bf16 autocast' if compute else 'no autocast'}, {self.trainer.accelerator.device}); "
            f"rustc jobs: {rust_jobs}; torch threads: {threads}"
            + (f"; processes: {acc.num_processes}" if acc.num_processes > 1 else "")
        )
        console.print(f"update: {update_objective(config)}")

    def rollout(self, scoring) -> Rollout:
        """A Rollout whose scoring runs in the task group `scoring`."""
        return Rollout(
            self.generator,
            self.scorer,
            self.threads,
            self.config.student.generate_batch_size,
            scoring,
        )

    async def generate(self, rollout: Rollout, tasks: list[Task]) -> Batch:
        """Generate this process's share of `tasks` with the current weights; scoring goes on."""
        mine, _ = process_share(tasks, self.accelerator)
        g = self.config.trainer.samples_per_prompt
        return await rollout.generate(mine, g, self.version)

    async def collect(self, batch: Batch, n_tasks: int) -> tuple[Groups, list[int]]:
        """Every process's scored groups of one step (all `n_tasks`, in task order) and the
        process that generated each group."""
        acc, g = self.accelerator, self.config.trainer.samples_per_prompt
        local = [s for group in await batch.wait() for s in group]
        gathered = gather_lists(local, acc)  # process order = task order
        groups = [gathered[i * g : (i + 1) * g] for i in range(n_tasks)]
        made_by = [0] * n_tasks
        for process in range(acc.num_processes):
            first, end = share_bounds(n_tasks, acc.num_processes, process)
            made_by[first:end] = [process] * (end - first)
        return groups, made_by

    @property
    def version(self) -> int:
        """Updates applied so far: the policy version new samples carry."""
        return self.trainer.version

    async def update(self, groups: Groups, advantages: list[float]) -> dict[str, float]:
        """The update on this process's contiguous share of the step's groups, in a worker
        thread whose torch threads are re-decided before every layer (`ThreadPolicy`).
        Returns the update's statistics, reduced over every process."""
        g = self.config.trainer.samples_per_prompt
        mine, first_group = process_share(groups, self.accelerator)
        first = first_group * g
        samples = [s.sample for group in mine for s in group]
        local_advantages = advantages[first : first + len(samples)]

        def update() -> dict[str, float]:
            models = [self.trainer.policy, self.trainer.reference]  # reference: None under LoRA
            with contextlib.ExitStack() as hooks:
                for model in filter(None, models):
                    hooks.enter_context(self.threads.per_layer(model, "train"))
                return self.trainer.update(
                    samples, local_advantages, before_micro_batch=self.threads.hook("train")
                )

        return await in_torch_thread(self.threads, "train", update)

    def metrics_row(
        self,
        iteration: int,
        groups: Groups,
        dropped: Groups,
        stats: dict[str, float],
        advantages: Advantages,
        staleness: list[int],
    ) -> dict[str, float]:
        """The step's row without its timings: the judges' results, the update's statistics,
        the curriculum, threads, staleness and the teacher's calls (this process's)."""
        row = {"iteration": iteration, **score_metrics([s for g in groups for s in g]), **stats}
        row.update(self.sampler.metrics(), curriculum_replaced=len(dropped))
        row.update(
            gen_threads_mean=self.threads.mean("gen"),
            train_threads_mean=self.threads.mean("train"),
            frac_zero_std=advantages.zero_std_share,
            staleness_mean=sum(staleness) / len(staleness),
            staleness_max=float(max(staleness)),
        )
        if self.scorer.teacher is not None:
            row.update(self.scorer.teacher.metrics())
        return row

    def staleness(self, groups: Groups) -> list[int]:
        """How many updates old each sample is now (0: made by the current weights)."""
        return [self.version - s.sample.policy_version for group in groups for s in group]

    def log_samples(
        self, iteration: int, groups: Groups, advantages: list[float], made_by: list[int]
    ) -> None:
        """Every sample of the step to samples.jsonl (main process), with its advantage."""
        if self.logger is not None:
            scored = [s for group in groups for s in group]
            processes = [made_by[i] for i, group in enumerate(groups) for _ in group]
            self.logger.log_samples(iteration, scored, advantages, processes)

    async def periodic_eval(self, iteration: int) -> dict[str, float | None]:
        """eval_* columns: measured every `eval.every` steps, empty (None) in between."""
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
