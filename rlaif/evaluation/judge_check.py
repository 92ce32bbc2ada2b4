"""`python -m rlaif judge-check`: how far the teacher's verdicts agree with the hidden tests.

Why: the teacher's score is a reward term, so a judge that likes wrong code teaches the student to
write wrong code. Before trusting a teacher, measure it against ground truth that needs no
opinion: whether the task's hidden tests pass.

What: a labelled set of completions of training tasks, each a JSONL record
    {"task_id", "code", "source": "reference" | "mutant" | "student", "compiles": bool,
     "tests_passed": fraction of the hidden tests that pass (null when it does not compile),
     "all_pass": bool}
(mutants also carry a "mutation" note), is sent to the configured teacher through the real
`Teacher.judge` (rate limit, retries, cache and abstentions unchanged). The report: the AUC of the
verdict's raw `correctness` for "passes every test" (positive) against "compiles but fails one"
(negative), the same for the weighted score, Spearman's rank correlation of correctness with the
fraction of tests passed (records that compile), abstentions by reason, latency, tokens and cost.

The teacher is asked blind: it sees the task and the code and nothing of rustc's verdict (as with
`teacher.show_rustc: false`; the check refuses a teacher that would show it, and never hands the
outcome to `Teacher.judge`), because the outcome is what it is asked to predict. Every record is
sent (`only_compiled` does not filter here), and each as finished code: the labels are about the
code as written, so the "cut off" note is not shown. Abstentions are counted by reason and left
out of the AUC and the correlation, never scored 0 or 0.5; a lone-number verdict (no correctness
field) counts in the weighted score's AUC only.

The labelled set, how it is built and the default one it ships: `judge_set`.

Not covered: intervals that account for records of one task being alike (a reference and its
mutant; the bootstrap resamples records, not tasks), calibration of the score's scale (the AUC
and Spearman's rho depend on its order only), and judges that see rustc's report (training's
default, `teacher.show_rustc: true`), which this check leaves out on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import anyio
import numpy as np
from rich.table import Table

from rlaif.config import TeacherConfig
from rlaif.data.tasks import raise_if_any
from rlaif.evaluation.judge_set import Labelled, class_counts, in_order
from rlaif.judges.teacher.client import Teacher
from rlaif.types import Judgement, RustResult, Task

# --- statistics --------------------------------------------------------------------------------


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span: [3, 1, 3] -> [2.5, 1,
    2.5]."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1  # ranks i+1 .. j+1, averaged
        i = j + 1
    return ranks


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The chance that a random positive outscores a random negative, ties counting half: the
    Mann-Whitney U over P x N. NaN when a class is empty."""
    p, n = len(positives), len(negatives)
    if not p or not n:
        return math.nan
    ranks = average_ranks([*positives, *negatives])
    return float((ranks[:p].sum() - p * (p + 1) / 2) / (p * n))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks (so ties are handled). NaN
    with fewer than two pairs or when a side is constant."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs pairs, got {len(x)} and {len(y)} values")
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den else math.nan


