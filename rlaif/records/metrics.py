"""What a run writes as it goes: metrics.csv, metrics.jsonl, samples.jsonl, and a progress line.

metrics.csv starts with the seed's columns (iteration, avg_reward, reward_std,
compile_success_rate, parse_success_rate, policy_loss, kl, grad_norm), so tools that read the seed's
`rl_training.log` read ours; the rest follow, under the flat names the loop gives them.
metrics.jsonl carries the same rows, and TensorBoard the same scalars, under namespaced names
that dashboards group (`metric_name`; `iteration` stays as it is, first):

- `reward/`: the reward's mean and std (`reward/mean`, `reward/std`), and any `reward_*` term.
- `rust/`: parse, compile and test rates (`rust/compile_rate`, `rust/parse_rate`,
  `rust/test_pass_rate`, ...), clippy lints, and the rustc jobs' errors, timeouts and cache hits.
- `teacher/`: the teacher's scores, abstentions, requests, tokens, spend and server threads.
- `kl/`: the KL to the reference (`kl/mean`, `kl/max`), its coefficient (`kl/beta`), any target.
- `perf/`: every `*_seconds`, throughput (`perf/samples_per_s`), torch threads, the jobs and calls
  in flight, staleness, and the share of scoring hidden behind other work.
- `curriculum/`: the curriculum's stage, per-bucket shares, successes and sizes, replacements.
- `eval/`: the periodic evaluation's rates and pass@k (`eval/pass@1`; its time is
  `perf/eval_seconds`).
- `train/`: the rest: the update's losses, grad norm, lr, entropy, clip and ratio statistics.

A run resumed from one written before the names were namespaced has flat keys in its older rows:
readers take either (`namespaced` maps a row to the namespaced names). Every file is flushed after
each step, so a crash loses at most the step in flight. The JSON files are strict JSON: a NaN (an
abstention, an empty mean) is written as null (`strict_json`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rlaif import strict_json
from rlaif.types import RustResult, Scored

SEED_COLUMNS = (
    "iteration",
    "avg_reward",
    "reward_std",
    "compile_success_rate",
    "parse_success_rate",
    "policy_loss",
    "kl",
    "grad_norm",
)
# Then these, in this order; any other key of the row follows them.
LEADING_COLUMNS = (
    *SEED_COLUMNS,
    "test_pass_rate",
    "kl_coef",
    "gen_seconds",
    "score_seconds",
    "train_seconds",
    "step_seconds",
)

NAMESPACES = ("reward", "rust", "teacher", "kl", "perf", "curriculum", "eval", "train")
# The exceptions to the rules in `metric_name`: flat names that read better renamed in their
# namespace (the seed's), or that no prefix or suffix places.
RENAMED = {
    "avg_reward": "reward/mean",
    "reward_std": "reward/std",
    "compile_success_rate": "rust/compile_rate",
    "parse_success_rate": "rust/parse_rate",
    "test_pass_rate": "rust/test_pass_rate",
    "all_tests_pass_rate": "rust/all_tests_pass_rate",
    "code_found_rate": "rust/code_found_rate",
    "placeholder_rate": "rust/placeholder_rate",
    "clippy_lints_mean": "rust/clippy_lints_mean",
    "kl": "kl/mean",
    "kl_coef": "kl/beta",
    "score_hidden_frac": "perf/score_hidden_frac",
}
# Kept whole under perf/: timings, throughput, torch threads, gauges of work in flight.
PERF_SUFFIXES = ("_seconds", "_per_s", "_threads_mean", "_in_flight_mean", "_in_flight_max")
# Namespace by prefix, the prefix dropped: teacher_requests -> teacher/requests.
PREFIXES = {
    "reward_": "reward",
    "rust_": "rust",
    "teacher_": "teacher",
    "kl_": "kl",
    "curriculum_": "curriculum",
    "eval_": "eval",
}


def metric_name(key: str) -> str:
    """The namespaced name of a flat row key, for metrics.jsonl and TensorBoard (the module
    docstring lists the namespaces). `iteration` and names already namespaced stay as they are,
    so old and new rows read alike."""
    if key == "iteration" or "/" in key:
        return key
    if key in RENAMED:
        return RENAMED[key]
    if key.endswith(PERF_SUFFIXES) or key.startswith("staleness_"):
        return f"perf/{key}"  # before the prefixes: eval_seconds, teacher_calls_in_flight_max
    for prefix, namespace in PREFIXES.items():
        if key.startswith(prefix):
            return f"{namespace}/{key.removeprefix(prefix)}"
    return f"train/{key}"


def namespaced(row: dict) -> dict:
    """A metrics.jsonl row under the namespaced names, whichever names it was written with."""
    return {metric_name(key): value for key, value in row.items()}


def score_metrics(scored: list[Scored]) -> dict[str, float]:
    """Batch statistics of the judges' results (NaN rewards left out of the means)."""
    rewards = [s.reward for s in scored if not math.isnan(s.reward)]
    with_tests = [s.rust for s in scored if s.rust.tests_total]
    # Samples the teacher never saw (off, or not sent because they did not compile) are not its
    # abstentions.
    judged = [s.judgement for s in scored if s.judgement.asked]
    teacher_scores = [j.score for j in judged if not math.isnan(j.score)]
    n = len(scored)
    return {
        "avg_reward": _mean(rewards),
        "reward_std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "compile_success_rate": sum(s.compiles for s in scored) / n,
        "parse_success_rate": sum(s.rust.parsed for s in scored) / n,
        "test_pass_rate": (
            sum(r.tests_passed for r in with_tests) / sum(r.tests_total for r in with_tests)
            if with_tests
            else 0.0
        ),
        "all_tests_pass_rate": sum(s.rust.all_tests_passed for s in scored) / n,
        "code_found_rate": sum(bool(s.sample.code) for s in scored) / n,
        "finished_rate": sum(s.sample.finished for s in scored) / n,
        "completion_tokens_mean": _mean([len(s.sample.completion_ids) for s in scored]),
        "rust_errors_mean": _mean([s.rust.errors for s in scored]),
        # Every timeout; those of rustc itself also count as sandbox errors (no verdict, NaN
        # rust terms), while a test binary's (an endless loop) is a failed test.
        "rust_timeouts": sum(s.rust.timed_out for s in scored),
        "rust_compile_timeouts": sum(_compile_timeout(s.rust) for s in scored),
        "rust_sandbox_errors": sum(s.rust.sandbox_error is not None for s in scored),
        "rust_cached_rate": sum(s.rust.cached for s in scored) / n,
        "clippy_lints_mean": _mean([s.rust.clippy_lints for s in scored if s.rust.clippy_ran]),
        "teacher_score_mean": _mean(teacher_scores),
        "teacher_abstain_rate": (len(judged) - len(teacher_scores)) / len(judged)
        if judged
        else 0.0,
        # Samples scored as no code because the task's functions are placeholders (rewards.py).
        "placeholder_rate": sum(s.placeholder for s in scored) / n,
    }


