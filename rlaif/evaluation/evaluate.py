"""Evaluation: sample n completions per held-out task and report what rustc and the tests say.

Reports, per difficulty and overall: parse, compile and test pass rates, mean compiler reward,
and the unbiased pass@k of Chen et al. (2021). Samples the sandbox could not judge are counted on
their own (`sandbox_errors`, `abstained`), never as failures. The teacher is not consulted:
evaluation measures what the compiler and the hidden tests can check. Two models (a base model
and a checkpoint, or two checkpoints) are evaluated on the same tasks with the same seed and
shown side by side; the training loop calls `evaluate_policy` every `eval.every` steps for the
eval_* metric columns (`eval/*` in metrics.jsonl and TensorBoard).
`sample_records` gives one plain record per sample, for confidence intervals over tasks
(`rlaif.evaluation.stats`, `bench/learning.py`) and for reading what the model wrote.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from rlaif.config import Config
from rlaif.evaluation.stats import pass_at_k
from rlaif.judges.rust.jobs import RustJudge, Toolchain, default_concurrency, rust_cache
from rlaif.judges.scoring import Scorer
from rlaif.records.checkpoint import CheckpointError, latest_checkpoint
from rlaif.records.metrics import TaskProgress, sample_record
from rlaif.rollout.stream import generate_and_score
from rlaif.rollout.threads import ThreadPolicy
from rlaif.student.model import Generator, load_student, pick_device, pick_dtype
from rlaif.student.precision import autocast_context, pick_autocast
from rlaif.types import DIFFICULTIES, Sample, Scored, Task


def summarize(scored: list[Scored], n: int, ks: list[int]) -> dict[str, dict[str, float]]:
    """Rows keyed by difficulty plus "all": rates over samples, pass@k averaged over tasks.

    A sample without a verdict (`sandbox_error`: the harness failed or rustc timed out) is
    counted in `sandbox_errors` and left out of every rate and of pass@k, never counted as a
    failure to parse, compile or pass; a NaN reward (every judge abstained) is counted in
    `abstained` and left out of `mean_reward` (as `stats.task_values` and the training metrics
    do). A task with fewer than k judged samples has no pass@k and is left out of its mean.
    """
    by_task: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        by_task[s.sample.task.id].append(s)
    buckets: dict[str, list[list[Scored]]] = defaultdict(list)
    for samples in by_task.values():
        buckets[samples[0].sample.task.difficulty].append(samples)
        buckets["all"].append(samples)
    rows = {}
    for name in [*DIFFICULTIES, "all"]:
        groups = buckets.get(name)
        if not groups:
            continue
        flat = [s for g in groups for s in g]
        judged = [s for s in flat if s.rust.sandbox_error is None]
        rewards = [s.reward for s in flat if not math.isnan(s.reward)]
        tests_total = sum(s.rust.tests_total for s in judged)
        row = {
            "tasks": len(groups),
            "samples": len(flat),
            "sandbox_errors": len(flat) - len(judged),
            "abstained": len(flat) - len(rewards),
            "parse_rate": _rate(sum(s.rust.parsed for s in judged), len(judged)),
            "compile_rate": _rate(sum(s.compiles for s in judged), len(judged)),
            "test_pass_rate": _rate(sum(s.rust.tests_passed for s in judged), tests_total, 0.0),
            "mean_reward": _rate(sum(rewards), len(rewards)),
        }
        for k in ks:
            values = [_task_pass_at_k(g, k) for g in groups]
            row[f"pass@{k}"] = _mean_known(values)
        rows[name] = row
    return rows


def _rate(num: float, den: float, empty: float = math.nan) -> float:
    return num / den if den else empty


def _task_pass_at_k(group: list[Scored], k: int) -> float:
    """pass@k over the task's judged samples; NaN when fewer than k of them have a verdict."""
    judged = [s for s in group if s.rust.sandbox_error is None]
    if len(judged) < k:
        return math.nan
    return pass_at_k(len(judged), sum(s.rust.all_tests_passed for s in judged), k)