def bootstrap_auc(
    scores: Sequence[float],
    positive: Sequence[bool],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the AUC over records drawn with replacement (Efron & Tibshirani
    1993, ch. 13). A draw is a count per record, so its AUC is sum c_i c_j [s_i > s_j] (ties
    half) over positive i and negative j, over the product of the class sizes; draws that hold
    one class only have no AUC and are dropped. (NaN, NaN) when no draw has both."""
    s = np.asarray(scores, dtype=np.float64)  # [N]
    pos = np.asarray(positive, dtype=bool)  # [N]
    if not pos.any() or pos.all():
        return (math.nan, math.nan)
    wins = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])  # [N, N]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(s), size=(resamples, len(s)))  # [R, N] record indices
    counts = np.stack([np.bincount(d, minlength=len(s)) for d in draws])  # [R, N]
    cp, cn = counts * pos, counts * ~pos  # [R, N] each
    num = np.einsum("ri,ij,rj->r", cp, wins, cn)  # [R]
    den = cp.sum(1) * cn.sum(1)  # [R]
    values = num[den > 0] / den[den > 0]
    if not len(values):
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


# --- the check ---------------------------------------------------------------------------------


def blind_teacher_config(config: TeacherConfig) -> TeacherConfig:
    """The teacher's config as the check uses it: rustc's report hidden (it holds the outcome
    being predicted), and no filter on what is sent (every record has code to grade)."""
    return dataclasses.replace(config, show_rustc=False, only_compiled=False)


def attach_tasks(
    records: Sequence[Labelled], tasks: Mapping[str, Task], tasks_path: str
) -> list[tuple[Labelled, Task]]:
    """Each record with its task; DataError naming each record whose task is not a training
    task."""
    missing = [
        f"{r.where or r.task_id}: task_id: {r.task_id!r} is not a task of {tasks_path}"
        for r in records
        if r.task_id not in tasks
    ]
    raise_if_any(missing)
    return [(r, tasks[r.task_id]) for r in records]


async def grade(items: Sequence[tuple[Labelled, Task]], teacher: Teacher) -> list[Judgement]:
    """The teacher's verdict on every record, in order, asked blind.

    `Teacher.judge` is handed an empty RustResult, so the outcome cannot reach the request
    whatever the config says; a teacher that would show rustc's report is refused all the same,
    since it would then report "does not compile" for everything."""
    if teacher.config.show_rustc:
        raise ValueError(
            "judge-check asks the teacher blind: build it from blind_teacher_config(...) "
            "(teacher.show_rustc would show the outcome it is asked to predict)"
        )
    # Every record at once: the teacher's own limiter and rate limit bound the requests.
    return await in_order(
        [lambda r=r, t=t: teacher.judge(t, r.code, RustResult(), True) for r, t in items]
    )


def summarise(
    records: Sequence[Labelled],
    judgements: Sequence[Judgement],
    teacher_metrics: Mapping[str, float],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The report (strict-JSON-ready): class counts, both AUCs with intervals, Spearman's rho,
    abstentions by reason, the teacher's latency, tokens and cost, and each record's verdict."""
    pairs = list(zip(records, judgements, strict=True))
    judged = [(r, j) for r, j in pairs if j.abstained is None]
    with_correctness = [
        (r, j.scores["correctness"]) for r, j in judged if "correctness" in j.scores
    ]
    reasons = Counter(j.abstained.partition(":")[0] for _, j in pairs if j.abstained is not None)
    compiled = [(r.tests_passed, c) for r, c in with_correctness if r.compiles]
    m = teacher_metrics
    return {
        "records": {"total": len(records), **class_counts(records)},
        "auc_correctness": _auc_entry(with_correctness, resamples, seed),
        "auc_score": _auc_entry([(r, j.score) for r, j in judged], resamples, seed),
        "spearman_correctness_tests": {
            "value": spearman([c for _, c in compiled], [t for t, _ in compiled]),
            "n": len(compiled),
        },
        "verdicts": len(judged),
        "without_correctness": len(judged) - len(with_correctness),  # lone-number replies
        "abstained": {
            "count": sum(reasons.values()),
            "rate": sum(reasons.values()) / len(pairs) if pairs else math.nan,
            "reasons": dict(sorted(reasons.items())),
        },
        "teacher": {
            "requests": m.get("teacher_requests", math.nan),
            "cache_hits": m.get("teacher_cache_hits", math.nan),
            "retries": m.get("teacher_retries", math.nan),
            "latency_p50_s": m.get("teacher_latency_p50_s", math.nan),
            "latency_p95_s": m.get("teacher_latency_p95_s", math.nan),
            "tokens_in": m.get("teacher_tokens_in", math.nan),
            "tokens_out": m.get("teacher_tokens_out", math.nan),
            "cost_usd": m.get("teacher_spend_usd", math.nan),  # NaN: the model has no price
        },
        "per_record": [_verdict_row(r, j) for r, j in pairs],
    }


def _auc_entry(scored: Sequence[tuple[Labelled, float]], resamples: int, seed: int) -> dict:
    """AUC of all_pass (positive) against compiles_fails (negative), with its interval."""
    pairs = [(r.all_pass, s) for r, s in scored if r.compiles]
    positives = [s for p, s in pairs if p]
    negatives = [s for p, s in pairs if not p]
    low, high = bootstrap_auc([s for _, s in pairs], [p for p, _ in pairs], resamples, seed)
    return {
        "value": auc(positives, negatives),
        "low": low,
        "high": high,
        "positives": len(positives),
        "negatives": len(negatives),
    }


def _verdict_row(record: Labelled, judgement: Judgement) -> dict:
    return {
        "task_id": record.task_id,
        "source": record.source,
        "outcome": record.outcome,
        "tests_passed": record.tests_passed,
        "correctness": judgement.scores.get("correctness", math.nan),
        "score": judgement.score,
        "abstained": judgement.abstained,
    }


def run_judge_check(
    records: Sequence[Labelled],
    tasks: Mapping[str, Task],
    tasks_path: str,
    teacher: Teacher,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Grade every record with `teacher` (closed afterwards) and return `summarise`'s report."""
    items = attach_tasks(records, tasks, tasks_path)

    async def run() -> list[Judgement]:
        try:
            return await grade(items, teacher)
        finally:
            await teacher.aclose()

    judgements = anyio.run(run)
    return summarise(records, judgements, teacher.metrics(), resamples=resamples, seed=seed)


# --- showing the report ------------------------------------------------------------------------


def auc_text(entry: Mapping) -> str:
    """ "0.812 [0.701, 0.905]", or "n/a" when a class had no verdict."""
    if math.isnan(entry["value"]):
        return "n/a"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def latency_text(teacher: Mapping) -> str:
    p50, p95 = teacher["latency_p50_s"], teacher["latency_p95_s"]
    return "n/a" if math.isnan(p50) else f"{p50:.3f} s / {p95:.3f} s"


def cost_text(teacher: Mapping) -> str:
    cost = teacher["cost_usd"]
    return "n/a (no price known)" if math.isnan(cost) else f"${cost:.4f}"


def render_table(report: Mapping, title: str = "judge-check") -> Table:
    """The report as a two-column table (what, value) for the terminal."""
    r, a, t = report["records"], report["abstained"], report["teacher"]
    rho = report["spearman_correctness_tests"]
    reasons = ", ".join(f"{k} {v}" for k, v in a["reasons"].items())
    sources = f"{r['reference']} reference, {r['mutant']} mutant, {r['student']} student"
    classes = (
        f"{r['all_pass']} pass all tests, {r['compiles_fails']} compile but fail, "
        f"{r['no_compile']} do not compile"
    )
    shown_rho = "n/a" if math.isnan(rho["value"]) else f"{rho['value']:.3f} (n={rho['n']})"
    rows = [
        ("records", f"{r['total']} ({sources})"),
        ("classes", classes),
        ("AUC correctness [95% CI]", auc_text(report["auc_correctness"])),
        ("AUC weighted score [95% CI]", auc_text(report["auc_score"])),
        ("Spearman correctness ~ tests passed", shown_rho),
        ("abstained", f"{a['count']} ({a['rate']:.1%})" + (f": {reasons}" if reasons else "")),
        ("latency p50 / p95", latency_text(t)),
        ("tokens in / out", f"{t['tokens_in']:.0f} / {t['tokens_out']:.0f}"),
        ("cost", cost_text(t)),
    ]
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table
