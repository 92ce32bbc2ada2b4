"""Two training processes under `accelerate launch`, as a user starts them on one machine.

On a CPU-only machine accelerate starts several processes only through its torch.distributed
launcher (`--multi_gpu`, which falls back to gloo on CPU); `--cpu --num_processes 2` starts one
process unless MPI is set up. Kept small: two torch processes share the test machine's cores.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections import defaultdict

from tests.conftest import REPO, SECRET_VARS

TINY = ("trainer.tasks_per_step=2", "trainer.samples_per_prompt=2", "student.max_new_tokens=8")


def args(model, out, steps: int) -> list[str]:
    sets = [
        f"student.model={model}",
        f"run.output_dir={out}",
        f"trainer.max_steps={steps}",
        "teacher.provider=none",
        "logging.progress=false",
        *TINY,
    ]
    return [a for s in sets for a in ("--set", s)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_two_processes_split_tasks_by_group_and_write_once(tiny_model_dir, tmp_path):
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "rlaif",
    ]
    # run.name is left null: each process would pick its own timestamp; they must agree.
    multi = run([*launch, *args(tiny_model_dir, tmp_path / "multi", steps=2)])
    assert multi.returncode == 0, multi.stderr[-3000:]
    single = run([sys.executable, "-m", "rlaif", *args(tiny_model_dir, tmp_path / "one", 1)])
    assert single.returncode == 0, single.stderr[-3000:]

    (run_dir,) = (tmp_path / "multi").iterdir()  # one run directory, made by the main process
    (single_dir,) = (tmp_path / "one").iterdir()
    rows = read_csv(run_dir / "metrics.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]  # each step written once
    assert list(rows[0]) == list(read_csv(single_dir / "metrics.csv")[0])
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert (run_dir / "checkpoints" / "step_2" / "config.json").exists()
    assert "processes: 2" in multi.stdout and multi.stdout.count("done: 2 steps") == 1

    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 2 * 2  # steps x tasks x samples: all processes' samples, once
    by_task = defaultdict(set)
    for s in samples:
        by_task[(s["step"], s["task_id"])].add(s["process"])
    assert all(len(p) == 1 for p in by_task.values()), by_task  # a group is never split
    for step in (1, 2):
        assert {next(iter(p)) for (st, _), p in by_task.items() if st == step} == {0, 1}
    # The main process wrote the other process's rewards and advantages: they were gathered,
    # and each group was whitened as a whole (std mode: a group's advantages sum to 0).
    assert all(isinstance(s["reward"], float) for s in samples if s["process"] == 1)
    for step, task in by_task:
        group = [s["advantage"] for s in samples if (s["step"], s["task_id"]) == (step, task)]
        assert len(group) == 2 and abs(sum(group)) < 1e-6
    for row in rows:  # statistics reduced over both processes' samples, not one share
        tokens = float(row["completion_tokens_mean"]) * 4
        assert float(row["completion_tokens"]) == tokens
