"""The circuit breaker: its states on a fake clock, then the teacher with a server that dies and
comes back (the real `anthropic` and `openai` SDKs against `teacher_server.TeacherServer`)."""

from __future__ import annotations

import math
import time

import anyio
import pytest
from teacher_server import Reply, Status, TeacherServer

from rlaif.config import TeacherConfig
from rlaif.judges.teacher.breaker import CircuitBreaker
from rlaif.judges.teacher.client import Teacher
from rlaif.judges.teacher.ratelimit import Clock
from rlaif.judges.teacher.setup import make_teacher
from rlaif.judges.teacher.stats import ABSTAIN_KINDS
from rlaif.types import Judgement, RustResult, Task

KEY_ENV = "RLAIF_TEST_TEACHER_KEY"
TASK = Task(id="add", prompt="Write `fn add(a: i32, b: i32) -> i32`.", tests="", difficulty="easy")
RUST = RustResult(parsed=True, compiled=True, tests_total=2, tests_passed=2)
COOLDOWN_S = 60.0  # never waited out for real: tests move the clock past it
# Retried with millisecond backoff; a failed request counts towards the breaker.
FAST = dict(
    timeout_s=5.0,
    requests_per_minute=0.0,
    tokens_per_minute=0.0,
    max_attempts=3,
    backoff_initial_s=0.01,
    backoff_max_s=0.02,
    breaker_failures=2,
    breaker_cooldown_s=COOLDOWN_S,
)
PROVIDERS = [
    pytest.param("anthropic", id="anthropic"),
    pytest.param("openai-compatible", id="openai-compatible"),
]


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, sleep=self.sleep)


