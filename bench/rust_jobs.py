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
set defaults: what clippy adds to a job, and what the namespace jail adds to it over the posix
level (rlimits in a fresh interpreter, no namespaces).

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

from rlaif.config import RustConfig
from rlaif.data.tasks import load_tasks
from rlaif.judges.rust.jobs import RustJudge, find_toolchain
from rlaif.judges.rust.sandbox_levels import resolve

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
            "prose": f"{PROSE} ({task_id})",
        }
        jobs += [(kind, codes[kind], task.tests) for kind in KINDS]
    return jobs


async def run_all(judge: RustJudge, jobs: list[tuple[str, str, str]]) -> float:
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _, code, tests in jobs:
            group.start_soon(judge.judge, code, tests)
    return time.perf_counter() - start


async def alone(judges: list[RustJudge], jobs: list[tuple[str, str, str]]):
    """Seconds of each job run alone, one after the other, once per judge (each at its level).

    The variants take turns job by job, so a change in the machine's load (it is shared) hits
    them alike. Returns one list of seconds per variant, and the results of the first.
    """
    seconds: list[list[float]] = [[] for _ in judges]
    results = []
    for _, code, tests in jobs:
        for i, judge in enumerate(judges):
            t0 = time.perf_counter()
            result = await judge.judge(code, tests)
            seconds[i].append(time.perf_counter() - t0)
            if i == 0:
                results.append(result)
    return seconds, results


def mean_ms(values: list[float]) -> float:
    return statistics.mean(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    toolchain = find_toolchain()
    jobs = workload()
    level = resolve("auto").name
    config = RustConfig(sandbox=level)
    cores = len(os.sched_getaffinity(0))
    print(
        f"{toolchain.version}; {len(jobs)} jobs (8 tasks x {', '.join(KINDS)}); {cores} cores; "
        f"sandbox: {level}; clippy: {config.clippy}"
    )

    no_clippy = dataclasses.replace(config, clippy=False)
    variants = [RustJudge(toolchain, config, 1), RustJudge(toolchain, no_clippy, 1)]
    if level == "namespaces":  # the same jobs at the posix level (trusted code only)
        variants.append(RustJudge(toolchain, dataclasses.replace(config, sandbox="posix"), 1))
    (jailed, plain, *basic), results = anyio.run(alone, variants, jobs)
    latency = statistics.mean(jailed)
    kinds = ", ".join(
        f"{k} {mean_ms([t for (kind, _, _), t in zip(jobs, jailed, strict=True) if kind == k]):.0f}"
        for k in KINDS
    )
    print(f"one job alone: mean {latency * 1000:.0f} ms ({kinds} ms)")
    stages = ("check", "parse", "build", "run")
    print(
        "  of which, per job: "
        + ", ".join(
            f"{s} {mean_ms([getattr(r, f'{s}_seconds') for r in results]):.0f}" for s in stages
        )
        + " ms"
    )
    print(
        f"  clippy off: mean {mean_ms(plain):.0f} ms "
        f"(clippy adds {mean_ms(jailed) - mean_ms(plain):.0f} ms)"
    )
    if basic:
        print(
            f"  at the posix level: mean {mean_ms(basic[0]):.0f} ms "
            f"(the jail adds {mean_ms(jailed) - mean_ms(basic[0]):.0f} ms)"
        )
    for n in (int(c) for c in args.concurrency.split(",")):
        judge = RustJudge(toolchain, config, n)
        best = min(anyio.run(run_all, judge, jobs) for _ in range(args.repeat))
        bound = min(n, cores) / latency
        print(
            f"concurrency {n}: {len(jobs) / best:5.1f} jobs/s  bound {bound:5.1f} jobs/s  "
            f"({len(jobs) / best / bound:.0%} of it)"
        )


if __name__ == "__main__":
    main()
