"""rustc jobs per second at several concurrencies, on the shipped tasks' reference solutions.

Each job is the full scoring path of one sample (check, test build, test run), through
`RustJudge` exactly as training uses it. The workload is fixed: the reference solutions of the
first 32 shipped tasks (`WORKLOAD`), plus a broken variant of each (its last closing brace
removed, so it fails the check), a mix of good and bad code like the one training sees. Prints
jobs/s per concurrency beside the bound the machine allows: min(concurrency, cores) divided by
the mean latency of a job run alone.

    python bench/rust_jobs.py [--concurrency 1,2,4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import anyio

from rlaif.config import RustConfig
from rlaif.data import load_tasks
from rlaif.rust import RustJudge, find_toolchain

REPO = Path(__file__).resolve().parent.parent


# The tasks RESULTS.md was measured on: the first 24 training and first 8 held-out tasks (the set
# shipped before it grew to 273), so that numbers stay comparable and the run stays short.
WORKLOAD = (("data/train.jsonl", 24), ("data/eval.jsonl", 8))


def workload() -> list[tuple[str, str]]:
    tasks = [t for path, n in WORKLOAD for t in load_tasks(REPO / path)[:n]]
    good = [(t.reference, t.tests) for t in tasks if t.reference]
    broken = [(code[: code.rindex("}")], tests) for code, tests in good]
    return good + broken


async def run_all(judge: RustJudge, jobs: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for code, tests in jobs:
            group.start_soon(judge.judge, code, tests)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    toolchain = find_toolchain()
    jobs = workload()
    config = RustConfig()
    print(
        f"{toolchain.version}; {len(jobs)} jobs (half compile and pass, half fail the check); "
        f"{os.cpu_count()} CPUs"
    )

    single = RustJudge(toolchain, config, 1)
    latencies = []
    for code, tests in jobs:
        t0 = time.perf_counter()
        anyio.run(single.judge, code, tests)
        latencies.append(time.perf_counter() - t0)
    latency = statistics.mean(latencies)
    half = len(jobs) // 2
    print(
        f"one job alone: mean {latency * 1000:.0f} ms (passing code "
        f"{statistics.mean(latencies[:half]) * 1000:.0f} ms, broken code "
        f"{statistics.mean(latencies[half:]) * 1000:.0f} ms)"
    )
    cores = os.cpu_count() or 1
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
