"""The report's plots: one function per PNG, each drawing one side of a run from its metrics.

Each `plot_*` draws on `fig` and returns None, or returns why it has nothing to draw (the run has
no such column: no teacher, no periodic eval, an older run), so that the report skips it with a
note instead of drawing it empty; `PLOTS` lists them in the report's order. They read the rows
under the namespaced metric names (`metrics.namespaced`) and what `SampleStats` gathered from
samples.jsonl (`report.read_samples`).

Plots are drawn with matplotlib's object API (`Figure`, the Agg canvas): no pyplot global state,
no display needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib
from matplotlib.figure import Figure

from rlaif import strict_json
from rlaif.records.metrics import metric_name

DIFFICULTY_ORDER = ("easy", "medium", "hard")
TIME_PARTS = ("perf/gen_seconds", "perf/score_seconds", "perf/train_seconds", "perf/eval_seconds")


@dataclass
class SampleStats:
    """What the report needs from samples.jsonl, gathered in one streaming pass."""

    components: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # term -> step
    difficulties: dict[int, dict[str, int]] = field(default_factory=dict)  # step -> counts
    best: list = field(default_factory=list)  # min-heap of (reward, order, record)
    worst: list = field(default_factory=list)  # min-heap of (-reward, order, record)
    count: int = 0


def series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one column, asked for by its flat or namespaced name; steps where it is
    empty are left out."""
    key = metric_name(key)
    steps, values = [], []
    for row in metrics:
        value = strict_json.number(row.get(key))  # null (written for NaN) is NaN
        if not math.isnan(value):
            steps.append(int(row["iteration"]))
            values.append(value)
    return steps, values


def _has(metrics: list[dict], key: str) -> bool:
    return bool(series(metrics, key)[0])


def time_label(key: str) -> str:
    """perf/gen_seconds -> gen."""
    return key.removeprefix("perf/").removesuffix("_seconds")


# ---------------------------------------------------------------------------------------------
# Each draws on `fig` and returns None, or returns why it has nothing to draw.