def _compile_timeout(rust: RustResult) -> bool:
    """rustc ran out of time (check or test build): an abstention, not broken code."""
    return rust.timed_out and rust.sandbox_error is not None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


class RunLogger:
    """Appends one row per step to metrics.csv/.jsonl and every sample to samples.jsonl.

    `log_step` takes the row under its flat names: metrics.csv keeps them, metrics.jsonl and
    TensorBoard get the namespaced ones (`metric_name`).

    A resumed run appends to the files already there: the CSV keeps the header it has (a key
    that is not in it goes to metrics.jsonl only), and TensorBoard purges the events it had
    logged from the first step logged now on (a crash after the last checkpoint logged some).
    """

    def __init__(self, run_dir: Path, write_samples: bool, tensorboard: bool = False):
        self.run_dir = run_dir
        self.write_samples = write_samples
        self.tensorboard = tensorboard
        self._writer = None  # a SummaryWriter, made at the first row
        self._columns: list[str] | None = None
        csv_path, jsonl_path = run_dir / "metrics.csv", run_dir / "metrics.jsonl"
        if csv_path.exists():
            with csv_path.open(newline="") as f:
                self._columns = next(csv.reader(f), None)
        self.rows = len(jsonl_path.read_text().splitlines()) if jsonl_path.exists() else 0

    def log_step(self, row: dict[str, float]) -> None:
        path = self.run_dir / "metrics.csv"
        if self._columns is None:
            self._columns = [c for c in LEADING_COLUMNS if c in row]
            self._columns += [c for c in row if c not in LEADING_COLUMNS]
            if not path.exists():
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._columns)
        with path.open("a", newline="") as f:
            csv.writer(f).writerow([_cell(row.get(c)) for c in self._columns])
        ordered = {c: row.get(c) for c in self._columns}
        ordered.update((k, v) for k, v in row.items() if k not in ordered)
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(strict_json.dumps(namespaced(ordered)) + "\n")
        self.rows += 1
        if self.tensorboard:
            self._log_tensorboard(row)

    def _log_tensorboard(self, row: dict[str, float]) -> None:
        step = int(row["iteration"])
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step)
        for key, value in row.items():
            if (
                key != "iteration"
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                self._writer.add_scalar(tensorboard_tag(key), value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def log_samples(
        self,
        step: int,
        scored: list[Scored],
        advantages: list[float],
        processes: list[int] | None = None,
    ) -> None:
        """`processes`: which training process generated each sample (all 0 when None)."""
        if not self.write_samples:
            return
        processes = processes or [0] * len(scored)
        with (self.run_dir / "samples.jsonl").open("a") as f:
            for item, advantage, process in zip(scored, advantages, processes, strict=True):
                record = sample_record(step, item, advantage, process)
                f.write(strict_json.dumps(record) + "\n")


def tensorboard_tag(key: str) -> str:
    """A row key's TensorBoard tag: its namespaced name, whose namespace is the section."""
    return metric_name(key).replace("@", "_at_")  # TensorBoard tags allow only [-/\w.]


def sample_record(step: int, s: Scored, advantage: float, process: int = 0) -> dict:
    """One line of samples.jsonl: what the student saw and wrote, and every reward term."""
    rust, judgement = s.rust, s.judgement
    return {
        "step": step,
        "task_id": s.sample.task.id,
        "difficulty": s.sample.task.difficulty,
        "sample": s.sample.index,
        "process": process,
        "policy_version": s.sample.policy_version,
        "prompt": s.sample.task.prompt,
        "completion": s.sample.completion,
        "code": s.sample.code,
        "finished": s.sample.finished,
        "placeholder": s.placeholder,
        "reward": s.reward,
        "advantage": advantage,
        "components": s.components,
        # Every count and timing of the rustc job (tuples become JSON lists).
        "rust": {**dataclasses.asdict(rust), "seconds": round(rust.seconds, 4)},
        "ast": dataclasses.asdict(s.ast) if s.ast is not None else None,
        "teacher": {
            "score": judgement.score,
            "scores": judgement.scores,
            "reason": judgement.reason,
            "abstained": judgement.abstained,
        },
    }


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class TaskProgress:
    """Tasks done out of a total, for work that takes minutes (an evaluation): a rich bar with
    elapsed time and ETA on a terminal; elsewhere a plain line at every tenth of the way."""

    def __init__(self, label: str, total: int, enabled: bool, console: Console):
        self.console, self.label, self.total = console, label, total
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("tasks"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.task = self.progress.add_task(label, total=total)
        self.done = 0
        self._started = time.perf_counter()

    def __enter__(self) -> TaskProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def advance(self) -> None:
        """One more task done (called on the event loop, as each task's samples are scored)."""
        self.done += 1
        self.progress.update(self.task, advance=1)
        tenth = max(1, self.total // 10)
        if self.enabled and not self.live and (self.done % tenth == 0 or self.done == self.total):
            elapsed = time.perf_counter() - self._started
            self.console.print(f"{self.label}: {self.done}/{self.total} tasks ({elapsed:.0f}s)")


class StepProgress:
    """A rich progress bar with ETA on a terminal; a plain line per step elsewhere (CI, logs)."""

    def __init__(self, total: int, enabled: bool, console: Console, start: int = 0):
        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def advance(self, row: dict[str, float]) -> None:
        info = (
            f"reward {row['avg_reward']:.2f}  compile {row['compile_success_rate']:.0%}  "
            f"tests {row['test_pass_rate']:.0%}  kl {row['kl']:.4f}  "
            f"{row['step_seconds']:.1f}s/step"
        )
        self.progress.update(self.task, advance=1, info=info)
        if self.enabled and not self.live:
            self.console.print(f"step {row['iteration']}/{self.progress.tasks[0].total}  {info}")
