"""Report: PNG plots and a Markdown summary of one run, from its metrics.jsonl and samples.jsonl.

`python -m rlaif report runs/NAME` writes `runs/NAME/report/`: one PNG per plot (reward and its
terms, pass rates, KL and its coefficient, the teacher's score and abstentions, the curriculum's
difficulty mix, where each step's time went, periodic evaluation; drawn by `plots.py`) and
`README.md` with the key numbers, the plots and the best and worst completions. A plot whose
columns the run does not have (no teacher, no periodic eval, an older run) is skipped with a note
saying why, never drawn empty. It reads the files only, so it works on a run that is still going
or that crashed. Rows are read under the namespaced metric names whichever names they were
written with: a run resumed from one logged before the names were namespaced has both.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlaif import strict_json
from rlaif.records.checkpoint import list_checkpoints
from rlaif.records.metrics import namespaced
from rlaif.records.plots import PLOTS, TIME_PARTS, SampleStats, series, time_label

TOP = 3  # best and worst completions shown
CODE_CHARS = 2500  # longest completion quoted in the summary


class ReportError(RuntimeError):
    """The run directory cannot be reported on; the message says what is missing."""


@dataclass(frozen=True)
class Report:
    plots: list[Path]
    notes: list[str]  # "name.png: why it was skipped"
    summary: Path


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
    """The rows of metrics.jsonl under the namespaced names (older runs wrote flat ones)."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(namespaced(json.loads(line)))
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


# ---------------------------------------------------------------------------------------------
# Summary


KEY_NUMBERS = (
    "reward/mean",
    "rust/compile_rate",
    "rust/test_pass_rate",
    "rust/all_tests_pass_rate",
    "teacher/score_mean",
    "kl/mean",
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
    eval_keys = [k for k in dict.fromkeys(k for r in metrics for k in r) if k.startswith("eval/")]
    for key in [*KEY_NUMBERS, *eval_keys]:
        at, values = series(metrics, key)
        if not values:
            continue
        best = min if key == "kl/mean" else max  # for KL, lower is the notable extreme
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
    total = sum(series(metrics, "perf/step_seconds")[1])
    n = len(metrics)
    parts = ", ".join(
        f"{time_label(key)} {sum(v) / len(v):.2f} s"
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
