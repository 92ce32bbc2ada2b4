"""Resuming a run: which checkpoint, whether the config still fits it, and the run's logs trimmed.

`--resume` alone continues the run named by `run.name` under `run.output_dir`, or, when no name is
set, the run there whose newest checkpoint is the most recent. `--resume PATH` takes a run
directory (its newest checkpoint) or one checkpoint folder, `RUN/checkpoints/step_N`; checkpoints
newer than the one resumed from are deleted, since the run now goes another way from there.

The config of a resumed run is the checkpoint's own, plus any `--set` overrides (or an explicit
`--config FILE`). A change that alters what the run learns (the student, the learning rate, the
rewards, the trainer, the KL, the tasks, ...) is refused, naming every such key; changes in
`RESUMABLE` are allowed. Rows that the run logged after the checkpoint's step (a crash after
the last checkpoint) are dropped from metrics.csv, metrics.jsonl and samples.jsonl, so every step
appears once. This module loads no model: all of it runs before anything heavy.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif.config import Config, ConfigError
from rlaif.records.checkpoint import (
    CONFIG_FILE,
    RNG_FILE,
    STATE_FILE,
    TRAINER_FILE,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    tasks_fingerprint,
)
from rlaif.types import Task

# Keys (or whole sections, ending in ".") whose change does not alter what the run learns.
RESUMABLE = (
    "run.name",
    "run.output_dir",
    "run.max_blind_steps",
    "trainer.max_steps",
    "student.device",
    "teacher.api_key_env",
    "teacher.base_url",
    "teacher.required",
    "teacher.timeout_s",
    "teacher.concurrency",
    "teacher.requests_per_minute",
    "teacher.tokens_per_minute",
    "teacher.burst",
    "teacher.max_attempts",
    "teacher.backoff_initial_s",
    "teacher.backoff_max_s",
    "teacher.retry_after_max_s",
    "teacher.max_requests",
    "teacher.max_dollars",
    "teacher.on_budget",
    "rust.rustc",
    "rust.concurrency",
    "rust.sandbox",  # the machine's confinement, like the rustc path
    "data.eval",
    "logging.",
    "checkpoint.",
    "eval.",
    "pipeline.",
    "cache.",
)


@dataclass(frozen=True)
class ResumePoint:
    run_dir: Path
    checkpoint: Path  # a complete step_N folder
    step: int


def locate(target: str | None, config: Config | None) -> ResumePoint:
    """The checkpoint `--resume [target]` means (see the module docstring); `config` names the
    run when there is no target."""
    if target:
        path = Path(target)
        if (path / STATE_FILE).is_file():  # one checkpoint: RUN/checkpoints/step_N
            return _point(path.parent.parent, path)
        if not path.is_dir():
            raise CheckpointError(f"--resume {target}: no such run or checkpoint directory")
        return _point(path, _newest(path))
    assert config is not None, "--resume without a path needs the config's run.output_dir"
    root = Path(config.run.output_dir)
    if config.run.name:
        return _point(root / config.run.name, _newest(root / config.run.name))
    runs = [p for p in root.iterdir() if list_checkpoints(p)] if root.is_dir() else []
    if not runs:
        raise CheckpointError(f"--resume: no run under {root}/ has a checkpoint to resume from")
    newest = max(runs, key=lambda p: (latest_checkpoint(p) / STATE_FILE).stat().st_mtime)
    return _point(newest, _newest(newest))


def _newest(run_dir: Path) -> Path:
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise CheckpointError(
            f"--resume {run_dir}: it has no complete checkpoint under checkpoints/ "
            "(a run saves one every checkpoint.every steps and after its last step)"
        )
    return checkpoint


def _point(run_dir: Path, checkpoint: Path) -> ResumePoint:
    missing = [f for f in (TRAINER_FILE, RNG_FILE, CONFIG_FILE) if not (checkpoint / f).is_file()]
    if missing:
        raise CheckpointError(
            f"--resume {checkpoint}: it lacks {', '.join(missing)} (written by an older version "
            "that saved only the weights); evaluate it, or start a new run from it with "
            f"--set student.model={checkpoint}"
        )
    step = int(json.loads((checkpoint / STATE_FILE).read_text())["step"])
    return ResumePoint(run_dir=run_dir, checkpoint=checkpoint, step=step)


def config_changes(saved: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every key that differs, in config order."""
    old_flat, new_flat = _flatten(saved.to_dict()), _flatten(new.to_dict())
    keys = [*old_flat, *(k for k in new_flat if k not in old_flat)]
    missing = "<absent>"
    return [
        (k, old_flat.get(k, missing), new_flat.get(k, missing))
        for k in keys
        if old_flat.get(k, missing) != new_flat.get(k, missing)
    ]


def check_config(saved: Config, new: Config, where: Path) -> list[str]:
    """Raise ConfigError naming every change that alters training; return the allowed ones."""
    refused, allowed = [], []
    for key, old, value in config_changes(saved, new):
        resumable = any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)
        (allowed if resumable else refused).append(f"{key}: {old!r} -> {value!r}")
        if key == "trainer.max_steps" and new.trainer.lr_schedule == "cosine":
            # Allowed (extending a run is common), but the decay now spans the new length.
            allowed[-1] += " (the cosine learning-rate decay now spans the new max_steps)"
    if refused:
        raise ConfigError(
            "\n".join(
                [
                    f"cannot resume from {where}: these changes alter the training "
                    f"(the checkpoint's config is {where / 'config.yaml'}):",
                    *("  " + line for line in refused),
                    "Start a new run for them, or resume without them (allowed changes: "
                    + ", ".join(r.rstrip(".") for r in RESUMABLE)
                    + ").",
                ]
            )
        )
    return allowed


def check_tasks(checkpoint: Path, tasks: list[Task], train_file: str) -> None:
    """Refuse a resume whose training tasks differ from the checkpoint's (its data cursor)."""
    saved = json.loads((checkpoint / STATE_FILE).read_text()).get("tasks_fingerprint")
    if saved is not None and saved != tasks_fingerprint(tasks):
        raise ConfigError(
            f"cannot resume from {checkpoint}: the training tasks in {train_file} changed since "
            "the checkpoint (its place in the task order would mean other tasks)"
        )


def _flatten(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, keys in sections.items() for k, v in keys.items()}


def trim_logs(run_dir: Path, step: int) -> dict[str, int]:
    """Drop the rows logged after `step` from the run's logs; returns rows dropped per file.

    A line cut short by a kill (no valid JSON) is dropped too.
    """
    dropped = {}
    # `iteration` is not namespaced (metrics.metric_name): the same key in old and new rows.
    for name, key in (("metrics.jsonl", "iteration"), ("samples.jsonl", "step")):
        path = run_dir / name
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if _json_field(line, key) <= step]
            dropped[name] = len(lines) - len(kept)
            _rewrite(path, "".join(kept))
    path = run_dir / "metrics.csv"
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if _csv_iteration(r) <= step]
        dropped["metrics.csv"] = len(rows) - len(kept)
        with open(path.with_name(path.name + ".tmp"), "w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(path.with_name(path.name + ".tmp"), path)
    return dropped


def _json_field(line: str, key: str) -> float:
    try:
        return float(json.loads(line)[key])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # unreadable: dropped


def _csv_iteration(row: list[str]) -> float:
    try:
        return float(row[0])  # `iteration` is the first column (metrics.LEADING_COLUMNS)
    except (ValueError, IndexError):
        return float("inf")


def _rewrite(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a kill mid-write leaves the old file, never half of the new one
