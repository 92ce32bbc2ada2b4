"""Does the teacher keep a requests-per-minute limit under a queue far larger than the limit?

N requests are queued at once through the real `Teacher` (real SDK, real HTTP) against the
loopback test server (tests/teacher_server.py), which stamps each arrival. Two numbers decide:

- the most requests that arrived within any window of 60 s (sliding, half-open [t, t + 60)):
  it must not exceed the limit plus the configured burst;
- the achieved rate, (N - 1) / (last arrival - first arrival): at least 90% of the limit.

`--time-scale k` runs the same shape k times faster: the limiter runs at k x rpm and the window is
60 / k s, so "1200 rpm judged on 6 s windows" has exactly the proportions of "120 rpm judged on
60 s windows" and takes a tenth of the time. Rates are reported in the unscaled unit.

    python bench/teacher_rate.py                      # 120 rpm, 300 requests, scale 5: ~30 s
    python bench/teacher_rate.py --time-scale 1       # the literal 120 rpm: ~2.5 minutes
"""

from __future__ import annotations

import argparse
import bisect
import platform
import statistics
import sys
import time
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's rlaif, and the test server
from teacher_server import TeacherServer  # noqa: E402

from rlaif.config import TeacherConfig  # noqa: E402
from rlaif.judges.teacher.setup import make_teacher  # noqa: E402
from rlaif.types import RustResult, Task  # noqa: E402

KEY_ENV = "RLAIF_BENCH_KEY"


def max_in_window(times: list[float], window: float) -> int:
    """The most arrivals within any half-open [t, t + window) (it suffices to start at each one)."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def record_admissions(teacher) -> list[float]:
    """Wrap the teacher's limiter so that each admission's time is recorded (the client side)."""
    admitted: list[float] = []
    acquire = teacher.rate.acquire

    async def recorded(tokens: float) -> float:
        start = await acquire(tokens)
        admitted.append(time.monotonic())
        return start

    teacher.rate.acquire = recorded
    return admitted


async def queue_all(teacher, n: int) -> list:
    task = Task(id="bench", prompt="Write `fn f() -> i32`.", tests="", difficulty="easy")
    rust = RustResult(parsed=True, compiled=True)
    results: list = [None] * n

    async def one(i: int) -> None:
        results[i] = await teacher.judge(task, f"fn f() -> i32 {{ {i} }}", rust, True)

    try:
        async with anyio.create_task_group() as group:
            for i in range(n):
                group.start_soon(one, i)
    finally:
        await teacher.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=float, default=120.0, help="the limit, requests/minute")
    parser.add_argument("--requests", type=int, default=300, help="requests queued at once")
    parser.add_argument("--burst", type=int, default=4, help="teacher.burst")
    parser.add_argument("--concurrency", type=int, default=8, help="teacher.concurrency")
    parser.add_argument("--time-scale", type=float, default=5.0, help="run k times faster")
    parser.add_argument(
        "--provider", default="openai-compatible", choices=["anthropic", "openai-compatible"]
    )
    args = parser.parse_args()

    k = args.time_scale
    window = 60.0 / k
    with TeacherServer() as server:
        config = TeacherConfig(
            provider=args.provider,
            model="bench",
            api_key_env=KEY_ENV,
            base_url=server.url if args.provider == "anthropic" else server.openai_url,
            concurrency=args.concurrency,
            requests_per_minute=args.rpm * k,
            tokens_per_minute=0,
            burst=args.burst,
            max_attempts=1,
        )
        teacher, _ = make_teacher(config, environ={KEY_ENV: "bench"})
        admitted = record_admissions(teacher)
        started = time.perf_counter()
        judgements = anyio.run(queue_all, teacher, args.requests)
        wall = time.perf_counter() - started
        arrivals = [r.at for r in server.requests]
        metrics = teacher.metrics()

    verdicts = sum(j.abstained is None for j in judgements)
    most = max_in_window(arrivals, window)
    span = max(arrivals) - min(arrivals)
    rate = (len(arrivals) - 1) / span * window  # per unscaled minute
    limit = args.rpm + args.burst
    print(
        f"machine: {platform.node()} ({platform.machine()}, {len(_cores())} cores), "
        f"python {platform.python_version()}"
    )
    print(
        f"limit {args.rpm:g} rpm, burst {args.burst}, {args.requests} requests queued at once, "
        f"concurrency {args.concurrency}, {args.provider}; time scale {k:g} "
        f"(limiter at {args.rpm * k:g} rpm, windows of {window:g} s)"
    )
    print(f"wall time {wall:.1f} s; {len(arrivals)} requests arrived, {verdicts} verdicts")
    verdict = "ok" if most <= limit else "OVER"
    print(
        f"most in any window: {most} arrived at the server (limit + burst = {limit:g}) -> "
        f"{verdict}; {max_in_window(admitted, window)} admitted by the limiter"
    )
    delays = sorted(b - a for a, b in zip(sorted(admitted), sorted(arrivals), strict=True))
    print(
        f"admission to arrival: median {delays[len(delays) // 2] * 1000:.1f} ms, "
        f"max {delays[-1] * 1000:.1f} ms (client CPU, connection set-up)"
    )
    print(
        f"achieved rate: {rate:.1f} per minute = {rate / args.rpm:.1%} of the limit -> "
        f"{'ok' if rate >= 0.9 * args.rpm else 'LOW'}"
    )
    gaps = [b - a for a, b in zip(sorted(arrivals), sorted(arrivals)[1:], strict=False)]
    gap_ms = statistics.median(gaps[args.burst :]) * 1000
    p50_ms = metrics["teacher_latency_p50_s"] * 1000
    p95_ms = metrics["teacher_latency_p95_s"] * 1000
    print(
        f"gap between arrivals after the burst: median {gap_ms:.1f} ms (ideal "
        f"{60_000 / (args.rpm * k):.1f} ms); request latency p50 {p50_ms:.1f} ms, "
        f"p95 {p95_ms:.1f} ms"
    )
    ok = most <= limit and rate >= 0.9 * args.rpm and verdicts == args.requests
    return 0 if ok else 1


def _cores() -> list[int]:
    import os

    return list(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


if __name__ == "__main__":
    sys.exit(main())
