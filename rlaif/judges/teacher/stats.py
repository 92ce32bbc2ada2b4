"""What the teacher counts: its requests, verdicts, cache hits, abstentions and latencies.

`TeacherStats` holds the cumulative counts that `client.Teacher` adds to as it grades, and
`TeacherStats.row` turns them into flat `teacher_` metrics (the latency quantiles with
`_quantile`); `Teacher.metrics` adds what the budget and the circuit breaker know. An
abstention's reason starts with one of ABSTAIN_KINDS, and each kind gets a metric of its own,
zero included, so that metrics.csv has the same columns from the first step on.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

# Why a sample has no verdict; an abstention's reason starts with its kind and a colon.
ABSTAIN_KINDS = (
    "no_code",
    "budget",
    "timeout",
    "rate_limited",
    "server_error",
    "connection",
    "unavailable",
    "api_error",
    "bad_response",
    "unparsable",
    "off-rubric",
)


@dataclass
class TeacherStats:
    """Cumulative counts for `Teacher.metrics`."""

    requests: int = 0  # HTTP requests sent, retries included
    verdicts: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    tokens_in: int = 0
    tokens_out: int = 0
    abstained: Counter = field(default_factory=Counter)  # kind -> count
    latencies: list[float] = field(default_factory=list)  # seconds per successful request

    def row(self) -> dict[str, float]:
        """The counts as flat `teacher_` keys, in the order `Teacher.metrics` reports them."""
        latencies = sorted(self.latencies)
        row = {
            "teacher_requests": float(self.requests),
            "teacher_verdicts": float(self.verdicts),
            "teacher_cache_hits": float(self.cache_hits),
            "teacher_cache_misses": float(self.cache_misses),
            "teacher_retries": float(self.retries),
            "teacher_429s": float(self.rate_limited),
            "teacher_5xx": float(self.server_errors),
            "teacher_abstained": float(sum(self.abstained.values())),
        }
        for kind in ABSTAIN_KINDS:
            row[f"teacher_abstained_{kind.replace('-', '_')}"] = float(self.abstained[kind])
        row.update(
            teacher_latency_p50_s=_quantile(latencies, 0.50),
            teacher_latency_p95_s=_quantile(latencies, 0.95),
            teacher_tokens_in=float(self.tokens_in),
            teacher_tokens_out=float(self.tokens_out),
        )
        return row


def _quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (statistics' 'inclusive' method); NaN when empty."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    cuts = statistics.quantiles(sorted_values, n=100, method="inclusive")
    return cuts[round(q * 100) - 1]
