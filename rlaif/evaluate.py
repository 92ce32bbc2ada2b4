"""Evaluation: sample n completions per held-out task and report what rustc and the tests say.

Reports, per difficulty and overall: parse, compile and test pass rates, mean compiler reward,
and the unbiased pass@k of Chen et al. (2021). The teacher is not consulted: evaluation measures
what the compiler and the hidden tests can check.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from math import comb

from rich.console import Console
from rich.table import Table

from .config import Config
from .pipeline import ThreadPolicy, generate_and_score, rust_concurrency
from .rust import RustJudge, Toolchain
from .scoring import Scorer
from .student import Generator, load_student, pick_device, pick_dtype
from .types import DIFFICULTIES, Scored, Task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0  # every k-subset holds a passing sample
    return 1.0 - comb(n - c, k) / comb(n, k)


def summarize(scored: list[Scored], n: int, ks: list[int]) -> dict[str, dict[str, float]]:
    """Rows keyed by difficulty plus "all": rates over samples, pass@k averaged over tasks."""
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
        tests_total = sum(s.rust.tests_total for s in flat)
        row = {
            "tasks": len(groups),
            "samples": len(flat),
            "parse_rate": sum(s.rust.parsed for s in flat) / len(flat),
            "compile_rate": sum(s.rust.compiled for s in flat) / len(flat),
            "test_pass_rate": sum(s.rust.tests_passed for s in flat) / tests_total
            if tests_total
            else 0.0,
            "mean_reward": sum(s.reward for s in flat) / len(flat),
        }
        for k in ks:
            row[f"pass@{k}"] = sum(
                pass_at_k(len(g), sum(s.rust.all_tests_passed for s in g), k) for g in groups
            ) / len(groups)
        rows[name] = row
    return rows


async def evaluate(
    config: Config,
    tasks: list[Task],
    toolchain: Toolchain,
    model: str,
    n: int,
    ks: list[int],
    console: Console,
) -> dict[str, dict[str, float]]:
    student = dataclasses.replace(config.student, model=model)
    device = pick_device(student.device)
    policy, tokenizer = load_student(student, device, pick_dtype(student.dtype, device))
    generator = Generator(policy, tokenizer, student)
    rust_jobs = rust_concurrency(config)
    scorer = Scorer(RustJudge(toolchain, config.rust, rust_jobs), None, config.rewards)
    console.print(f"evaluating {model} on {len(tasks)} tasks x {n} samples")
    scored, timings = await generate_and_score(
        generator,
        scorer,
        tasks,
        n,
        0,
        student.generate_batch_size,
        ThreadPolicy.for_config(config),
    )
    rows = summarize(scored, n, ks)
    console.print(render_table(rows, ks))
    console.print(f"generation {timings['gen']:.1f}s, scoring {timings['score']:.1f}s")
    return rows


def render_table(rows: dict[str, dict[str, float]], ks: list[int]) -> Table:
    table = Table(title="evaluation")
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
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        table.add_row(name, *cells)
    return table