def _mean_known(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else math.nan


@dataclass(frozen=True)
class EvalResult:
    rows: dict[str, dict[str, float]]  # difficulty (and "all") -> rate or pass@k -> value
    timings: dict[str, float]  # {"gen", "score"} seconds
    scored: list[Scored]  # every sample, task by task


async def evaluate_policy(
    generator: Generator,
    scorer: Scorer,
    tasks: list[Task],
    n: int,
    ks: list[int],
    threads: ThreadPolicy,
    seed: int,
    on_task: Callable[[], None] | None = None,
) -> EvalResult:
    """Sample and score n completions per task: rows by difficulty, timings, the samples.

    Sampling draws from a fork of the RNG seeded with `seed`: every evaluation of a run sees the
    same random stream (so two checkpoints differ by their weights, not their luck), and the
    training that surrounds a periodic evaluation draws exactly what it would have without it.
    `on_task` is called as each task's samples come back scored (a progress display).
    """
    device = next(generator.model.parameters()).device
    if on_task is not None:
        scorer = _Reporting(scorer, on_task)
    with _forked_rng(device):
        torch.manual_seed(seed)
        scored, timings = await generate_and_score(
            generator, scorer, tasks, n, 0, generator.config.generate_batch_size, threads
        )
    return EvalResult(summarize(scored, n, ks), timings, scored)


class _Reporting:
    """A Scorer that calls `done()` after each group (one task's samples) it has scored."""

    def __init__(self, scorer: Scorer, done: Callable[[], None]):
        self.scorer, self.done = scorer, done

    async def score(self, samples: list[Sample]) -> list[Scored]:
        scored = await self.scorer.score(samples)
        self.done()
        return scored


def _forked_rng(device: torch.device):
    if device.type in ("cuda", "mps"):
        return torch.random.fork_rng(device_type=device.type)
    return torch.random.fork_rng(devices=[])  # the CPU generator only


def resolve_model(path: str) -> str:
    """A run directory stands for its newest checkpoint; anything else is a model as given."""
    if (Path(path) / "checkpoints").is_dir():
        newest = latest_checkpoint(Path(path))
        if newest is None:
            raise CheckpointError(f"{path}: the run has no complete checkpoint to evaluate")
        return str(newest)
    return path


async def evaluate(
    config: Config,
    tasks: list[Task],
    toolchain: Toolchain,
    models: list[str],
    n: int,
    ks: list[int],
    console: Console,
) -> list[EvalResult]:
    """Evaluate each model in turn (same tasks, same seed); a table each, and a comparison of
    the first and the last when there are two. Returns each model's result."""
    rust_jobs = default_concurrency(config.rust)
    judge = RustJudge(toolchain, config.rust, rust_jobs, rust_cache(config.cache))
    scorer = Scorer(judge, None, config.rewards)
    threads = ThreadPolicy.for_config(config, judge.running)
    results = []
    for model in models:
        student = dataclasses.replace(config.student, model=model)
        device = pick_device(student.device)
        policy, tokenizer = load_student(student, device, pick_dtype(student.dtype, device))
        precision = autocast_context(device, pick_autocast(student.autocast, device))
        generator = Generator(policy, tokenizer, student, precision=precision)
        console.print(
            f"evaluating {model} on {len(tasks)} tasks x {n} samples "
            f"(temperature {student.temperature})"
        )
        with TaskProgress("eval", len(tasks), config.logging.progress, console) as progress:
            result = await evaluate_policy(
                generator, scorer, tasks, n, ks, threads, config.run.seed, progress.advance
            )
        console.print(render_table(result.rows, ks, title=f"evaluation: {model}"))
        if note := unjudged_note(result.rows["all"]):
            console.print(note)
        gen, score = result.timings["gen"], result.timings["score"]
        # The threads generation used show the thread policy at work: all cores while no
        # rustc job runs (scoring a group takes about a second, generating it most of a minute).
        gen_threads = threads.mean("gen")
        used = f" on {gen_threads:.2f} of {threads.cores} torch threads" if gen_threads else ""
        console.print(f"generation {gen:.1f}s{used}, scoring {score:.1f}s")
        results.append(result)
        del policy, generator  # free this model before the next one loads
    if len(results) == 2:
        console.print(render_comparison(results[0].rows, results[1].rows, ks))
    return results


# What an eval record keeps of a samples.jsonl record (`metrics.sample_record`), and the rustc
# counts it lifts to the top level for `rlaif.evaluation.stats.task_values`.
_SAMPLE_KEYS = ("task_id", "difficulty", "sample", "prompt", "completion", "code", "finished")
_SCORE_KEYS = ("reward", "components")
_RUST_COUNTS = (
    "parsed",
    "compiled",
    "errors",
    "warnings",
    "clippy_lints",
    "tests_passed",
    "tests_total",
    "tests_built",
    "all_tests_passed",
    "sandbox_error",
)


def sample_records(model: str, scored: list[Scored]) -> list[dict]:
    """One JSON-ready record per sample: which model and task, what it wrote, what rustc and
    the tests said, and every reward term (`rlaif.evaluation.stats.task_values` reads these)."""
    records = []
    for s in scored:
        full = sample_record(0, s, math.nan)
        records.append(
            {
                "model": model,
                **{key: full[key] for key in (*_SAMPLE_KEYS, *_SCORE_KEYS)},
                **{key: getattr(s.rust, key) for key in _RUST_COUNTS},
                "compiles": s.compiles,  # what the compile rate counts (types.Scored.compiles)
                "placeholder": s.placeholder,
            }
        )
    return records


# Counts in a row, not rates: a comparison leaves them out.
COUNTS = ("tasks", "samples", "sandbox_errors", "abstained")


def compare(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """after - before, for every difficulty and rate both have."""
    return {
        name: {
            key: after[name][key] - before[name][key] for key in before[name] if key not in COUNTS
        }
        for name in before
        if name in after
    }


def render_comparison(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], ks: list[int]
) -> Table:
    table = Table(title="before -> after")
    columns = ["compile_rate", "test_pass_rate", "mean_reward", *(f"pass@{k}" for k in ks)]
    table.add_column("difficulty")
    for column in columns:
        table.add_column(
            column.removesuffix("_rate").replace("test_pass", "tests"), justify="right"
        )
    delta = compare(before, after)
    for name in delta:
        cells = [
            f"{before[name][c]:.3f} -> {after[name][c]:.3f} ({delta[name][c]:+.3f})"
            for c in columns
        ]
        table.add_row(name, *cells)
    return table


def render_table(
    rows: dict[str, dict[str, float]], ks: list[int], title: str = "evaluation"
) -> Table:
    table = Table(title=title)
    columns = [
        "tasks",
        "samples",
        "parse_rate",
        "compile_rate",
        "test_pass_rate",
        "mean_reward",
        *(f"pass@{k}" for k in ks),
    ]
    table.add_column("difficulty")
    for column in columns:
        table.add_column(
            column.removesuffix("_rate").replace("test_pass", "tests"), justify="right"
        )
    for name, row in rows.items():
        table.add_row(name, *(_shown(row[c]) for c in columns))
    return table


def unjudged_note(row: dict[str, float]) -> str:
    """A line saying how many samples had no verdict (left out of the rates), or ""."""
    if not row["sandbox_errors"] and not row["abstained"]:
        return ""
    return (
        f"{row['sandbox_errors']} sample(s) without a verdict (sandbox error or rustc timeout) "
        f"and {row['abstained']} without a reward: left out of the rates and the mean, not failed"
    )


def _shown(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.3f}"
