"""The teacher: an LLM behind an API that grades each solution against a rubric.

This module is the policy around each request; the wire (the SDK backends behind one Protocol,
and what their errors mean) lives in `providers`, what the teacher is asked and how its reply is
read in `rubric`, the token buckets in `ratelimit`, the budget in `spend`, the counts in `stats`,
and the making of a teacher from the config (`make_teacher`) in `setup`.

One call to `Teacher.judge`, in order:
1. no code -> abstain; a cached verdict for the same provider, model, rubric version, task, code
   and context -> that verdict, rescored with the current weights, at no cost;
2. the budget (`spend.Budget`) admits the request, or the teacher stops and says so once;
3. up to `teacher.concurrency` requests are in flight; each waits for the rate limiter
   (`ratelimit.RateLimiter`: requests/min and tokens/min) and has a deadline;
4. retries have one owner, tenacity here: the SDKs are built with `max_retries=0`. 429, 5xx,
   timeouts and dropped connections are retried with exponential backoff and full jitter, or
   after the server's Retry-After (capped); anything else fails at once;
4b. a circuit breaker (`breaker.CircuitBreaker`) watches for a server that is down: after
   `teacher.breaker_failures` consecutive unreachable requests (connection errors, timeouts,
   5xx) requests are refused at once for `teacher.breaker_cooldown_s` (abstention `unavailable`;
   retries stop, and backoffs and rate-limit waits in progress are cut short), then one probe
   tells whether it is back;
5. a verdict that cannot be had is an abstention: a NaN score with its reason ("kind: detail",
   kinds in `stats.ABSTAIN_KINDS`), never a made-up 0 or 0.5. Abstentions are not cached.

The API key is handed to the SDK client and nowhere else: it is not logged, stored in the
config, written with the samples, or passed to the rustc sandbox (whose environment is built
from scratch, `sandbox.scrubbed_env`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from rlaif.cache import InFlight, ResultCache, cache_key
from rlaif.config import TeacherConfig, rubric_weights
from rlaif.judges.teacher.breaker import CircuitBreaker
from rlaif.judges.teacher.providers import (
    API_ERRORS,
    STATUS_ERRORS,
    ChatBackend,
    Completion,
    DeadlineExceeded,
    error_kind,
    retry_after_s,
    retryable,
    unreachable,
)
from rlaif.judges.teacher.ratelimit import MONOTONIC, Clock, RateLimiter
from rlaif.judges.teacher.rubric import (
    RUBRIC_VERSION,
    SYSTEM_PROMPT,
    context_shown,
    grading_request,
    read_verdict,
    score_verdict,
)
from rlaif.judges.teacher.spend import Budget, price_of
from rlaif.judges.teacher.stats import TeacherStats
from rlaif.types import Judgement, RustResult, Task

log = logging.getLogger("rlaif.judges.teacher.client")


class TeacherBudgetExhausted(RuntimeError):
    """The budget is spent and `teacher.on_budget` is `stop`: the run ends after this step."""


class _BudgetRefused(Exception):
    """The budget refused a request (never retried)."""


class _CircuitOpen(Exception):
    """The circuit breaker refused a request: the server is known to be down (never retried)."""


def estimate_tokens(text: str) -> int:
    """A request's input tokens, before sending: ~3.5 characters a token for code and English
    (an over-estimate rather than under; the reported usage corrects the rate limiter later)."""
    return math.ceil(len(text) / 3.5)


class Teacher:
    """Grades samples through a backend: rate-limited, retried, budgeted and cached."""

    def __init__(
        self,
        backend: ChatBackend,
        config: TeacherConfig,
        *,
        cache: ResultCache | None = None,
        clock: Clock = MONOTONIC,
        identity: tuple[str, ...] | None = None,
        server_threads: int = 0,
    ):
        self.backend = backend
        self.config = config
        self.cache = cache
        # What decides the answers, for the cache key: a remote API by provider, model and
        # address; a local server by its model file's hash and sampling (not its port).
        self.identity = identity or (config.provider, config.model, config.base_url)
        self.server_threads = server_threads  # cores a local server uses while it answers
        self.clock = clock
        self.only_compiled = config.only_compiled
        self.limiter = anyio.CapacityLimiter(config.concurrency)
        self.rate = RateLimiter(
            config.requests_per_minute, config.tokens_per_minute, config.burst, clock
        )
        self.budget = Budget(
            config.max_requests,
            config.max_dollars,
            price_of(config.model, config.input_price_per_mtok, config.output_price_per_mtok),
        )
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s, clock)
        self.weights = rubric_weights(config)
        # The SDK's own timeout covers each read; this deadline also covers a server that
        # trickles bytes forever.
        self.deadline_s = config.timeout_s * 1.5
        self.stats = TeacherStats()
        self._in_flight = InFlight()  # identical samples at once share one request
        self._waiting: set[anyio.CancelScope] = set()  # waits the circuit opening cuts short
        self._announced = False

    # --- grading ------------------------------------------------------------------------

    async def judge(self, task: Task, code: str, rust: RustResult, finished: bool) -> Judgement:
        if not code.strip():
            return self._abstain("no_code: nothing to grade")
        context = context_shown(rust, finished, self.config.show_rustc)
        key = self._key(task, code, context)
        # The same sample being graded now: share its verdict (read off the event loop).
        cached = await self._in_flight.lookup(key, self._cached)
        if self.cache is not None:
            self.cache.count(cached)
        if cached is not None:
            self.stats.cache_hits += 1
            return score_verdict(cached, self.weights, finished)
        self.stats.cache_misses += 1
        with self._in_flight.claim(key):
            return await self._ask(grading_request(task, code, context), finished, key)

    async def _cached(self, key: str) -> dict | None:
        """The stored verdict (read off the event loop), counted once per lookup by `judge`."""
        return await self.cache.aread(key) if self.cache is not None else None

    async def _ask(self, user: str, finished: bool, key: str) -> Judgement:
        try:
            completion = await self._with_retries(user)
        except _BudgetRefused:
            return self._abstain(f"budget: {self.budget.exhausted}")
        except _CircuitOpen:
            return self._abstain(f"unavailable: {self.breaker.describe()}")
        except API_ERRORS as exc:
            return self._abstain(f"{error_kind(exc)}: {_describe(exc)}")
        raw = read_verdict(completion.text)
        if isinstance(raw, str):
            return self._abstain(raw)
        self.stats.verdicts += 1
        if self.cache is not None:
            await self.cache.aset(key, raw)
        return score_verdict(raw, self.weights, finished)

    async def _with_retries(self, user: str) -> Completion:
        cfg = self.config
        backoff = wait_random_exponential(multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s)

        def wait(state) -> float:
            asked = retry_after_s(state.outcome.exception())
            if asked is not None:
                return min(asked, cfg.retry_after_max_s)
            return backoff(state)

        def count_retry(state) -> None:
            self.stats.retries += 1

        def circuit_open(state) -> bool:
            return self.breaker.refusing()

        retrying = AsyncRetrying(
            # A server known to be down is not retried: the next try would be refused anyway.
            stop=stop_after_attempt(cfg.max_attempts) | circuit_open,
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=lambda seconds: self._unless_open(self.clock.sleep, seconds),
            before_sleep=count_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(user)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _unless_open(self, wait: Callable[..., Awaitable[object]], *args: Any) -> bool:
        """Await `wait(*args)` (a backoff, a rate-limit slot), but cut it short when the circuit
        opens meanwhile: the request after it would be refused anyway. False when cut short."""
        if self.breaker.refusing():
            return False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await wait(*args)
            finally:
                self._waiting.discard(scope)
        return not scope.cancelled_caught

    async def _attempt(self, user: str) -> Completion:
        """One request: breaker, budget, concurrency slot, rate limit, deadline; usage booked
        after. A request that is never sent gives its budget and rate-limit shares back.

        The accounting is here (the budget reserved, then settled or given back; the counts);
        getting the request through the gates is `_take_turn`'s, sending it `_send`'s."""
        if self.breaker.refusing():
            raise _CircuitOpen
        estimate = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(user)
        tokens = estimate + self.config.max_tokens
        reserved = self.budget.start(estimate, self.config.max_tokens)
        if reserved is None:
            self._announce_budget()
            raise _BudgetRefused
        completion = Completion("")
        sent = False
        try:
            async with self.limiter:
                probe = await self._take_turn(tokens)
                sent = True
                self.stats.requests += 1
                started = self.clock.now()
                completion = await self._send(user, probe)
        except STATUS_ERRORS as exc:
            self.stats.rate_limited += exc.status_code == 429
            self.stats.server_errors += exc.status_code >= 500
            raise
        finally:
            if sent:
                self.budget.finish(reserved, completion.input_tokens, completion.output_tokens)
            else:
                self.budget.cancel(reserved)
        self.stats.latencies.append(self.clock.now() - started)
        self.stats.tokens_in += completion.input_tokens
        self.stats.tokens_out += completion.output_tokens
        reported = completion.input_tokens + completion.output_tokens
        if reported:
            self.rate.correct(tokens, reported)
        return completion

    async def _take_turn(self, tokens: int) -> bool:
        """Wait for a rate-limit slot for `tokens`, then ask the breaker; True when this request
        is the breaker's probe. Raises _CircuitOpen, the slot given back, when the circuit is
        open by then: the request is not sent."""
        # The circuit may open while this one queues: then it is not sent. (A rate-limit
        # slot cut short is given back by `acquire`.)
        if not await self._unless_open(self.rate.acquire, tokens):
            raise _CircuitOpen
        probe = self.breaker.state == "half-open"
        if not self.breaker.allow():
            self.rate.cancel(tokens)
            raise _CircuitOpen
        return probe

    async def _send(self, user: str, probe: bool) -> Completion:
        """The request itself, under our deadline, and the breaker told how it ended: it must
        hear of every request sent to tell a server that is down. A probe cancelled before its
        answer says nothing either way, so its turn goes to the next request."""
        try:
            with anyio.fail_after(self.deadline_s):
                completion = await self.backend.complete(SYSTEM_PROMPT, user)
        except TimeoutError as exc:
            late = DeadlineExceeded(f"no answer within {self.deadline_s:g} s")
            self._record(late)
            raise late from exc
        except API_ERRORS as exc:
            self._record(exc)
            raise
        except BaseException:  # cancelled: the server was not heard from either way
            if probe:
                self.breaker.abandon()
            raise
        self._record(None)
        return completion

    def _record(self, exc: BaseException | None) -> None:
        """Tell the breaker how a sent request ended (None: answered); say so when that opens or
        closes the circuit."""
        if exc is None or not unreachable(exc):
            if self.breaker.opened_at is not None:
                log.warning("teacher: reachable again; the circuit is closed")
            self.breaker.record(reachable=True)
            return
        if self.breaker.record(reachable=False):
            for scope in list(self._waiting):  # wake those backing off or queued for a slot
                scope.cancel()
            log.warning(
                "teacher: unreachable (%s: %s) after %d failed requests in a row; requests are "
                "refused for %g s (samples abstain, reason unavailable), then one probe",
                error_kind(exc),
                _describe(exc),
                self.breaker.consecutive,
                self.breaker.cooldown_s,
            )

    def _abstain(self, reason: str) -> Judgement:
        self.stats.abstained[reason.partition(":")[0]] += 1
        return Judgement(abstained=reason)

    def _key(self, task: Task, code: str, context: str) -> str:
        return cache_key(
            "teacher",
            *self.identity,
            RUBRIC_VERSION,
            task.id,
            task.prompt,
            code,
            context,
        )

    # --- budget -------------------------------------------------------------------------

    def _announce_budget(self) -> None:
        if self._announced:
            return
        self._announced = True
        then = (
            "the run stops after this step"
            if self.config.on_budget == "stop"
            else "later samples abstain (reason: budget) and training goes on with rustc alone"
        )
        log.warning("teacher: stopped: %s; %s", self.budget.exhausted, then)

    def raise_if_stopped(self) -> None:
        """Raise TeacherBudgetExhausted when the budget is spent and `on_budget` is `stop`."""
        if self.budget.exhausted is not None and self.config.on_budget == "stop":
            raise TeacherBudgetExhausted(f"teacher budget exhausted: {self.budget.exhausted}")

    # --- reporting ----------------------------------------------------------------------

    def busy_cores(self) -> int:
        """Cores the teacher's requests take now: a local server's threads while it answers
        (`rollout.threads.ThreadPolicy` leaves them free), none for an API across the network."""
        return self.server_threads if self.limiter.borrowed_tokens else 0

    def metrics(self) -> dict[str, float]:
        """Cumulative counts since the teacher was made, as flat `teacher_` keys."""
        row = self.stats.row()
        row.update(
            teacher_spend_usd=self.budget.dollars,
            teacher_budget_exhausted=float(self.budget.exhausted is not None),
            teacher_circuit_open=float(self.breaker.state != "closed"),
        )
        if self.server_threads:
            row["teacher_server_threads"] = float(self.server_threads)
        return row

    async def aclose(self) -> None:
        """Close the HTTP client (its connection pool belongs to the event loop that used it)."""
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
