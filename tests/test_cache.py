"""The on-disk result cache: stable keys, hits and misses counted, TTL, shared across handles."""

from __future__ import annotations

import time

import pytest

from rlaif.cache import ResultCache, cache_key


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