def plot_reward(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    if not _has(metrics, "reward/mean"):
        return "no reward/mean column"
    top = fig.add_subplot(2, 1, 1) if samples.components else fig.add_subplot(1, 1, 1)
    steps, mean = series(metrics, "reward/mean")
    top.plot(steps, mean, marker="o", label="mean reward")
    std_steps, std = series(metrics, "reward/std")
    if std_steps == steps:
        lo = [m - s for m, s in zip(mean, std, strict=True)]
        hi = [m + s for m, s in zip(mean, std, strict=True)]
        top.fill_between(steps, lo, hi, alpha=0.25, label="± std over samples")
    top.set(title="Reward per step", ylabel="reward")
    top.legend(loc="best")
    if samples.components:
        bottom = fig.add_subplot(2, 1, 2, sharex=top)
        # A colour per term: there are more terms than the default cycle's 10 colours.
        palette = matplotlib.colormaps["tab20"].colors
        for i, (term, by_step) in enumerate(samples.components.items()):
            term_steps = sorted(by_step)
            means = [_nanmean(by_step[s]) for s in term_steps]
            bottom.plot(term_steps, means, label=term, color=palette[i % len(palette)])
        bottom.set(title="Reward terms (mean over the step's samples)", xlabel="step")
        bottom.set_ylabel("weighted value")
        bottom.legend(loc="best", fontsize="small", ncols=2)
    else:
        top.set_xlabel("step")
    return None


def plot_pass_rates(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    keys = {
        "rust/parse_rate": "parses",
        "rust/compile_rate": "compiles",
        "rust/test_pass_rate": "hidden tests passed",
        "rust/all_tests_pass_rate": "every test passed",
    }
    present = {k: label for k, label in keys.items() if _has(metrics, k)}
    if not present:
        return "no compile or test rate columns"
    ax = fig.add_subplot(1, 1, 1)
    for key, label in present.items():
        ax.plot(*series(metrics, key), marker="o", label=label)
    ax.set(title="rustc: parse, compile and test pass rates", xlabel="step", ylabel="fraction")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="best")
    return None


def plot_kl(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    if not _has(metrics, "kl/mean"):
        return "no kl/mean column"
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(*series(metrics, "kl/mean"), marker="o", color="tab:blue", label="KL to the reference")
    ax.set(title="KL divergence and its coefficient", xlabel="step")
    ax.set_ylabel("KL per token", color="tab:blue")
    if _has(metrics, "kl/beta"):
        right = ax.twinx()
        right.plot(*series(metrics, "kl/beta"), color="tab:red", linestyle="--", label="kl/beta")
        right.set_ylabel("kl/beta (the KL coefficient)", color="tab:red")
    return None


def plot_teacher(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    scored = _has(metrics, "teacher/score_mean")
    abstained = any(v > 0 for v in series(metrics, "teacher/abstain_rate")[1])
    if not scored and not abstained:
        return "no teacher scores and no abstentions (the teacher was off)"
    ax = fig.add_subplot(1, 1, 1)
    if scored:
        ax.plot(*series(metrics, "teacher/score_mean"), marker="o", label="mean score")
    ax.plot(*series(metrics, "teacher/abstain_rate"), marker="x", label="abstention rate")
    ax.set(title="Teacher: rubric score and abstentions", xlabel="step", ylabel="[0, 1]")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="best")
    return None


def plot_curriculum(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    curriculum_keys = sorted(k for row in metrics for k in row if k.startswith("curriculum/"))
    curriculum_keys = [k for k in dict.fromkeys(curriculum_keys) if _has(metrics, k)]
    if not samples.difficulties and not curriculum_keys:
        return "samples.jsonl has no difficulty field and metrics no curriculum columns"
    rows = 2 if samples.difficulties and curriculum_keys else 1
    if samples.difficulties:
        ax = fig.add_subplot(rows, 1, 1)
        steps = sorted(samples.difficulties)
        names = [d for d in DIFFICULTY_ORDER if any(d in samples.difficulties[s] for s in steps)]
        names += sorted({d for s in steps for d in samples.difficulties[s]} - set(names))
        totals = [sum(samples.difficulties[s].values()) for s in steps]
        shares = [
            [samples.difficulties[s].get(d, 0) / t for s, t in zip(steps, totals, strict=True)]
            for d in names
        ]
        ax.stackplot(steps, shares, labels=names, alpha=0.8)
        ax.set(title="Curriculum: difficulty of the tasks trained on", ylabel="share of samples")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize="small")
    if curriculum_keys:
        ax = fig.add_subplot(rows, 1, rows)
        for key in curriculum_keys:
            ax.plot(*series(metrics, key), marker=".", label=key.removeprefix("curriculum/"))
        ax.set(title="Curriculum state", xlabel="step")
        ax.legend(loc="best", fontsize="small")
    return None


def plot_step_time(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    if not _has(metrics, "perf/step_seconds"):
        return "no perf/step_seconds column"
    ax = fig.add_subplot(1, 1, 1)
    steps = [int(row["iteration"]) for row in metrics]
    bottom = [0.0] * len(steps)
    for key in TIME_PARTS:
        if not _has(metrics, key):
            continue
        values = [strict_json.number(row.get(key)) for row in metrics]
        values = [0.0 if math.isnan(v) else v for v in values]
        ax.bar(steps, values, bottom=bottom, label=time_label(key))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # Scoring overlaps generation, so the bars may stack higher than the step took; periodic
    # evaluation runs after the step and is not part of step_seconds.
    wall = series(metrics, "perf/step_seconds")
    ax.plot(*wall, color="black", marker="o", label="step (wall clock)")
    ax.set(title="Where each step's time went", xlabel="step", ylabel="seconds")
    ax.legend(loc="best")
    return None


def plot_eval(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    keys = [
        k
        for k in dict.fromkeys(k for row in metrics for k in row)
        if k.startswith("eval/") and k != "eval/mean_reward"
    ]
    keys = [k for k in keys if _has(metrics, k)]
    if not keys:
        return "no eval/* columns (eval.every was 0)"
    ax = fig.add_subplot(1, 1, 1)
    for key in keys:
        ax.plot(*series(metrics, key), marker="o", label=key.removeprefix("eval/"))
    ax.set(title="Held-out evaluation during training", xlabel="step", ylabel="fraction")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="best")
    return None


PLOTS: list[tuple[str, Callable[[Figure, list[dict], SampleStats], str | None]]] = [
    ("reward", plot_reward),
    ("pass_rates", plot_pass_rates),
    ("kl", plot_kl),
    ("teacher", plot_teacher),
    ("curriculum", plot_curriculum),
    ("step_time", plot_step_time),
    ("eval", plot_eval),
]


def _nanmean(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else math.nan
