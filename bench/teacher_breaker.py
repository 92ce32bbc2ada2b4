"""What a dead teacher costs a step, with the circuit breaker and without.

The real `Teacher` (real SDK, real HTTP, cache off) is pointed at a port of 127.0.0.1 where the
loopback test server (tests/teacher_server.py) ran and was stopped: every connection is refused,
as when a teacher server dies mid-run. Each "step" judges one step's samples at once
(`trainer.tasks_per_step` x `samples_per_prompt` = 8 by default), as the scorer does, and the
seconds until every sample has its verdict or abstention are the teacher's share of that step.
Everything else is the config's defaults (5 attempts, backoff from 1 s up to 30 s, 50 requests/min,
4 at once): "on" is the default breaker (5 failures, 30 s cooldown), "off" the same with
`breaker_failures` too high to ever open.

    python bench/teacher_breaker.py              # 3 steps each: ~2.5 minutes, nearly all "off"
    python bench/teacher_breaker.py --steps 5 --samples 16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's rlaif, and the test server
from teacher_server import TeacherServer  # noqa: E402

from rlaif.config import TeacherConfig  # noqa: E402
from rlaif.judges.teacher.client import Teacher  # noqa: E402
from rlaif.judges.teacher.setup import make_teacher  # noqa: E402
from rlaif.types import RustResult, Task  # noqa: E402

KEY_ENV = "RLAIF_BENCH_KEY"
TASK = Task(id="add", prompt="Write `fn add(a: i32, b: i32) -> i32`.", tests="", difficulty="easy")
RUST = RustResult(parsed=True, compiled=True, tests_total=2, tests_passed=2)


def dead_url() -> str:
    """The URL of a server that was running and is gone: connections to it are refused."""
    server = TeacherServer().start()
    url = server.openai_url
    server.stop()
    return url


async def one_step(teacher: Teacher, step: int, samples: int) -> float:
    async def one(i: int) -> None:
        code = f"fn f_{step}_{i}() -> i32 {{ {i} }}"  # each sample its own: nothing shared
        await teacher.judge(TASK, code, RUST, True)

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for i in range(samples):
            group.start_soon(one, i)
    return time.monotonic() - started


def run(url: str, breaker_on: bool, steps: int, samples: int) -> tuple[list[float], dict]:
    settings = dict(provider="openai-compatible", model="judge", api_key_env=KEY_ENV, base_url=url)
    if not breaker_on:
        settings["breaker_failures"] = 10**9
    teacher, status = make_teacher(TeacherConfig(**settings), environ={KEY_ENV: "k"})
    assert teacher is not None, status

    async def main() -> list[float]:
        try:
            return [await one_step(teacher, step, samples) for step in range(steps)]
        finally:
            await teacher.aclose()

    return anyio.run(main), teacher.metrics()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="samples judged per step")
    args = parser.parse_args()

    url = dead_url()
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"teacher at {url} (dead); {args.steps} steps of {args.samples} samples; defaults else")
    print("| breaker | s per step (each) | mean | requests | abstained |")
    print("| --- | --- | --- | --- | --- |")
    for on in (True, False):
        seconds, metrics = run(url, on, args.steps, args.samples)
        kinds = Counter(
            {
                k.removeprefix("teacher_abstained_"): int(v)
                for k, v in metrics.items()
                if k.startswith("teacher_abstained_") and v
            }
        )
        each = ", ".join(f"{s:.2f}" for s in seconds)
        why = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(
            f"| {'on' if on else 'off'} | {each} | {statistics.mean(seconds):.2f} | "
            f"{int(metrics['teacher_requests'])} | {why} |"
        )


if __name__ == "__main__":
    main()
