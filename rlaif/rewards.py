"""The reward formula, in one place: judges' results and weights in, reward terms out.

Terms are grouped by the judge that produced them ("rust", "teacher"). A judge that could not
give an answer (sandbox failure, teacher abstention) makes its terms NaN rather than 0, so the
trainer leaves them out of the group baseline instead of reading them as bad code
(`algo.group_advantages`). A teacher that is switched off contributes no terms at all.

Compiler terms follow the nanochat-rl seed (REFERENCE.md): parse +8, compile +10, no errors +5 else
-2 per error, no warnings +1 else -0.5 per warning; test terms add the fraction of hidden tests
passed and a bonus when all pass.
"""

from __future__ import annotations

import math

from .config import RewardsConfig
from .types import Judgement, RustResult

RUST_TERMS = ("parse", "compile", "errors", "warnings", "tests", "all_tests")
TEACHER_OFF = "off"


def reward_terms(
    rust: RustResult, judgement: Judgement, has_code: bool, w: RewardsConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """(components, sources): each weighted term, and each judge's sum of terms."""
    components = _rust_terms(rust, has_code, w)
    sources = {"rust": _sum(components.values())}
    if judgement.abstained != TEACHER_OFF:
        components["teacher"] = w.teacher * judgement.score  # NaN when it abstained
        sources["teacher"] = components["teacher"]
    return components, sources


def _rust_terms(r: RustResult, has_code: bool, w: RewardsConfig) -> dict[str, float]:
    if r.sandbox_error is not None:
        return dict.fromkeys(RUST_TERMS, math.nan)
    if not has_code:
        # No code at all is as bad as the most broken code, never better than trying.
        terms = dict.fromkeys(RUST_TERMS, 0.0)
        terms["errors"] = w.per_error * w.max_errors
        return terms
    if r.compiled:
        errors = w.no_errors
        warnings = w.no_warnings if r.warnings == 0 else w.per_warning * r.warnings
    else:
        errors = w.per_error * min(max(r.errors, 1), w.max_errors)
        warnings = 0.0  # lints are not emitted once errors stop compilation
    fraction = r.tests_passed / r.tests_total if r.tests_total else 0.0
    return {
        "parse": w.parse * r.parsed,
        "compile": w.compile * r.compiled,
        "errors": errors,
        "warnings": warnings,
        "tests": w.tests_passed * fraction,
        "all_tests": w.all_tests_pass * r.all_tests_passed,
    }


def _sum(values) -> float:
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else float(sum(values))
