"""Does a refactor change what a run does? A seeded 3-step tiny run, before and after, compared.

    python bench/same_behaviour.py --before REV [--after REV] [--steps 3]

Trains the same tiny random model (built once, by the before tree) for `--steps` steps with the
teacher off and a fixed torch thread count (so float sums are the same every time) in two trees: a
clean export of git revision `--before`, and `--after` (a revision, or by default this working
tree). Then compares the runs' metrics.csv and samples.jsonl, leaving out only what the clock
decides (durations, throughput, jobs in flight, rustc cache hits). Exit 0 when they are identical,
1 with the first differences otherwise.

What it proves: the same samples, rewards, advantages, losses and KL, step by step. What it does
not: paths the tiny run does not take (a teacher, LoRA, CUDA); the test suite covers those.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRET_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def varies(key: str) -> bool:
    """A field that the clock decides, so two identical runs may still differ in it."""
    timed = ("samples_per_s", "score_hidden_frac", "cached", "rust_cached_rate")
    return key.endswith("seconds") or "_in_flight_" in key or key in timed


def export(rev: str, into: Path) -> Path:
    """A clean copy of revision `rev` (committed files only)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def cli(tree: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env["PYTHONPATH"] = str(tree)  # this tree's rlaif, not the installed one
    done = subprocess.run(
        [sys.executable, "-m", "rlaif", *args], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        sys.exit(f"{tree}: python -m rlaif {' '.join(args)} failed ({done.returncode}):\n{output}")


def train(tree: Path, model: Path, out: Path, steps: int) -> Path:
    sets = {
        "student.model": model,
        "student.max_new_tokens": 24,
        "trainer.samples_per_prompt": 2,
        "trainer.max_steps": steps,
        "trainer.learning_rate": 0.001,  # large: a changed update shows in the next step's samples
        "teacher.provider": "none",
        "pipeline.torch_threads": 1,
        "checkpoint.every": 0,
        "cache.dir": out / "cache",
        "run.output_dir": out,
        "run.name": "run",
        "run.seed": 7,
        "logging.progress": "false",
    }
    args = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    cli(tree, "train", "--config", "config.yaml", *args)
    return out / "run"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if not varies(k)} for row in csv.DictReader(f)]


def sample_rows(path: Path) -> list[str]:
    rows = []
    for line in path.read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if not varies(k)}
        if isinstance(row.get("rust"), dict):
            row["rust"] = {k: v for k, v in row["rust"].items() if not varies(k)}
        rows.append(json.dumps(row, sort_keys=True))  # as text: NaN == NaN there
    return rows


def differences(before: Path, after: Path, limit: int = 10) -> list[str]:
    found = []
    a, b = csv_rows(before / "metrics.csv"), csv_rows(after / "metrics.csv")
    if [list(r) for r in a] != [list(r) for r in b]:
        found.append(f"metrics.csv columns: {list(a[0]) if a else []} vs {list(b[0]) if b else []}")
    for i, (ra, rb) in enumerate(zip(a, b, strict=False)):
        found += [
            f"metrics.csv row {i + 1} {k}: {ra[k]} vs {rb.get(k)}" for k in ra if ra[k] != rb.get(k)
        ]
    if len(a) != len(b):
        found.append(f"metrics.csv: {len(a)} rows vs {len(b)}")
    sa, sb = sample_rows(before / "samples.jsonl"), sample_rows(after / "samples.jsonl")
    if len(sa) != len(sb):
        found.append(f"samples.jsonl: {len(sa)} lines vs {len(sb)}")
    found += [
        f"samples.jsonl line {i + 1}: {x[:200]} ... vs {y[:200]} ..."
        for i, (x, y) in enumerate(zip(sa, sb, strict=False))
        if x != y
    ]
    return found[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--after", help="git revision (default: this working tree)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same-behaviour-") as tmp:
        tmp = Path(tmp)
        before_tree = export(args.before, tmp / "before-tree")
        after_tree = export(args.after, tmp / "after-tree") if args.after else REPO
        model = tmp / "tiny"
        cli(before_tree, "make-tiny-model", str(model), "--seed", "0")
        before = train(before_tree, model, tmp / "before", args.steps)
        after = train(after_tree, model, tmp / "after", args.steps)
        found = differences(before, after)
        rows = len(csv_rows(after / "metrics.csv"))
        samples = len(sample_rows(after / "samples.jsonl"))
    if found:
        print(f"DIFFERENT: {args.before} vs {args.after or 'the working tree'}")
        print("\n".join(found))
        return 1
    print(
        f"SAME: {args.before} vs {args.after or 'the working tree'}: {rows} metrics.csv rows and "
        f"{samples} samples.jsonl lines identical apart from timings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
