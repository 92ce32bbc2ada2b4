"""Content-addressed result caches on disk (diskcache), with hit and miss counts.

A judge's answer depends only on what it was shown, so the key is a hash of everything that
can change the answer (code, tests, toolchain or model, flags, rubric version...). Values are
plain JSON-able data, never pickled classes, so a cache outlives code changes; a caller that
changes the meaning of a value bumps the `schema` part of its key instead.

`diskcache.Cache` is safe across threads and processes. It is opened with a 60 s lock timeout:
with diskcache's short default timeout, writes under contention can be dropped silently
(REFERENCE.md). That timeout is why async code uses `aget` / `aset`, which run in a worker
thread: a slow disk, or another process holding the lock, then stalls one judge's lookup instead
of the event loop (generation hand-offs, rustc jobs and teacher calls all run on it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import diskcache


def cache_key(*parts: Any) -> str:
    """A stable SHA-256 over JSON-able parts; order matters, dict key order does not."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0


class ResultCache:
    """One named cache under `root` (for example cache/rust, cache/teacher).

    `ttl_s` makes entries expire (None keeps them until evicted); `size_limit_mb` bounds the
    folder, least recently used entries going first.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        *,
        ttl_s: float | None = None,
        size_limit_mb: int = 1024,
    ):
        self.path = Path(root) / name
        self.ttl_s = ttl_s
        self.stats = CacheStats()
        self._cache = diskcache.Cache(
            str(self.path),
            timeout=60,
            size_limit=size_limit_mb * 2**20,
            eviction_policy="least-recently-used",
        )

    def get(self, key: str) -> Any | None:
        """The stored value, or None on a miss (None itself is never stored); counted."""
        value = self.read(key)
        self.count(value)
        return value

    def read(self, key: str) -> Any | None:
        """The stored value, or None, without counting it (see `aread`)."""
        return self._cache.get(key)

    def count(self, value: Any | None) -> None:
        """Count one lookup's outcome (a hit, or a miss when `value` is None)."""
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1

    def set(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("ResultCache cannot store None: it means a miss")
        self._cache.set(key, value, expire=self.ttl_s)
        self.stats.writes += 1

    async def aget(self, key: str) -> Any | None:
        """`get` in a worker thread, so the event loop keeps running while the disk answers."""
        return await anyio.to_thread.run_sync(self.get, key)

    async def aread(self, key: str) -> Any | None:
        """The stored value read in a worker thread, not counted: for `InFlight.lookup`, which
        may read a key again after another caller claimed it, and whose caller counts the
        outcome once (`count`)."""
        return await anyio.to_thread.run_sync(self.read, key)

    async def aset(self, key: str, value: Any) -> None:
        """`set` in a worker thread (not abandoned on cancellation: the write completes)."""
        await anyio.to_thread.run_sync(self.set, key, value)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        return self._cache.clear()

    def close(self) -> None:
        self._cache.close()


class InFlight:
    """One computation per key at a time, on one event loop.

    A caller whose key is being computed `wait`s for that computation, then reads the cache it
    filled; so identical samples judged together cost one rustc job or one teacher request. Use:
    `value = await in_flight.lookup(key, read)`, and on a miss (None), with no await in between,
    `with in_flight.claim(key): compute and store`.
    """

    def __init__(self) -> None:
        self._done: dict[str, anyio.Event] = {}

    async def wait(self, key: str) -> None:
        while key in self._done:
            await self._done[key].wait()

    async def lookup(self, key: str, read: Callable[[str], Awaitable[Any | None]]) -> Any | None:
        """`read(key)` once no computation of `key` is in flight. The read awaits (the cache is
        read off the event loop), so another caller may claim `key` meanwhile: then wait for it
        and read again. None: a miss, and `key` is free to claim."""
        while True:
            await self.wait(key)
            value = await read(key)
            if value is not None or key not in self._done:
                return value

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        self._done[key] = done = anyio.Event()
        try:
            yield
        finally:
            del self._done[key]
            done.set()
