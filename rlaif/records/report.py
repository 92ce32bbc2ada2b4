"""Report: PNG plots and a Markdown summary of one run, from its metrics.jsonl and samples.jsonl.

`python -m rlaif report runs/NAME` writes `runs/NAME/report/`: one PNG per plot (reward and its
terms, pass rates, KL and its coefficient, the teacher's score and abstentions, the curriculum's
difficulty mix, where each step's time went, periodic evaluation) and `README.md` with the key
numbers, the plots and the best and worst completions. A plot whose columns the run does not
have (no teacher, no periodic eval, an older run) is skipped with a note saying why, never drawn
empty. It reads the files only, so it works on a run that is still going or that crashed.

Plots are drawn with matplotlib's object API (`Figure`, the Agg canvas): no pyplot global state,
no display needed.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlaif import strict_json
from rlaif.records.checkpoint import list_checkpoints

TOP = 3  # best and worst completions shown
CODE_CHARS = 2500  # longest completion quoted in the summary
DIFFICULTY_ORDER = ("easy", "medium", "hard")
TIME_PARTS = ("gen_seconds", "score_seconds", "train_seconds", "eval_seconds")


class ReportError(RuntimeError):
    """The run directory cannot be reported on; the message says what is missing."""


@dataclass(frozen=True)
class Report:
    plots: list[Path]
    notes: list[str]  # "name.png: why it was skipped"
    summary: Path


@dataclass
class SampleStats:
    """What the report needs from samples.jsonl, gathered in one streaming pass."""

    components: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # term -> step
    difficulties: dict[int, dict[str, int]] = field(default_factory=dict)  # step -> counts
    best: list = field(default_factory=list)  # min-heap of (reward, order, record)
    worst: list = field(default_factory=list)  # min-heap of (-reward, order, record)
    count: int = 0


def write_report(run_dir: Path, out_dir: Path | None = None) -> Report:
    """Write the plots and README.md into `out_dir` (default RUN/report) and list them."""
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise ReportError(f"{run_dir}: no metrics.jsonl (is this a run directory?)")
    metrics = read_metrics(metrics_path)
    if not metrics:
        raise ReportError(f"{metrics_path}: no rows yet (the run has not finished a step)")
    samples = read_samples(run_dir / "samples.jsonl")
    out_dir = out_dir or run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, notes = [], []
    first, last = int(metrics[0]["iteration"]), int(metrics[-1]["iteration"])
    for name, draw in PLOTS:
        fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
        why_not = draw(fig, metrics, samples)
        path = out_dir / f"{name}.png"
        if why_not is None:
            for ax in fig.axes:  # every plot spans the whole run, in whole steps
                ax.set_xlim(first - 0.5, last + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            fig.savefig(path)
            plots.append(path)
        else:
            path.unlink(missing_ok=True)  # a plot from an earlier report must not look current
            notes.append(f"{name}.png: {why_not}")
    summary = out_dir / "README.md"
    summary.write_text(summary_markdown(run_dir, metrics, samples, plots, notes))
    return Report(plots=plots, notes=notes, summary=summary)


def read_metrics(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # The last line of a killed run may be cut short; anything else is a real problem.
            if number != len(lines):
                raise ReportError(f"{path}:{number}: not a JSON row") from None
    return rows


def read_samples(path: Path) -> SampleStats:
    stats = SampleStats()
    if not path.is_file():
        return stats
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            _add_sample(stats, record)
    return stats


def _add_sample(stats: SampleStats, record: dict) -> None:
    step = int(record.get("step", 0))
    stats.count += 1
    for term, value in (record.get("components") or {}).items():
        stats.components.setdefault(term, defaultdict(list))[step].append(_num(value))
    if "difficulty" in record:
        counts = stats.difficulties.setdefault(step, defaultdict(int))
        counts[record["difficulty"]] += 1
    reward = _num(record.get("reward"))
    if math.isnan(reward):
        return
    kept = {k: record.get(k) for k in ("step", "task_id", "difficulty", "sample", "components")}
    kept["reward"] = reward
    kept["rust"] = {
        k: (record.get("rust") or {}).get(k)
        for k in ("compiled", "errors", "tests_passed", "tests_total")
    }
    text = record.get("code") or record.get("completion") or ""
    kept["text"] = text[:CODE_CHARS] + ("\n// ... (cut)" if len(text) > CODE_CHARS else "")
    kept["is_code"] = bool(record.get("code"))
    for heap, key in ((stats.best, reward), (stats.worst, -reward)):
        item = (key, -stats.count, kept)  # on equal rewards the earlier sample stays
        if len(heap) < TOP:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)


def _num(value) -> float:
    return strict_json.number(value)  # null (written for NaN) and empty cells are NaN


def series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one column; steps where it is empty are left out."""
    steps, values = [], []
    for row in metrics:
        value = _num(row.get(key))
        if not math.isnan(value):
            steps.append(int(row["iteration"]))
            values.append(value)
    return steps, values


