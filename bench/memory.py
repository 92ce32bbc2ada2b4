"""How much memory a training process holds, step by step, and how much of it is live.

    python bench/memory.py [--steps 4] [--rev REV] [--env KEY=VALUE ...] [--set KEY=VALUE ...]

Trains configs/learn.yaml (Qwen2.5-Coder-0.5B, full fine-tuning, teacher off) for `--steps` steps
and samples the training process every 2 s (`bench/memory_site/sitecustomize.py`): its resident
memory, and what glibc's allocator holds in its arenas, live and free. Prints, per step, the
resident memory as it began (what the run holds between steps) and its peak, the peak of live
memory, and the most the arenas held free. `--rev REV` runs a clean export of a git revision
instead of this tree (a before/after); `--env` sets the training process's environment (e.g.
`MALLOC_ARENA_MAX=2`). The run, the samples (`memory.log`) and the table (`table.md`) stay in
`--out/--name` (default runs/memory-bench/run). Linux with glibc only (it reads /proc and calls
mallinfo2).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.same_behaviour import SECRET_VARS, export  # noqa: E402

GIB = 2**30


def train(tree: Path, out: Path, steps: int, env: dict[str, str], sets: list[str]) -> Path:
    """Run the training in `tree` with the sampler loaded; returns the sample log."""
    out.mkdir(parents=True, exist_ok=True)  # the sampler opens its log as the interpreter starts
    log = out / "memory.log"
    child_env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    child_env.update(env)
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "bench" / "memory_site"), str(tree)])
    child_env["RLAIF_MEMORY_LOG"] = str(log)
    child_env["RLAIF_MEMORY_ROWS"] = str(out / "run" / "metrics.csv")
    settings = {
        "teacher.provider": "none",
        "trainer.max_steps": steps,
        "checkpoint.every": 0,
        "run.output_dir": out,
        "cache.dir": out / "cache",  # a cold rustc cache in both trees
        "run.name": "run",
        "logging.progress": "false",
    }
    args = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    args += [a for value in sets for a in ("--set", value)]
    command = [sys.executable, "-m", "rlaif", "train", "--config", "configs/learn.yaml", *args]
    started = time.time()
    done = subprocess.run(command, cwd=tree, env=child_env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"training failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"trained {steps} steps in {time.time() - started:.0f} s")
    return log


def summary(log: Path, run: Path) -> list[str]:
    """A Markdown table: per step, resident memory (as the step began, just after the previous
    update: what the run holds between steps; and its peak) and the allocator's live and free
    memory, over the samples taken while it ran (a step's generation may run during the step
    before, with `pipeline.max_staleness` 1)."""
    samples = [line.split() for line in log.read_text().splitlines()[1:]]
    samples = [(int(s[0]), *(int(x) / GIB for x in s[1:])) for s in samples]
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [
        "| step | s/step | RSS GiB: at its start | peak | allocator: peak live | most free |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k, row in enumerate(rows):
        during = [s for s in samples if s[0] == k]
        if not during:
            continue
        start = "-" if k == 0 else f"{during[0][1]:.2f}"  # step 1 starts with loading
        lines.append(
            f"| {row['iteration']} | {float(row['step_seconds']):.0f} | {start} | "
            f"{max(s[1] for s in during):.2f} | {max(s[4] for s in during):.2f} | "
            f"{max(s[5] for s in during):.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rev", help="a git revision to export and run instead of this tree")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--out", type=Path, default=REPO / "runs" / "memory-bench", help="where the runs go"
    )
    parser.add_argument("--name", default="run", help="this run's folder under --out")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    out = args.out / args.name
    if out.exists():
        sys.exit(f"{out} exists: choose another --name, or remove it")
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        tree = REPO
        if args.rev:
            tree = export(args.rev, Path(tmp) / "tree")
            (tree / "models").symlink_to(REPO / "models")  # built students are not in git
        log = train(tree, out, args.steps, env, args.set)
    # The final checkpoint (about 6 GB with AdamW's moments) is not what is measured.
    shutil.rmtree(out / "run" / "checkpoints", ignore_errors=True)
    table = summary(log, out / "run")
    (out / "table.md").write_text("\n".join(table) + "\n")
    print(f"{args.rev or 'this tree'}; env: {env or 'unchanged'}; log: {log}")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
