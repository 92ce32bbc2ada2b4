"""A scriptable fake teacher API: a real aiohttp server for the real `anthropic` and `openai` SDKs.

It speaks just enough of two wire formats:

- Anthropic Messages: ``POST /v1/messages`` (the SDK's ``base_url`` is the server root, ``.url``);
- OpenAI Chat Completions: ``POST /v1/chat/completions`` (the SDK's ``base_url`` is ``.openai_url``,
  which ends in ``/v1``).

Every request is recorded (`Recorded`: path, headers, parsed JSON body, arrival time, what it was
answered) in ``.requests``. Each request is answered by the next queued behaviour
(`TeacherServer.script`); when the queue is empty, by a random fault when ``faults`` are set
(`Faults`: a share of 429s and of 500s, from a seeded generator), else by a `Reply` whose text is
``answer(body)`` when an ``answer`` function is given, else ``.default_reply``. ``latency_s`` delays
every answer; with ``jitter_s`` each API request's delay is drawn uniformly from
``latency_s ± jitter_s`` (at least 0), from a generator seeded with ``jitter_seed``, in arrival
order, so a fixed sequence of requests meets the same delays every time (``Recorded.delay``).
Behaviours:

- `Reply(text)`: a well-formed answer whose text is ``text``;
- `Status(code, retry_after=None)`: an API error in the provider's format (429, 500, 400, ...);
- `Hang(seconds=None)`: no answer, for ``seconds`` or until the client leaves or the server stops;
- `Drop()`: the connection is closed without an answer;
- `Malformed(body, content_type)`: a 200 whose body is not the API's JSON.

The server runs on its own event loop in a background thread, so plain synchronous tests can use
it: ``with TeacherServer() as server: ...`` starts it on an ephemeral port of 127.0.0.1 and stops
it, thread included, on exit (wrap that in a pytest fixture).

A teacher that dies mid-run: ``stop_after=K`` answers K API requests, then the server goes away
by itself (the listening socket and every open connection are closed, so later requests find the
port refusing connections; requests that raced in meanwhile are dropped). ``stop()`` kills it
from the test; ``restart()`` brings it back on the same port, so clients built with its old URL
reach it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

DEFAULT_REPLY = json.dumps(
    {
        "correctness": 8,
        "quality": 7,
        "idiomaticity": 7,
        "efficiency": 6,
        "documentation": 5,
        "reason": "ok",
    }
)

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """Answer well-formed, with ``text`` as the model's reply."""

    text: str


@dataclass(frozen=True)
class Status:
    """Answer with HTTP ``code`` and an error body in the provider's format."""

    code: int
    retry_after: float | None = None  # sent as the Retry-After header when set
    message: str = "scripted error"


@dataclass(frozen=True)
class Hang:
    """Never answer: wait ``seconds`` (None: until the server stops), then drop the connection.

    The wait also ends when the client gives up and closes its connection.
    """

    seconds: float | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending a byte of response."""


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not the API's JSON."""

    body: str = "this is {not json"
    content_type: str = "application/json"


Behaviour = Reply | Status | Hang | Drop | Malformed