def _has(metrics: list[dict], key: str) -> bool:
    return bool(series(metrics, key)[0])


# ---------------------------------------------------------------------------------------------
# Plots: each draws on `fig` and returns None, or returns why it has nothing to draw.


def plot_reward(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    if not _has(metrics, "avg_reward"):
        return "no avg_reward column"
    top = fig.add_subplot(2, 1, 1) if samples.components else fig.add_subplot(1, 1, 1)
    steps, mean = series(metrics, "avg_reward")
    top.plot(steps, mean, marker="o", label="mean reward")
    std_steps, std = series(metrics, "reward_std")
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
        "parse_success_rate": "parses",
        "compile_success_rate": "compiles",
        "test_pass_rate": "hidden tests passed",
        "all_tests_pass_rate": "every test passed",
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
    if not _has(metrics, "kl"):
        return "no kl column"
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(*series(metrics, "kl"), marker="o", color="tab:blue", label="KL to the reference")
    ax.set(title="KL divergence and its coefficient", xlabel="step")
    ax.set_ylabel("KL per token", color="tab:blue")
    if _has(metrics, "kl_coef"):
        right = ax.twinx()
        right.plot(*series(metrics, "kl_coef"), color="tab:red", linestyle="--", label="kl_coef")
        right.set_ylabel("kl_coef (beta)", color="tab:red")
    return None


def plot_teacher(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    scored = _has(metrics, "teacher_score_mean")
    abstained = any(v > 0 for v in series(metrics, "teacher_abstain_rate")[1])
    if not scored and not abstained:
        return "no teacher scores and no abstentions (the teacher was off)"
    ax = fig.add_subplot(1, 1, 1)
    if scored:
        ax.plot(*series(metrics, "teacher_score_mean"), marker="o", label="mean score")
    ax.plot(*series(metrics, "teacher_abstain_rate"), marker="x", label="abstention rate")
    ax.set(title="Teacher: rubric score and abstentions", xlabel="step", ylabel="[0, 1]")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="best")
    return None


def plot_curriculum(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    curriculum_keys = sorted(k for row in metrics for k in row if k.startswith("curriculum"))
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
            ax.plot(*series(metrics, key), marker=".", label=key)
        ax.set(title="Curriculum state", xlabel="step")
        ax.legend(loc="best", fontsize="small")
    return None


def plot_step_time(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    if not _has(metrics, "step_seconds"):
        return "no step_seconds column"
    ax = fig.add_subplot(1, 1, 1)
    steps = [int(row["iteration"]) for row in metrics]
    bottom = [0.0] * len(steps)
    for key in TIME_PARTS:
        if not _has(metrics, key):
            continue
        values = [0.0 if math.isnan(v := _num(row.get(key))) else v for row in metrics]
        ax.bar(steps, values, bottom=bottom, label=key.removesuffix("_seconds"))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    # Scoring overlaps generation, so the bars may stack higher than the step took; periodic
    # evaluation runs after the step and is not part of step_seconds.
    ax.plot(*series(metrics, "step_seconds"), color="black", marker="o", label="step (wall clock)")
    ax.set(title="Where each step's time went", xlabel="step", ylabel="seconds")
    ax.legend(loc="best")
    return None


def plot_eval(fig: Figure, metrics: list[dict], samples: SampleStats) -> str | None:
    keys = [
        k
        for k in dict.fromkeys(k for row in metrics for k in row)
        if k.startswith("eval_") and k not in ("eval_seconds", "eval_mean_reward")
    ]
    keys = [k for k in keys if _has(metrics, k)]
    if not keys:
        return "no eval_* columns (eval.every was 0)"
    ax = fig.add_subplot(1, 1, 1)
    for key in keys:
        ax.plot(*series(metrics, key), marker="o", label=key.removeprefix("eval_"))
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


# ---------------------------------------------------------------------------------------------
# Summary


KEY_NUMBERS = (
    "avg_reward",
    "compile_success_rate",
    "test_pass_rate",
    "all_tests_pass_rate",
    "teacher_score_mean",
    "kl",
)


def summary_markdown(
    run_dir: Path,
    metrics: list[dict],
    samples: SampleStats,
    plots: list[Path],
    notes: list[str],
) -> str:
    steps = [int(row["iteration"]) for row in metrics]
    lines = [f"# Report: {run_dir.name}", ""]
    lines.append(
        f"Run directory `{run_dir}`: {len(metrics)} steps logged ({steps[0]} to {steps[-1]}), "
        f"{samples.count} completions in samples.jsonl.{_config_line(run_dir)}"
    )
    lines += ["", "## Key numbers", "", "| metric | first | last | best (step) | mean |"]
    lines.append("| --- | --- | --- | --- | --- |")
    eval_keys = [k for k in dict.fromkeys(k for r in metrics for k in r) if k.startswith("eval_")]
    for key in [*KEY_NUMBERS, *(k for k in eval_keys if k != "eval_seconds")]:
        at, values = series(metrics, key)
        if not values:
            continue
        best = min if key == "kl" else max  # for KL, lower is the notable extreme
        b = best(range(len(values)), key=values.__getitem__)
        lines.append(
            f"| {key} | {values[0]:.4g} | {values[-1]:.4g} | {values[b]:.4g} ({at[b]}) | "
            f"{sum(values) / len(values):.4g} |"
        )
    lines += ["", _time_line(metrics)]
    checkpoints = [path.name for _, path in list_checkpoints(run_dir)]
    lines.append(f"Checkpoints: {', '.join(checkpoints) if checkpoints else 'none'}.")
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    if notes:
        lines += ["", "Skipped:", "", *(f"- {note}" for note in notes)]
    best = sorted(samples.best, reverse=True)
    worst = sorted(samples.worst, reverse=True)
    lines += ["", f"## Best completions (top {len(best)} by reward)", ""]
    lines += [_completion(i, item[2]) for i, item in enumerate(best, 1)] or ["(none scored)"]
    lines += ["", f"## Worst completions (bottom {len(worst)} by reward)", ""]
    lines += [_completion(i, item[2]) for i, item in enumerate(worst, 1)] or ["(none scored)"]
    return "\n".join(lines) + "\n"


def _config_line(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return ""
    config = yaml.safe_load(path.read_text()) or {}
    student = config.get("student", {}).get("model", "?")
    teacher = config.get("teacher", {})
    judge = (
        "off"
        if teacher.get("provider") == "none"
        else f"{teacher.get('provider')}/{teacher.get('model')}"
    )
    return f" Student `{student}`; teacher `{judge}` (from config.yaml)."


def _time_line(metrics: list[dict]) -> str:
    total = sum(series(metrics, "step_seconds")[1])
    n = len(metrics)
    parts = ", ".join(
        f"{key.removesuffix('_seconds')} {sum(v) / len(v):.2f} s"
        for key in TIME_PARTS
        if (v := series(metrics, key)[1])
    )
    return f"Time: {total:.1f} s over {n} steps, {total / n:.2f} s a step (means: {parts})."


def _completion(rank: int, item: dict) -> str:
    rust = item["rust"]
    terms = ", ".join(f"{k} {_num(v):+.2f}" for k, v in (item.get("components") or {}).items())
    tests = f"tests {rust.get('tests_passed')}/{rust.get('tests_total')}"
    status = (
        "compiles" if rust.get("compiled") else f"does not compile ({rust.get('errors')} errors)"
    )
    head = (
        f"### {rank}. `{item['task_id']}` ({item.get('difficulty') or '?'}), step {item['step']}, "
        f"sample {item['sample']}: reward {item['reward']:.2f}"
    )
    what = "code" if item["is_code"] else "reply (no code found in it)"
    body = _fenced(item["text"], "rust" if item["is_code"] else "text")
    return f"{head}\n\n{status}, {tests}; terms: {terms or 'none'}. The {what}:\n\n{body}\n"


def _fenced(text: str, lang: str) -> str:
    """A code fence longer than any run of backticks inside, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"