class ShiftedClock:
    """The real clock plus an offset a test can jump forward (real sleeps, fake cooldowns)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def clock(self) -> Clock:
        return Clock(now=lambda: time.monotonic() + self.shift, sleep=anyio.sleep)


# --- the breaker alone, on a fake clock ------------------------------------------------------


def breaker(failures: int = 3, cooldown_s: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    fake = FakeClock()
    return CircuitBreaker(failures, cooldown_s, fake.clock()), fake


def test_it_opens_after_n_consecutive_failures_and_refuses_while_open():
    b, fake = breaker(failures=3, cooldown_s=10.0)
    assert b.state == "closed" and b.allow()
    assert not b.record(reachable=False)
    assert not b.record(reachable=False)
    assert b.state == "closed" and b.allow()
    assert b.record(reachable=False)  # the third in a row opens it
    assert b.state == "open" and b.opened == 1
    assert b.refusing() and not b.allow()
    fake.t += 9.9
    assert b.refusing() and not b.allow()
    assert b.retry_in() == pytest.approx(0.1)
    assert b.describe() == "teacher circuit open after 3 failures, retrying in 0.1 s"


def test_a_reachable_answer_resets_the_count():
    b, _ = breaker(failures=3)
    b.record(reachable=False)
    b.record(reachable=False)
    b.record(reachable=True)  # e.g. a 400 or a 429: the server is up
    b.record(reachable=False)
    b.record(reachable=False)
    assert b.state == "closed" and b.consecutive == 2


def test_after_the_cooldown_exactly_one_probe_goes():
    b, fake = breaker(failures=1, cooldown_s=10.0)
    b.record(reachable=False)
    fake.t += 10.0
    assert b.state == "half-open" and not b.refusing()
    assert b.allow()  # the probe
    assert b.refusing() and not b.allow() and not b.allow()
    assert "a probe request is out" in b.describe()


def test_a_probe_that_is_answered_closes_it():
    b, fake = breaker(failures=1, cooldown_s=10.0)
    b.record(reachable=False)
    fake.t += 10.0
    assert b.allow()
    b.record(reachable=True)
    assert b.state == "closed" and b.consecutive == 0
    assert b.allow() and b.allow()


def test_a_probe_that_fails_opens_it_for_another_cooldown():
    b, fake = breaker(failures=2, cooldown_s=10.0)
    b.record(reachable=False)
    b.record(reachable=False)
    fake.t += 12.0
    assert b.allow()
    assert b.record(reachable=False)  # re-opened, from now
    assert b.state == "open" and b.opened == 2
    fake.t += 9.0
    assert not b.allow()
    fake.t += 1.0
    assert b.allow()


def test_a_straggler_failing_while_open_does_not_restart_the_cooldown():
    b, fake = breaker(failures=1, cooldown_s=10.0)
    b.record(reachable=False)
    fake.t += 6.0
    assert not b.record(reachable=False)  # sent before it opened, failed late
    fake.t += 4.0
    assert b.allow()  # 10 s after it opened, not after the straggler


def test_an_abandoned_probe_lets_the_next_caller_probe():
    b, fake = breaker(failures=1, cooldown_s=0.0)
    b.record(reachable=False)
    assert b.allow() and not b.allow()
    b.abandon()  # cancelled before an answer: nothing learned
    assert b.allow()


def test_it_checks_its_settings():
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError, match="cooldown_s"):
        CircuitBreaker(1, -1.0)


# --- the teacher with a server that dies -----------------------------------------------------


def make(server: TeacherServer, provider: str, clock: Clock, **overrides) -> Teacher:
    base_url = server.url if provider == "anthropic" else server.openai_url
    settings = dict(provider=provider, model="judge", api_key_env=KEY_ENV, base_url=base_url)
    settings.update(FAST, **overrides)
    teacher, status = make_teacher(TeacherConfig(**settings), environ={KEY_ENV: "k"}, clock=clock)
    assert teacher is not None, status
    return teacher


def code(i: int) -> str:
    return f"fn f_{i}() -> i32 {{ {i} }}"  # each sample its own, so none is shared or cached


async def judge(teacher: Teacher, i: int) -> Judgement:
    return await teacher.judge(TASK, code(i), RUST, True)


def kind(judgement: Judgement) -> str | None:
    return None if judgement.abstained is None else judgement.abstained.partition(":")[0]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_dead_teacher_is_not_asked_until_the_cooldown_then_a_probe_brings_it_back(provider):
    shifted = ShiftedClock()
    server = TeacherServer(stop_after=1).start()
    try:
        teacher = make(server, provider, shifted.clock())

        async def run() -> None:
            try:
                assert kind(await judge(teacher, 0)) is None  # the one answer; then it is gone
                server.wait_down()
                # Two failed requests (the first try and one retry) open the circuit; the third
                # try is not made.
                first = await judge(teacher, 1)
                assert kind(first) == "connection"
                assert teacher.stats.requests == 3 and teacher.breaker.state == "open"
                assert teacher.metrics()["teacher_circuit_open"] == 1.0

                server.restart()  # back, but the breaker does not know yet
                started = time.monotonic()
                refused = [await judge(teacher, i) for i in range(2, 12)]
                elapsed = time.monotonic() - started
                assert [kind(j) for j in refused] == ["unavailable"] * 10
                assert all(math.isnan(j.score) for j in refused)
                assert refused[0].abstained.startswith(
                    "unavailable: teacher circuit open after 2 failures, retrying in "
                )
                assert teacher.stats.requests == 3  # not one request more
                assert len(server.requests) == 1  # the first server's one; none since
                assert elapsed < 1.0  # no retry schedule: 10 refusals at once

                shifted.shift += COOLDOWN_S  # the cooldown is over: one probe goes
                probe = await judge(teacher, 12)
                assert kind(probe) is None and probe.reason == "ok"
                assert teacher.breaker.state == "closed"
                assert teacher.metrics()["teacher_circuit_open"] == 0.0
                assert kind(await judge(teacher, 13)) is None
                assert len(server.requests) == 3
            finally:
                await teacher.aclose()

        anyio.run(run)
    finally:
        server.stop()
    metrics = teacher.metrics()
    assert metrics["teacher_abstained_unavailable"] == 10.0
    assert metrics["teacher_abstained_connection"] == 1.0
    assert metrics["teacher_verdicts"] == 3.0
    assert metrics["teacher_requests"] == 5.0  # 1 + 2 failed + the probe + 1
    assert "unavailable" in ABSTAIN_KINDS


def test_a_probe_that_finds_it_still_dead_opens_another_cooldown_without_retrying():
    shifted = ShiftedClock()
    server = TeacherServer().start()
    try:
        teacher = make(server, "openai-compatible", shifted.clock(), max_attempts=5)
        server.stop()  # dead before the first request

        async def run() -> list[Judgement]:
            try:
                out = [await judge(teacher, 0)]  # two refused connections open it
                assert teacher.breaker.state == "open" and teacher.stats.requests == 2
                shifted.shift += COOLDOWN_S
                out.append(await judge(teacher, 1))  # the probe: refused again, no retry
                assert teacher.stats.requests == 3 and teacher.breaker.opened == 2
                out.append(await judge(teacher, 2))
                return out
            finally:
                await teacher.aclose()

        judgements = anyio.run(run)
    finally:
        server.stop()
    assert [kind(j) for j in judgements] == ["connection", "connection", "unavailable"]
    assert teacher.stats.retries == 1  # the first sample's one retry; the probe's none


def test_5xx_answers_open_the_circuit_but_4xx_and_unreadable_replies_do_not():
    server = TeacherServer().start()
    try:
        server.script(Status(400), Status(404), Reply("not a verdict"), Status(429, retry_after=0))
        server.script(Status(400), Status(500), Status(503))
        teacher = make(server, "anthropic", ShiftedClock().clock(), max_attempts=1)

        async def run() -> list[Judgement]:
            try:
                return [await judge(teacher, i) for i in range(8)]
            finally:
                await teacher.aclose()

        judgements = anyio.run(run)
    finally:
        server.stop()
    kinds = [kind(j) for j in judgements]
    assert kinds == [
        "api_error",
        "api_error",
        "unparsable",
        "rate_limited",
        "api_error",  # four answers from a live server, then a 400: the count never grew
        "server_error",
        "server_error",  # two 5xx in a row: open
        "unavailable",
    ]
    assert len(server.requests) == 7


def test_requests_queued_when_it_opens_are_not_sent_and_give_their_budget_back():
    # One at a time: the others wait for the slot, are admitted by the budget, and are refused
    # when their turn comes, since the circuit opened meanwhile.
    server = TeacherServer().start()
    try:
        teacher = make(
            server, "openai-compatible", ShiftedClock().clock(), concurrency=1, max_requests=100
        )
        server.stop()
        judgements: list[Judgement] = []

        async def run() -> None:
            async def one(i: int) -> None:
                judgements.append(await judge(teacher, i))

            try:
                async with anyio.create_task_group() as group:
                    for i in range(6):
                        group.start_soon(one, i)
            finally:
                await teacher.aclose()

        anyio.run(run)
    finally:
        server.stop()
    kinds = sorted(kind(j) or "" for j in judgements)
    assert kinds.count("unavailable") >= 4 and set(kinds) <= {"connection", "unavailable"}
    assert teacher.stats.requests == 2  # the failures that opened it
    assert teacher.budget.requests == teacher.stats.requests  # no request counted unsent
    assert teacher.budget.pending == 0.0 and teacher.budget.exhausted is None


def test_a_backoff_ends_early_when_the_circuit_opens_meanwhile():
    # A sample told to come back in 20 s is woken when another request opens the circuit: it
    # does not sleep through its wait for a server known to be down.
    server = TeacherServer(stop_after=1).start()  # answers the 429, then is gone
    try:
        server.script(Status(429, retry_after=20))
        teacher = make(
            server, "anthropic", ShiftedClock().clock(), breaker_failures=1, retry_after_max_s=60
        )

        async def run() -> list[Judgement]:
            out: list[Judgement] = []

            async def one(i: int) -> None:
                out.append(await judge(teacher, i))

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(one, 0)
                    await anyio.sleep(0.3)  # sample 0 got its 429 and waits 20 s
                    group.start_soon(one, 1)  # refused connection: opens the circuit
            finally:
                await teacher.aclose()
            return out

        started = time.monotonic()
        judgements = anyio.run(run)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert [kind(j) for j in judgements] == ["connection", "unavailable"]
    assert teacher.stats.requests == 2 and teacher.stats.retries == 1
    # The bound is loose on purpose (a shared machine), but far below the 20 s asked for.
    assert elapsed < 8.0


def test_requests_waiting_for_a_rate_limit_slot_are_refused_when_it_opens_and_give_it_back():
    # 6 requests/min, one at a time after the first: the 2nd..4th samples wait 10, 20 and 30 s for
    # their slots. The first request finds the server dead and opens the circuit: they are woken,
    # refused, and their slots are given back to the limiter.
    shifted = ShiftedClock()
    server = TeacherServer().start()
    try:
        teacher = make(
            server,
            "anthropic",
            shifted.clock(),
            requests_per_minute=6.0,
            burst=1,
            breaker_failures=1,
        )
        server.stop()
        judgements: list[Judgement] = []

        async def run() -> float:
            async def one(i: int) -> None:
                judgements.append(await judge(teacher, i))

            try:
                async with anyio.create_task_group() as group:
                    for i in range(4):
                        group.start_soon(one, i)
                return teacher.rate.reserve(0.0) - teacher.clock.now()
            finally:
                await teacher.aclose()

        started = time.monotonic()
        next_slot_in = anyio.run(run)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert sorted(kind(j) or "" for j in judgements) == ["connection"] + ["unavailable"] * 3
    assert teacher.stats.requests == 1
    assert elapsed < 5.0  # not the 30 s the last one was queued for
    # Only the one request sent holds a slot: the next is due 10 s after it, not 40 s.
    assert next_slot_in <= 10.0
