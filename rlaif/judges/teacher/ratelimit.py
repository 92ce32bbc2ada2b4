"""Token buckets for the teacher's API limits: requests per minute and tokens per minute.

Each bucket is kept in the "virtual scheduling" form of the generic cell rate algorithm (GCRA,
ITU-T I.371): instead of a level that is refilled on a timer, it stores `full_at`, the time at
which the bucket would be full again if nothing more were taken. With refill rate r per second
and capacity C, its level at time t is C - r * max(0, full_at - t); taking n at time t needs
that level to be at least n, i.e. t >= full_at - (C - n) / r, and moves full_at to
max(full_at, t) + n / r.

Why this form: a reservation is one arithmetic step, so concurrent callers are admitted in
arrival order (each one's start time is fixed when it asks), a caller that waits never holds a
lock, and the arithmetic is pure, so tests drive it with a fake clock and check exact admission
times. Starting from full, any window of W seconds admits at most C + r * W units.

The token estimate of a request is taken before it is sent; `RateLimiter.correct` later charges
(or refunds) the difference with the usage the reply reports, so the tokens bucket tracks what the
provider counted.

Not covered: limits shared with other processes (each process has its own buckets), and the
provider's own view of the limits (its 429s are retried by the teacher, not predicted here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio


@dataclass(frozen=True)
class Clock:
    """Where time comes from: `now()` in seconds and `sleep(seconds)`. Tests inject a fake one."""

    now: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]


MONOTONIC = Clock(now=time.monotonic, sleep=anyio.sleep)


class TokenBucket:
    """One GCRA bucket: `per_minute` units refill continuously, at most `capacity` held.

    Starts full. Amounts above the capacity are admitted once the bucket has been empty for as
    long as the excess takes to refill, so one oversized request is delayed, never refused.
    """

    def __init__(self, per_minute: float, capacity: float):
        if per_minute <= 0 or capacity <= 0:
            raise ValueError(f"per_minute and capacity must be > 0, got {per_minute}, {capacity}")
        self.rate = per_minute / 60.0  # units per second
        self.capacity = float(capacity)
        self.full_at = -math.inf

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time >= now at which `amount` can be taken."""
        return max(now, self.full_at - (self.capacity - amount) / self.rate)

    def take(self, amount: float, at: float) -> None:
        """Take `amount` at time `at` (which must be >= ready_at(amount, ...))."""
        self.full_at = max(self.full_at, at) + amount / self.rate

    def give_back(self, amount: float) -> None:
        """Return `amount` (negative: charge more). A refund never fills it above capacity."""
        self.full_at -= amount / self.rate

    def level(self, now: float) -> float:
        """Units available at `now` (negative when over-drawn by a correction)."""
        return self.capacity - self.rate * max(0.0, self.full_at - now)


class RateLimiter:
    """Admission by requests/min and tokens/min together; 0 disables a limit.

    `burst` is how many requests may start at once after an idle spell (the requests bucket's
    capacity); the tokens bucket holds the same share of its minute: `burst / requests_per_minute`
    of `tokens_per_minute`, or `burst` seconds' worth when requests are not limited.
    """

    def __init__(
        self,
        requests_per_minute: float,
        tokens_per_minute: float,
        burst: int,
        clock: Clock = MONOTONIC,
    ):
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.clock = clock
        self.requests = TokenBucket(requests_per_minute, burst) if requests_per_minute else None
        self.tokens = None
        if tokens_per_minute:
            share = burst / requests_per_minute if requests_per_minute else burst / 60.0
            self.tokens = TokenBucket(tokens_per_minute, max(1.0, tokens_per_minute * share))

    def reserve(self, tokens: float, now: float | None = None) -> float:
        """Book one request of `tokens` (estimated); returns the time it may start.

        Pure bookkeeping: the caller waits until then. Later calls queue behind earlier ones.
        """
        now = self.clock.now() if now is None else now
        start = now
        if self.requests is not None:
            start = max(start, self.requests.ready_at(1, now))
        if self.tokens is not None:
            start = max(start, self.tokens.ready_at(tokens, now))
        if self.requests is not None:
            self.requests.take(1, start)
        if self.tokens is not None:
            self.tokens.take(tokens, start)
        return start

    def cancel(self, tokens: float) -> None:
        """Undo one reservation that was never used (its caller was cancelled while waiting)."""
        if self.requests is not None:
            self.requests.give_back(1)
        if self.tokens is not None:
            self.tokens.give_back(tokens)

    def correct(self, estimated: float, actual: float) -> None:
        """Charge the tokens bucket with what the provider reported instead of the estimate."""
        if self.tokens is not None:
            self.tokens.give_back(estimated - actual)

    async def acquire(self, tokens: float) -> float:
        """Wait until one request of `tokens` may start; returns that start time."""
        start = self.reserve(tokens)
        try:
            delay = start - self.clock.now()
            if delay > 0:
                await self.clock.sleep(delay)
        except BaseException:  # cancelled while waiting: the slot goes to the next caller
            self.cancel(tokens)
            raise
        return start
