"""A circuit breaker for the teacher: a server that is down is asked once per cooldown, not per
sample.

Why: every failed request is retried (`teacher.max_attempts`, exponential backoff), which is right
for a blip but wrong for a teacher that died. Without a breaker every sample of every later step
pays the full retry schedule before it abstains, and the steps crawl. With one, after `failures`
consecutive requests that found the server unreachable the circuit opens: for `cooldown_s` every
request is refused at once (the sample abstains, reason `unavailable`) and training goes on with
rustc's rewards; then one probe request is let through, which closes the circuit when the server
answers and opens it for another cooldown when it does not.

States:
- closed: requests go; `failures` consecutive failures in a row open it;
- open: requests are refused until `cooldown_s` after it opened;
- half-open: the cooldown is over and exactly one probe is out; others are refused meanwhile.

What counts as a failure is the caller's call (`record(reachable=False)`): for the teacher,
connection errors, timeouts and 5xx. A 4xx, a 429 or a reply that cannot be read came from a
server that is up, so it counts as reachable and resets the count.

Pure bookkeeping on an injectable clock (`ratelimit.Clock`), so tests drive it with a fake one.
Not thread-safe: one event loop uses it, like the teacher's other state.
"""

from __future__ import annotations

from typing import Literal

from rlaif.judges.teacher.ratelimit import MONOTONIC, Clock

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures -> half-open after `cooldown_s`."""

    def __init__(self, failures: int, cooldown_s: float, clock: Clock = MONOTONIC):
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures}")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {cooldown_s}")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.consecutive = 0  # failures in a row since the last reachable answer
        self.opened_at: float | None = None  # None: closed
        self.probing = False  # half-open with its one probe out
        self.opened = 0  # times it opened (re-opens after a failed probe included)

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.probing or self.clock.now() >= self.opened_at + self.cooldown_s:
            return "half-open"
        return "open"

    def refusing(self) -> bool:
        """Whether a request asked now would be refused (no state changes)."""
        state = self.state
        return state == "open" or (state == "half-open" and self.probing)

    def allow(self) -> bool:
        """May one request be sent now? In half-open, True once: the caller sends the probe and
        must then call `record` (or `abandon`, when it was never answered)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self.probing:
            return False
        self.probing = True
        return True

    def record(self, reachable: bool) -> bool:
        """A sent request's outcome; returns True when this failure just opened the circuit."""
        if reachable:
            self.consecutive = 0
            self.opened_at = None
            self.probing = False
            return False
        self.consecutive += 1
        if self.opened_at is None and self.consecutive < self.failures:
            return False
        if self.opened_at is not None and not self.probing:
            # A request sent before it opened failed late: it is open already, the cooldown
            # stands (restarting it on each straggler would keep a recovered server unasked).
            return False
        self.opened_at = self.clock.now()
        self.probing = False
        self.opened += 1
        return True

    def abandon(self) -> None:
        """A request `allow`ed was never answered (cancelled): it says nothing about the server;
        a probe's turn goes to the next caller."""
        self.probing = False

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 when closed or half-open)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock.now())

    def describe(self) -> str:
        """Why requests are refused, for an abstention's reason."""
        after = f"teacher circuit open after {self.consecutive} failures"
        if self.state == "half-open":
            return f"{after}, a probe request is out"
        return f"{after}, retrying in {self.retry_in():.1f} s"
