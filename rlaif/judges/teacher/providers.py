"""The wire: the providers' SDK clients behind one Protocol, and what their failures mean.

`ChatBackend.complete(system, user) -> Completion` is all the teacher needs: Anthropic's Messages
API (`AnthropicBackend`) or OpenAI's Chat Completions (`OpenAIBackend`), which also serves any
OpenAI-compatible server (vLLM, Ollama, Together, LM Studio) through `base_url`. The clients are
built with `max_retries=0` (see `setup.make_teacher`): this module classifies failures
(`error_kind`, `retryable`, `retry_after_s`) and the teacher's tenacity loop owns the retries.

Not covered: streaming, tool use, and any provider-specific sampling parameter besides OpenAI's
temperature (Anthropic's 2.x Messages API takes none).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar

import anthropic
import openai

T = TypeVar("T")


class BadResponse(Exception):
    """The server answered 200 with something that is not the provider's response format."""


class DeadlineExceeded(Exception):
    """Our own per-attempt deadline passed (the SDK's read timeout did not fire)."""


@dataclass(frozen=True)
class Completion:
    """A reply's text and the token usage the provider reported for it."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class ChatBackend(Protocol):
    async def complete(self, system: str, user: str) -> Completion:
        """The model's reply; raises one of API_ERRORS on failure."""
        ...

    async def aclose(self) -> None: ...


async def _checked(request: Awaitable[T], expected: type[T]) -> T:
    """Await an SDK call; a 200 whose body is not the provider's format becomes BadResponse."""
    try:
        response = await request
    except ValueError as exc:  # the body was not JSON
        raise BadResponse(f"body is not JSON: {exc}") from exc
    if not isinstance(response, expected):  # JSON, or text, of another shape
        raise BadResponse(f"expected {expected.__name__}, got {type(response).__name__}")
    return response


@dataclass
class AnthropicBackend:
    client: anthropic.AsyncAnthropic
    model: str
    max_tokens: int

    def __post_init__(self) -> None:
        _ = self.client.messages.create  # imported lazily: see OpenAIBackend.__post_init__

    async def complete(self, system: str, user: str) -> Completion:
        # No `temperature`: the Messages API of SDK 2.x takes none (sampling is the server's).
        request = self.client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=system,
            messages=[{"role": "user", "content": user}],
        )
        message = await _checked(request, anthropic.types.Message)
        text = "".join(block.text for block in message.content or [] if block.type == "text")
        usage = message.usage
        return Completion(text, usage.input_tokens or 0, usage.output_tokens or 0)

    async def aclose(self) -> None:
        await self.client.close()


@dataclass
class OpenAIBackend:
    client: openai.AsyncOpenAI
    model: str
    max_tokens: int
    # Sent as is when set: a local llama.cpp server takes {"type": "json_object", "schema": ...}
    # and decodes only replies that match (rubric.verdict_schema).
    response_format: dict | None = None

    def __post_init__(self) -> None:
        # The SDK imports its resource modules on first use (~0.2 s for `chat`): do it now, not
        # inside the first rate-limited request, where it would hold the first burst back and
        # bunch it with the requests admitted after it (bench/teacher_rate.py sees that).
        _ = self.client.chat.completions.create

    async def complete(self, system: str, user: str) -> Completion:
        request = self.client.chat.completions.create(
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            **({"response_format": self.response_format} if self.response_format else {}),
        )
        reply = await _checked(request, openai.types.chat.ChatCompletion)
        text = (reply.choices[0].message.content or "") if reply.choices else ""
        usage = reply.usage
        if usage is None:
            return Completion(text)
        return Completion(text, usage.prompt_tokens or 0, usage.completion_tokens or 0)

    async def aclose(self) -> None:
        await self.client.close()


API_ERRORS = (anthropic.APIError, openai.APIError, BadResponse, DeadlineExceeded)
STATUS_ERRORS = (anthropic.APIStatusError, openai.APIStatusError)
_TIMEOUTS = (anthropic.APITimeoutError, openai.APITimeoutError, DeadlineExceeded)
_CONNECTION = (anthropic.APIConnectionError, openai.APIConnectionError)


def error_kind(exc: BaseException) -> str:
    """The abstention kind of a failed request (one of ABSTAIN_KINDS)."""
    if isinstance(exc, STATUS_ERRORS):
        if exc.status_code == 429:
            return "rate_limited"
        return "server_error" if exc.status_code >= 500 else "api_error"
    if isinstance(exc, _TIMEOUTS):  # before _CONNECTION: the SDKs' timeouts subclass it
        return "timeout"
    if isinstance(exc, _CONNECTION):
        return "connection"
    return "bad_response"


def retryable(exc: BaseException) -> bool:
    return error_kind(exc) in ("rate_limited", "server_error", "timeout", "connection")


def unreachable(exc: BaseException) -> bool:
    """The request found no working server (what the teacher's circuit breaker counts): a
    connection error, a timeout or a 5xx. A 429, a 4xx or an unreadable 200 came from a server
    that is up."""
    return error_kind(exc) in ("server_error", "timeout", "connection")


def retry_after_s(exc: BaseException) -> float | None:
    """The server's requested wait in seconds (retry-after-ms, or Retry-After in seconds or as
    an HTTP date), or None."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None
