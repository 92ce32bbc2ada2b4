"""The teacher's token buckets, driven by a fake clock: exact admission times, no sleeping."""

from __future__ import annotations

import anyio
import pytest

from rlaif.judges.teacher.ratelimit import Clock, RateLimiter, TokenBucket


class FakeClock:
    """Time stands still until someone sleeps; a sleep moves it forward by exactly that much.

    Good for one caller at a time (each `acquire` is awaited in turn), which is what makes the
    admission times exact.
    """

    def __init__(self, start: float = 0.0):
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


def test_requests_start_with_a_burst_then_keep_the_rate():
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=0, burst=3)

    starts = [limiter.reserve(0, now=0.0) for _ in range(6)]

    # 60/min = 1 per second; the bucket starts full with 3: three at once, then one a second.
    assert starts == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


def test_an_idle_bucket_refills_up_to_its_capacity_only():
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=0, burst=3)
    for _ in range(6):
        limiter.reserve(0, now=0.0)  # booked until t = 3 (the last start); full again at t = 6

    # At t = 100 the bucket has been full for 94 s but holds 3, not 94: three at once again.
    assert [limiter.reserve(0, now=100.0) for _ in range(4)] == [100.0, 100.0, 100.0, 101.0]


def test_tokens_per_minute_delays_large_requests():
    # 600 tokens/min = 10 a second; no request limit and burst 1, so the bucket holds one
    # second's worth: 10 tokens.
    limiter = RateLimiter(requests_per_minute=0, tokens_per_minute=600, burst=1)

    first = limiter.reserve(10, now=0.0)  # empties the bucket: full again at t = 1
    second = limiter.reserve(5, now=0.0)  # needs 5 back: t = 0.5; bucket full at t = 1.5
    # 20 > capacity: waits until the bucket would hold 20, i.e. 1 s past "full": t = 2.5
    third = limiter.reserve(20, now=0.0)

    assert (first, second, third) == (0.0, pytest.approx(0.5), pytest.approx(2.5))


def test_both_limits_at_once_take_the_later_start():
    # 120 requests/min (one per 0.5 s, burst 1) and 1200 tokens/min (20 a second; capacity is
    # burst/rpm of a minute = 1/120 * 1200 = 10 tokens).
    limiter = RateLimiter(requests_per_minute=120, tokens_per_minute=1200, burst=1)

    a = limiter.reserve(10, now=0.0)  # both buckets full: t = 0
    b = limiter.reserve(1, now=0.0)  # requests: t = 0.5; tokens: 1 back at t = 0.05 -> 0.5
    c = limiter.reserve(30, now=0.0)  # requests: t = 1.0; tokens bucket full at 0.55 (b took 1
    # at 0.5: full_at = 0.5 + 0.05), and 30 needs 20 more than capacity: 0.55 + 1.0 = 1.55

    assert (a, b, c) == (0.0, 0.5, pytest.approx(1.55))


def test_the_reported_usage_corrects_the_estimate():
    limiter = RateLimiter(requests_per_minute=0, tokens_per_minute=600, burst=1)  # 10/s, cap 10
    limiter.reserve(10, now=0.0)  # estimated 10
    limiter.correct(estimated=10, actual=4)  # the reply said 4: 6 come back

    # Only 4 are out, so 6 are there at t = 0 and 10 at t = 0.4.
    assert limiter.reserve(6, now=0.0) == 0.0
    assert limiter.tokens.level(0.0) == pytest.approx(0.0)


def test_a_correction_upwards_delays_the_next_request():
    limiter = RateLimiter(requests_per_minute=0, tokens_per_minute=600, burst=1)
    limiter.reserve(5, now=0.0)
    limiter.correct(estimated=5, actual=25)  # 20 more than booked: 25 out of a 10-token bucket

    # 15 overdrawn, and 1 more needed: (25 - 10 + 1) / 10 tokens a second = 1.6 s
    assert limiter.reserve(1, now=0.0) == pytest.approx(1.6)


def test_a_cancelled_wait_gives_its_slot_back():
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=0, burst=1)
    assert limiter.reserve(0, now=0.0) == 0.0
    assert limiter.reserve(0, now=0.0) == 1.0
    limiter.cancel(0)  # the second caller was cancelled while waiting

    assert limiter.reserve(0, now=0.0) == 1.0


def test_acquire_sleeps_until_the_admission_time():
    fake = FakeClock(start=10.0)
    limiter = RateLimiter(requests_per_minute=120, tokens_per_minute=0, burst=2, clock=fake.clock())

    async def four() -> list[float]:
        return [await limiter.acquire(0) for _ in range(4)]

    starts = anyio.run(four)

    # Two at once (burst 2), then one per 0.5 s; each caller slept exactly until its turn.
    assert starts == [10.0, 10.0, 10.5, 11.0]
    assert fake.slept == [0.5, 0.5]


def test_acquire_cancelled_while_waiting_returns_its_slot():
    fake = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=0, burst=1, clock=fake.clock())

    async def never(seconds: float) -> None:
        await anyio.sleep_forever()

    limiter.clock = Clock(now=fake.now, sleep=never)

    async def main() -> None:
        await limiter.acquire(0)  # t = 0, no wait
        with anyio.move_on_after(0.01):
            await limiter.acquire(0)  # would start at t = 1; cancelled while waiting

    anyio.run(main)
    assert limiter.reserve(0, now=0.0) == 1.0  # the cancelled slot at t = 1 is free again


def test_no_window_admits_more_than_the_rate_times_its_length_plus_the_burst():
    rpm, burst, window = 120, 5, 60.0
    limiter = RateLimiter(requests_per_minute=rpm, tokens_per_minute=0, burst=burst)
    # 300 requests queued at once, then 50 more after a pause: the pause refills the burst.
    starts = [limiter.reserve(0, now=0.0) for _ in range(300)]
    starts += [limiter.reserve(0, now=starts[-1] + 30.0) for _ in range(50)]

    most = max(sum(s <= t < s + window for t in starts) for s in starts)

    # In any [s, s + 60): at most 5 + 120 (GCRA's bound). Exactly: the first window holds the
    # 5 at t = 0 and the ones at 0.5, 1.0, ..., 59.5 (119 of them) = 124 < 125.
    assert most == 124
    # and the rate is kept: 300 requests, 5 of them free, take (300 - 5) * 0.5 s
    assert starts[299] == pytest.approx((300 - burst) * 0.5)


def test_bucket_arguments_are_checked():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        RateLimiter(60, 0, burst=0)