@dataclass(frozen=True)
class Faults:
    """Random faults for requests nothing is scripted for: shares of 429s and 500s."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    retry_after: float | None = None  # the 429s' Retry-After header, when set
    seed: int = 0


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body, or the raw text when it is not JSON
    at: float = 0.0  # time.monotonic() on arrival (the same clock as the client's, one process)
    behaviour: Behaviour | None = None  # how it was answered (None: not an API path)
    delay: float = 0.0  # seconds the answer was held back (latency_s, with its jitter)


def user_text(body: Any) -> str:
    """The user message of a request body in either wire format ("" when there is none)."""
    if not isinstance(body, dict):
        return ""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


# Error "type" names of each provider, by HTTP status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class TeacherServer:
    """A fake Anthropic / OpenAI API on 127.0.0.1, driven from synchronous test code."""

    def __init__(
        self,
        default_reply: str = DEFAULT_REPLY,
        *,
        answer: Callable[[Any], str] | None = None,
        faults: Faults | None = None,
        latency_s: float = 0.0,
        stop_after: int | None = None,
        jitter_s: float = 0.0,
        jitter_seed: int = 0,
    ):
        if jitter_s < 0:
            raise ValueError(f"jitter_s={jitter_s}: must be >= 0")
        self.default_reply = default_reply
        self.answer = answer
        self.faults = faults
        self.latency_s = latency_s
        self.stop_after = stop_after
        self._answered = 0  # API requests taken on since the last start, for stop_after
        self.jitter_s = jitter_s
        self._random = random.Random(faults.seed if faults else 0)
        # Apart from the faults' generator, so jitter does not change which requests fail.
        self._jitter_seed = jitter_seed
        self._jitter = random.Random(jitter_seed)
        self.port: int | None = None
        self._requests: list[Recorded] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._bind_port = 0
        self._last_port: int | None = None

    # --- what tests use -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server root: the Anthropic SDK's ``base_url``."""
        if self.port is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """``url + "/v1"``: the OpenAI SDK's ``base_url``."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[Recorded]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours: each answers one request, in order, before the default reply."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget recorded requests and queued behaviours; the jitter's delays start over."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._jitter.seed(self._jitter_seed)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0, port: int = 0) -> TeacherServer:
        """Start serving in a background thread on `port` (0: an ephemeral one); returns once
        the port is known."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        self._bind_port = port
        self._answered = 0
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="teacher-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the teacher server did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the teacher server failed to start") from self._error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving (hanging requests end) and join the thread."""
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError("the teacher server thread did not stop")
        self._thread = self._loop = self._stop = None
        self.port = None

    def restart(self, stop_after: int | None = None, timeout_s: float = 10.0) -> TeacherServer:
        """Stop (if it has not stopped itself) and start again on the same port, with a new
        `stop_after` (None: serve until stopped). Recorded requests are kept."""
        port = self.port if self.port is not None else self._last_port
        self.stop(timeout_s)
        self.stop_after = stop_after
        return self.start(timeout_s, port=port or 0)

    @property
    def down(self) -> bool:
        """Whether the server is not serving (never started, stopped, or gone after stop_after)."""
        return self._thread is None or not self._thread.is_alive()

    def wait_down(self, timeout_s: float = 10.0) -> None:
        """Wait until the server has gone away by itself (`stop_after`)."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        if not self.down:
            raise RuntimeError("the teacher server is still serving")

    def __enter__(self) -> TeacherServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the server's own thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); nothing else may see it
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a request whose client left stops being served at once.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self._bind_port)
            await site.start()
            self.port = self._last_port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _next_behaviour(self, body: Any) -> Behaviour:
        """Called with the lock held."""
        if self._queue:
            return self._queue.popleft()
        if self.faults is not None:
            draw = self._random.random()
            if draw < self.faults.rate_429:
                return Status(429, retry_after=self.faults.retry_after)
            if draw < self.faults.rate_429 + self.faults.rate_500:
                return Status(500)
        return Reply(self.answer(body) if self.answer else self.default_reply)

    def _delay(self) -> float:
        """This request's latency; called with the lock held, so draws follow arrival order."""
        if not self.jitter_s:
            return self.latency_s
        return max(0.0, self.latency_s + self._jitter.uniform(-self.jitter_s, self.jitter_s))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw = await request.text()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        api = request.method == "POST" and request.path in (ANTHROPIC_PATH, OPENAI_PATH)
        last = False
        with self._lock:
            behaviour = self._next_behaviour(body) if api else None
            if api and self.stop_after is not None:
                if self._answered >= self.stop_after:
                    behaviour = Drop()  # raced in while the server goes away
                self._answered += 1
                last = self._answered == self.stop_after
            delay = self._delay() if api else 0.0
            self._requests.append(
                Recorded(
                    method=request.method,
                    path=request.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    at=arrived,
                    behaviour=behaviour,
                    delay=delay,
                )
            )
        if behaviour is None:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        if delay:
            await asyncio.sleep(delay)
        if not last:
            return await self._answer(request, behaviour, body)
        # The last request before going away: its answer is sent in full first, since a shutdown
        # may cancel handlers that are still running.
        try:
            response = await self._answer(request, behaviour, body)
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            assert self._stop is not None
            self._stop.set()

    async def _answer(
        self, request: web.Request, behaviour: Behaviour, body: Any
    ) -> web.StreamResponse:
        anthropic_format = request.path == ANTHROPIC_PATH

        if isinstance(behaviour, Reply):
            model = body.get("model", "") if isinstance(body, dict) else ""
            make = _anthropic_message if anthropic_format else _openai_completion
            return web.json_response(make(next(self._ids), model, behaviour.text, body))
        if isinstance(behaviour, Status):
            headers = {}
            if behaviour.retry_after is not None:
                headers["Retry-After"] = f"{behaviour.retry_after:g}"
            kind = _ERROR_TYPES.get(behaviour.code, "api_error")
            if anthropic_format:
                error = {"type": "error", "error": {"type": kind, "message": behaviour.message}}
            else:
                error = {"error": {"message": behaviour.message, "type": kind, "code": None}}
            return web.json_response(error, status=behaviour.code, headers=headers)
        if isinstance(behaviour, Malformed):
            return web.Response(
                body=behaviour.body.encode(), status=200, content_type=behaviour.content_type
            )
        if isinstance(behaviour, Hang):
            assert self._stop is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), behaviour.seconds)
        # Drop, or a Hang that is over: close the connection without answering.
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError  # aiohttp then writes nothing to the closed transport


def _tokens(body: Any) -> int:
    """A rough token count of a request: its words."""
    return len(json.dumps(body).split()) if body is not None else 0


def _anthropic_message(n: int, model: str, text: str, body: Any) -> dict[str, Any]:
    return {
        "id": f"msg_{n:024d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": _tokens(body), "output_tokens": len(text.split())},
    }


def _openai_completion(n: int, model: str, text: str, body: Any) -> dict[str, Any]:
    prompt, completion = _tokens(body), len(text.split())
    return {
        "id": f"chatcmpl-{n:024d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
