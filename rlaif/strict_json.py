"""JSON that strict parsers read: NaN and infinities are written as null.

In memory the project marks a judge that gave no answer with NaN (a reward term, a teacher
score, a metric with nothing to average). Python's `json.dumps` writes that as a bare `NaN`,
which is not JSON: jq, JavaScript and most JSON libraries reject the line. Every file the project
writes for people and tools (metrics.jsonl, samples.jsonl, `score` output, eval JSON) goes
through `dumps`, which writes null instead; the project's own readers take null back as NaN
where they expect a number (`number`).
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, replaced by None (tuples as lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` with NaN and infinities as null; anything else non-finite raises."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def number(value: Any) -> float:
    """A number read back from our JSON: null (an abstention) and non-numbers are NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)
