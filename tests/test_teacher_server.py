"""The loopback teacher server's latency and jitter: what the pipeline benchmark relies on."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.teacher_server import OPENAI_PATH, TeacherServer


def post(server: TeacherServer) -> float:
    """One chat completion request; returns the seconds until its answer arrived."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        server.url + OPENAI_PATH, body.encode(), {"Content-Type": "application/json"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        json.loads(response.read())
    return time.monotonic() - started


def delays(n: int, **options) -> tuple[list[float], list[float]]:
    """(the delays the server drew, the waits the client saw) for n requests one after another."""
    with TeacherServer(**options) as server:
        waited = [post(server) for _ in range(n)]
        drawn = [r.delay for r in server.requests]
    return drawn, waited


def test_jitter_spreads_delays_around_the_latency_and_the_client_waits_them():
    drawn, waited = delays(8, latency_s=0.06, jitter_s=0.04, jitter_seed=3)
    assert all(0.02 <= d <= 0.10 for d in drawn)
    assert max(drawn) - min(drawn) > 0.02  # 8 uniform draws over 80 ms are not all alike
    # The answer is held back by its drawn delay (the client also pays the HTTP round trip).
    assert all(w >= d for w, d in zip(waited, drawn, strict=True))


def test_the_same_seed_draws_the_same_delays_and_another_seed_others():
    first, _ = delays(4, latency_s=0.02, jitter_s=0.01, jitter_seed=7)
    again, _ = delays(4, latency_s=0.02, jitter_s=0.01, jitter_seed=7)
    other, _ = delays(4, latency_s=0.02, jitter_s=0.01, jitter_seed=8)
    assert first == again
    assert first != other


def test_reset_starts_the_delays_over():
    with TeacherServer(latency_s=0.02, jitter_s=0.01, jitter_seed=5) as server:
        for _ in range(3):
            post(server)
        first = [r.delay for r in server.requests]
        server.reset()
        for _ in range(3):
            post(server)
        assert [r.delay for r in server.requests] == first


def test_without_jitter_every_delay_is_the_latency_and_none_is_negative():
    drawn, _ = delays(3, latency_s=0.03)
    assert drawn == [0.03] * 3
    # Jitter larger than the latency is clamped at 0, never a negative sleep.
    drawn, _ = delays(6, latency_s=0.0, jitter_s=0.02, jitter_seed=1)
    assert min(drawn) == 0.0 and all(d >= 0 for d in drawn)


def test_negative_jitter_is_refused():
    with pytest.raises(ValueError, match="jitter_s"):
        TeacherServer(jitter_s=-0.1)
