"""rustc jobs per second at concurrency 1, 2 and 4 on a fixed set of 32 completions.

Each job is the full scoring path of one sample through `RustJudge` as training uses it (the
jail, the check with clippy, the test build and run), with the result cache off. The workload is
fixed: 8 tasks of data/train.jsonl, each with four completions like the ones training sees:
- correct: the task's reference solution (passes every hidden test);
- failing: the task's signature with a `todo!()` body (compiles, fails every test);
- broken: the reference plus a function with a type error (parses, E0308, no test build);
- prose: a refusal in plain English (fails to parse).

Prints the latency of one job alone, by kind; jobs/s at each concurrency beside the bound the
machine allows, min(concurrency, cores) / mean single-job latency; and two side measurements that
set defaults: what clippy adds to the check, and what the namespace jail adds to a job.

    python bench/rust_jobs.py [--concurrency 1,2,4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import time
from pathlib import Path

import anyio

from rlaif import sandbox
from rlaif.config import RustConfig
from rlaif.data import load_tasks
from rlaif.rust import RustJudge, find_toolchain

REPO = Path(__file__).resolve().parent.parent
TASKS = (
    "count_ascii_vowels",
    "reverse_word_order",
    "first_negative_position",
    "checked_product_i32",
    "run_length_encode_chars",
    "mean_i64_no_overflow",
    "top_k_frequent_words",
    "greedy_word_wrap",
)
KINDS = ("correct", "failing", "broken", "prose")
PROSE = "I'm sorry, but I can't write that function. Please consult the Rust documentation."
TYPE_ERROR = '\nfn rlaif_broken() -> i32 { "not a number" }\n'


def workload() -> list[tuple[str, str, str]]:
    """(kind, code, tests) for the 32 fixed completions, task by task."""
    by_id = {t.id: t for t in load_tasks(REPO / "data/train.jsonl")}
    jobs = []
    for task_id in TASKS:
        task = by_id[task_id]
        assert task.reference is not None
        signature = re.search(r"`(fn [^`]+)`", task.prompt)
        assert signature is not None, task_id
        codes = {
            "correct": task.reference,
            "failing": signature.group(1) + " { todo!() }",
            "broken": task.reference + TYPE_ERROR,
            "prose": PROSE,
        }
        jobs += [(kind, codes[kind], task.tests) for kind in KINDS]
    return jobs


async def run_all(judge: RustJudge, jobs: list[tuple[str, str, str]]) -> float:
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _, code, tests in jobs:
            group.start_soon(judge.judge, code, tests)
    return time.perf_counter() - start


def latencies(judge: RustJudge, jobs: list[tuple[str, str, str]]) -> list[float]:
    """Seconds of each job run alone, one after the other."""
    out = []
    for _, code, tests in jobs:
        t0 = time.perf_counter()
        anyio.run(judge.judge, code, tests)
        out.append(time.perf_counter() - t0)
    return out


def mean_ms(values: list[float]) -> float:
    return statistics.mean(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    toolchain = find_toolchain()
    jobs = workload()
    config = RustConfig()
    cores = len(os.sched_getaffinity(0))
    print(
        f"{toolchain.version}; {len(jobs)} jobs (8 tasks x {', '.join(KINDS)}); {cores} cores; "
        f"jail: {sandbox.jail_level()}; clippy: {config.clippy}"
    )

    alone = latencies(RustJudge(toolchain, config, 1), jobs)
    latency = statistics.mean(alone)
    kinds = ", ".join(
        f"{k} {mean_ms([t for (kind, _, _), t in zip(jobs, alone, strict=True) if kind == k]):.0f}"
        for k in KINDS
    )
    print(f"one job alone: mean {latency * 1000:.0f} ms ({kinds} ms)")
    for n in (int(c) for c in args.concurrency.split(",")):
        judge = RustJudge(toolchain, config, n)
        best = min(anyio.run(run_all, judge, jobs) for _ in range(args.repeat))
        bound = min(n, cores) / latency
        print(
            f"concurrency {n}: {len(jobs) / best:5.1f} jobs/s  bound {bound:5.1f} jobs/s  "
            f"({len(jobs) / best / bound:.0%} of it)"
        )

    # Side measurement 1: the check alone (no tests), with and without clippy, correct code.
    checks = [(k, c, "") for k, c, _ in jobs if k == "correct"] * 3
    for clippy in (False, True):
        judge = RustJudge(toolchain, dataclasses.replace(config, clippy=clippy), 1)
        seconds = [anyio.run(judge.judge, c, t).check_seconds for _, c, t in checks]
        print(
            f"check of correct code, clippy {'on ' if clippy else 'off'}: {mean_ms(seconds):.0f} ms"
        )

    # Side measurement 2: the whole job without the namespace jail (trusted code only).
    if sandbox.jail_level() == "namespaces":
        real = sandbox.jail_level
        sandbox.jail_level = lambda: "basic"  # type: ignore[assignment]
        try:
            basic = latencies(RustJudge(toolchain, config, 1), jobs)
        finally:
            sandbox.jail_level = real
        print(
            f"one job alone without the jail: mean {mean_ms(basic):.0f} ms "
            f"(the jail adds {mean_ms(alone) - mean_ms(basic):.0f} ms a job)"
        )


if __name__ == "__main__":
    main()
