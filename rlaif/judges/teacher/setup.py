"""Making the teacher from the config: whether there is one, which backend, and its status line.

`make_teacher(config)` gives (teacher, status line), or (None, why not) when the teacher is off
(`teacher.provider` none, or the API key missing while `teacher.required` is false). A remote API
gets an SDK client of its provider (`_api_teacher`); `llama-cpp` starts a local server and a
teacher that talks to it (`_local_teacher`). Either way the SDK is built with `max_retries=0`:
the retries belong to `client.Teacher`. The API key goes to the SDK client and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import anthropic
import anyio
import openai

from rlaif import strict_json
from rlaif.cache import ResultCache
from rlaif.config import CacheConfig, ConfigError, TeacherConfig
from rlaif.judges.rust.jobs import cpu_count
from rlaif.judges.teacher.client import Teacher
from rlaif.judges.teacher.local_server import (
    LocalServer,
    ServerSpec,
    resolve_gguf,
    server_threads,
)
from rlaif.judges.teacher.providers import (
    AnthropicBackend,
    ChatBackend,
    Completion,
    OpenAIBackend,
)
from rlaif.judges.teacher.ratelimit import MONOTONIC, Clock
from rlaif.judges.teacher.rubric import verdict_schema
from rlaif.judges.teacher.spend import price_of


class TeacherUnavailable(RuntimeError):
    """The teacher is required but cannot be used (no key): raised before any model loads."""


def make_teacher(
    config: TeacherConfig,
    environ=os.environ,
    *,
    cache_config: CacheConfig | None = None,
    clock: Clock = MONOTONIC,
) -> tuple[Teacher | None, str]:
    """(teacher, status line). The teacher is None when it is off; the line says why.

    Raises TeacherUnavailable when `teacher.required` is set and the key is missing, and
    ConfigError when a dollar budget is set for a model whose prices are unknown.
    """
    if config.provider == "none":
        return None, "teacher: off (teacher.provider is none); rewards come from rustc alone"
    if config.provider == "llama-cpp":
        return _local_teacher(config, cache_config, clock)
    key = environ.get(config.api_key_env, "")
    if not key:
        why = f"environment variable {config.api_key_env} is not set"
        if config.required:
            raise TeacherUnavailable(
                f"teacher.required is true but {why}. Export the key, or set "
                "teacher.required=false to train on compiler rewards alone."
            )
        return None, f"teacher: off ({why}); rewards come from rustc alone"
    prices = price_of(config.model, config.input_price_per_mtok, config.output_price_per_mtok)
    if config.max_dollars and prices is None:
        raise ConfigError(
            f"teacher.max_dollars={config.max_dollars:g}: no price is known for model "
            f"{config.model!r}; set teacher.input_price_per_mtok and "
            "teacher.output_price_per_mtok (USD per million tokens)"
        )
    return _api_teacher(config, key, cache_config, clock)


def _api_teacher(
    config: TeacherConfig, key: str, cache_config: CacheConfig | None, clock: Clock
) -> tuple[Teacher, str]:
    """A teacher behind a remote API, once `make_teacher` has decided there is one: the SDK of
    its provider (Anthropic's, or OpenAI's for every OpenAI-compatible server), and a status
    line that names where the key came from but never the key."""
    timeout = config.timeout_s
    if config.provider == "anthropic":
        client = anthropic.AsyncAnthropic(
            api_key=key, base_url=config.base_url, max_retries=0, timeout=timeout
        )
        backend: ChatBackend = AnthropicBackend(client, config.model, config.max_tokens)
    else:
        client = openai.AsyncOpenAI(
            api_key=key, base_url=config.base_url, max_retries=0, timeout=timeout
        )
        backend = OpenAIBackend(client, config.model, config.max_tokens)
    cache = _verdict_cache(cache_config)
    where = f" at {config.base_url}" if config.base_url else ""
    limits = (
        f"{config.requests_per_minute:g} req/min, {config.tokens_per_minute:g} tok/min, "
        f"{config.concurrency} at once"
    )
    cached = f"; verdicts cached in {cache.path}" if cache is not None else ""
    status = (
        f"teacher: {config.provider} {config.model}{where} (key from {config.api_key_env}; "
        f"{limits}{cached})"
    )
    return Teacher(backend, config, cache=cache, clock=clock), status


def _verdict_cache(cache_config: CacheConfig | None) -> ResultCache | None:
    if cache_config is None or not cache_config.teacher:
        return None
    return ResultCache(
        cache_config.dir,
        "teacher",
        ttl_s=cache_config.teacher_ttl_s,
        size_limit_mb=cache_config.size_limit_mb,
    )


class LocalServerBackend:
    """The OpenAI-compatible client of a local llama.cpp server; closing it stops the server."""

    def __init__(self, chat: OpenAIBackend, server: LocalServer):
        self.chat, self.server = chat, server

    async def complete(self, system: str, user: str) -> Completion:
        return await self.chat.complete(system, user)

    async def aclose(self) -> None:
        try:
            await self.chat.aclose()
        finally:
            await anyio.to_thread.run_sync(self.server.stop)


def _local_teacher(
    config: TeacherConfig, cache_config: CacheConfig | None, clock: Clock
) -> tuple[Teacher, str]:
    """Start the local server (`local_server`) and a teacher that talks to it.

    The server answers one request at a time (llama.cpp's server holds a lock per model), so
    `teacher.concurrency` is capped at 1: more would only queue inside the server, where our
    per-request timeout runs. Verdicts are cached by the model file's hash and the sampling
    settings, never the server's port, which is new each run.
    """
    cache_dir = Path((cache_config or CacheConfig()).dir) / "models"
    gguf, sha256 = resolve_gguf(config.gguf, cache_dir)
    threads = server_threads(config.server_threads, cpu_count())
    alias = gguf.stem if Path(config.gguf).is_file() else config.gguf
    spec = ServerSpec(gguf, alias, threads, config.context_tokens, config.server_start_timeout_s)
    server = LocalServer(spec).start()
    # A local model costs no dollars: price it at 0 unless the config prices it.
    config = dataclasses.replace(
        config,
        concurrency=1,
        model=alias,
        input_price_per_mtok=config.input_price_per_mtok or 0.0,
        output_price_per_mtok=config.output_price_per_mtok or 0.0,
    )
    client = openai.AsyncOpenAI(
        api_key="local", base_url=server.base_url, max_retries=0, timeout=config.timeout_s
    )
    # Decoding is constrained to the rubric's JSON: a small local model cannot answer off it.
    schema = {"type": "json_object", "schema": verdict_schema()}
    chat = OpenAIBackend(client, alias, config.max_tokens, response_format=schema)
    backend = LocalServerBackend(chat, server)
    # Greedy (temperature 0) and constrained: the file, the budget and the schema fix the answer.
    identity = (
        "llama-cpp",
        f"gguf-sha256:{sha256}",
        f"max_tokens={config.max_tokens}",
        "temperature=0",
        strict_json.dumps(schema, sort_keys=True),
    )
    cache = _verdict_cache(cache_config)
    cached = f"; verdicts cached in {cache.path}" if cache is not None else ""
    status = f"teacher: llama-cpp {alias} ({server.describe()}; one request at a time{cached})"
    teacher = Teacher(
        backend, config, cache=cache, clock=clock, identity=identity, server_threads=threads
    )
    return teacher, status
