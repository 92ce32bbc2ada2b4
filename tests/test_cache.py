"""The on-disk result cache: stable keys, hits and misses counted, TTL, shared across handles,
and judges that read it off the event loop."""

from __future__ import annotations

import dataclasses
import time

import anyio
import pytest

from rlaif.cache import ResultCache, cache_key
from rlaif.config import RustConfig, TeacherConfig
from rlaif.judges.rust.jobs import RustJudge, find_toolchain
from rlaif.judges.teacher.client import Teacher
from rlaif.judges.teacher.rubric import CRITERIA, context_shown
from rlaif.types import RustResult, Task


def test_key_is_stable_and_sensitive_to_every_part():
    assert cache_key("rustc 1.95", {"b": 1, "a": 2}) == cache_key("rustc 1.95", {"a": 2, "b": 1})
    assert cache_key("rustc 1.95", "fn f() {}") != cache_key("rustc 1.95", "fn f() { }")
    assert cache_key("a", "b") != cache_key("b", "a")  # order of parts matters
    assert len(cache_key("x")) == 64


def test_hits_and_misses_are_counted_and_values_survive_reopening(tmp_path):
    cache = ResultCache(tmp_path, "rust")
    key = cache_key("code")
    assert cache.get(key) is None
    cache.set(key, {"compiled": True, "errors": 0})
    assert cache.get(key) == {"compiled": True, "errors": 0}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (1, 1, 1)
    cache.close()

    again = ResultCache(tmp_path, "rust")  # another handle (or process) sees the same entries
    assert again.get(key) == {"compiled": True, "errors": 0}
    assert len(again) == 1
    assert again.clear() == 1 and again.get(key) is None


def test_entries_expire_after_their_ttl(tmp_path):
    cache = ResultCache(tmp_path, "teacher", ttl_s=0.2)
    cache.set("k", 1.0)
    assert cache.get("k") == 1.0
    time.sleep(0.3)
    assert cache.get("k") is None


def test_none_cannot_be_stored_because_it_means_a_miss(tmp_path):
    with pytest.raises(ValueError, match="None"):
        ResultCache(tmp_path, "x").set("k", None)


# --- the event loop keeps running while the disk is slow -----------------------------------

BLOCK_S = 0.5


class SlowDisk(ResultCache):
    """A cache whose reads block for half a second, like a slow disk or a lock held elsewhere."""

    def read(self, key: str):
        time.sleep(BLOCK_S)
        return super().read(key)


def loop_progress_during(call) -> tuple[object, int, float]:
    """(call's result, ticks another task made meanwhile, longest gap between ticks in s)."""

    async def main():
        ticks, gaps, done = [time.perf_counter()], [], anyio.Event()

        async def ticker() -> None:
            while not done.is_set():
                await anyio.sleep(0.01)
                ticks.append(time.perf_counter())
                gaps.append(ticks[-1] - ticks[-2])

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await anyio.sleep(0)  # let the ticker start
            result = await call()
            done.set()
        return result, len(gaps), max(gaps)

    return anyio.run(main)


def test_a_slow_rust_cache_read_does_not_stall_the_event_loop(tmp_path):
    cache = SlowDisk(tmp_path, "rust")
    judge = RustJudge(find_toolchain(), RustConfig(), concurrency=1, cache=cache)
    code, tests = "fn one() -> i32 { 1 }", "#[test] fn t() { assert_eq!(one(), 1); }"
    stored = RustResult(parsed=True, compiled=True, tests_total=1, tests_built=True)
    cache.set(judge.cache_key_for(code, tests, "libtest"), dataclasses.asdict(stored))
    result, ticks, longest = loop_progress_during(lambda: judge.judge(code, tests))
    assert result.cached and result.tests_built  # served from the (slow) cache, rustc not run
    # Blocked on the loop, the ticker would make no progress for the whole 0.5 s read.
    assert ticks >= 10 and longest < BLOCK_S / 2, (ticks, longest)


def test_a_slow_teacher_cache_read_does_not_stall_the_event_loop(tmp_path):
    class Unused:
        async def complete(self, system: str, user: str):
            raise AssertionError("a cached verdict sends no request")

        async def aclose(self) -> None:
            pass

    config = TeacherConfig(provider="openai", model="m", api_key_env="UNUSED")
    teacher = Teacher(Unused(), config, cache=SlowDisk(tmp_path, "teacher"))
    task, code, rust = Task("a", "Write a.", "", "easy"), "fn a() {}", RustResult(compiled=True)
    verdict = {c: 10.0 for c in CRITERIA} | {"reason": "fine"}
    teacher.cache.set(teacher._key(task, code, context_shown(rust, True, True)), verdict)
    judgement, ticks, longest = loop_progress_during(lambda: teacher.judge(task, code, rust, True))
    assert judgement.score == 1.0 and teacher.stats.cache_hits == 1
    assert ticks >= 10 and longest < BLOCK_S / 2, (ticks, longest)
