"""The pipeline: seconds per step with and without overlap, and against TRL's GRPOTrainer.

A fixed workload, so that runs differ only in what is measured:
- the student: a tiny random Llama (`rlaif.tiny`, `--hidden` wide, `--layers` deep), built
  offline, fp32 on the CPU;
- the tasks: the first `--tasks` tasks of data/train.jsonl, `--tasks-per-step` drawn each step
  (curriculum off: every task as often as the others), `--samples` completions each, at most
  `--max-new-tokens` tokens, one generate call per step;
- the judges: the real rustc (sandboxed jobs; `rust.concurrency` at its default, cores - 1) and a
  teacher that is the loopback server of tests/teacher_server.py, which answers every request
  after `--latency-ms` plus or minus `--jitter-ms` (seeded), `--teacher-concurrency` requests
  at once, no rate limit. Every sample with code goes to the teacher (`teacher.only_compiled:
  false`: the tiny model's Rust never compiles) and both result caches are off, so every step
  really compiles and really waits for the teacher.

`python -m rlaif train` runs the workload twice, with `pipeline.max_staleness` 0 (generate,
score, update, one after the other) and 1 (step k+1 is generated, and step k-1's update runs,
while step k is scored), and each run's metrics.jsonl gives the per-step stage times; the first
`--warmup` steps and the last are left out of the steady state. Then, unless `--skip-trl` is
given or trl is not installed (`pip install -e '.[bench]'`), TRL's GRPOTrainer runs the same
workload in its own process (bench/pipeline_trl.py): same model, tasks, sampling, samples per
step, learning rate and reward (rlaif's scorer: the same rustc jobs and teacher calls, through
TRL's async reward functions).

The checks printed at the end:
- overlap: with max_staleness 1 a steady step takes at most 1.15 x max(generation + update,
  scoring): scoring is hidden behind the work on the weights instead of being added to it.
  Generation + update are that run's own (the driver's work, with the threads it has there);
  scoring is a batch's in the max_staleness 0 run, where it runs alone (at 1, a batch is still
  being scored when the next one starts, so its first-request-to-last-verdict span also holds
  some of the next batch's judging);
- speedup: max_staleness 1 takes at least 1.5x less time per step than 0. Overlap can win at
  most 2x, and only when scoring takes about as long as generation plus the update, so the
  check is meant for a balanced workload. Printed with it: the balance, scoring (alone) over
  generation + update at max_staleness 1, and when it is off a --teacher-concurrency or
  --latency-ms that would bring it near 1; and the most that perfect overlap could win with
  the measured stage times, (generation + update + scoring, all at 0) / max(generation + update
  at 1, scoring). At 1, generation and the update run beside the rustc jobs with the cores
  rustc leaves them (`pipeline.torch_threads`, `--torch-threads`), so on a small machine they
  take longer than alone and that bound falls below 2x;
- TRL: its seconds per step over rlaif's (max_staleness 1), at equal samples per step.

    python bench/pipeline.py            # 10 steps per run, 2 of them warm-up
    python bench/pipeline.py --quick    # a smoke run of the whole script: small and short
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's rlaif, and the test server
from teacher_server import TeacherServer  # noqa: E402

from rlaif import config as config_module  # noqa: E402

KEY_ENV = "RLAIF_BENCH_KEY"  # the loopback teacher takes any key; this names where it is
OVERLAP_SLACK = 1.15
MIN_SPEEDUP = 1.5
BALANCED = (0.8, 1.25)  # scoring / (generation + update) counted as "about as long"


@dataclass(frozen=True)
class Workload:
    steps: int = 10
    warmup: int = 2
    tasks: int = 8
    tasks_per_step: int = 4
    samples: int = 4
    max_new_tokens: int = 128
    hidden: int = 256
    layers: int = 3
    latency_ms: float = 300.0
    jitter_ms: float = 100.0
    teacher_concurrency: int = 1
    torch_threads: int = 0  # pipeline.torch_threads: beside scoring; 0: cores - rustc jobs

    @property
    def samples_per_step(self) -> int:
        return self.tasks_per_step * self.samples


# --quick: the whole script in a few minutes; flags given beside it still win. The teacher
# answers 4 at once so that scoring stays near the small model's generation + update.
QUICK = Workload(
    steps=4,
    warmup=1,
    tasks=4,
    tasks_per_step=2,
    samples=4,
    max_new_tokens=48,
    hidden=128,
    teacher_concurrency=4,
)


@dataclass(frozen=True)
class Stages:
    """Steady-state means of one run, per step."""

    step: float
    gen: float | None = None
    score: float | None = None
    train: float | None = None
    wait: float | None = None
    hidden: float | None = None  # share of scoring that ran while the driver did other work
    samples_per_s: float | None = None
    teacher_calls: float | None = None  # requests the server received, per step of the run


def parse_args(argv: list[str] | None = None) -> tuple[Workload, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in fields(Workload):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, type=type(f.default), help=f"default {f.default}")
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke run")
    parser.add_argument("--skip-trl", action="store_true", help="rlaif only, not TRL")
    parser.add_argument(
        "--work", type=Path, help="keep model, config, logs and runs here (earlier runs replaced)"
    )
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(Workload)}
    workload = replace(
        QUICK if args.quick else Workload(), **{k: v for k, v in given.items() if v is not None}
    )
    if workload.steps < workload.warmup + 2:
        parser.error("--steps must be at least --warmup + 2 (the last step is not timed)")
    if workload.tasks_per_step > workload.tasks:
        parser.error("--tasks-per-step cannot exceed --tasks")
    return workload, args


# --- the workload ---------------------------------------------------------------------------


def write_tasks(n: int, path: Path) -> Path:
    """The first n tasks of data/train.jsonl, in file order."""
    lines = [line for line in (REPO / "data/train.jsonl").read_text().splitlines() if line.strip()]
    path.write_text("\n".join(lines[:n]) + "\n")
    return path


def write_config(w: Workload, work: Path, model: Path, tasks: Path, teacher_url: str) -> Path:
    """config.yaml with the workload's settings on top; returns the resolved config's path."""
    settings = {
        "student.model": model,
        "student.max_new_tokens": w.max_new_tokens,
        "student.generate_batch_size": w.samples_per_step,  # a step in one generate call
        "teacher.provider": "openai-compatible",
        "teacher.model": "bench-judge",
        "teacher.api_key_env": KEY_ENV,
        "teacher.base_url": teacher_url,
        "teacher.concurrency": w.teacher_concurrency,
        "teacher.requests_per_minute": 0,
        "teacher.tokens_per_minute": 0,
        "teacher.max_attempts": 1,  # the server never fails; a retry would hide a problem
        "teacher.only_compiled": False,
        "pipeline.torch_threads": w.torch_threads,
        "trainer.max_steps": w.steps,
        "trainer.tasks_per_step": w.tasks_per_step,
        "trainer.samples_per_prompt": w.samples,
        "trainer.lr_schedule": "constant",
        "curriculum.enabled": False,
        "data.train": tasks,
        "cache.dir": work / "cache",
        "cache.rust": False,
        "cache.teacher": False,
        "checkpoint.every": 0,  # only after the last step, outside the timed steps
        "checkpoint.keep": 1,
        "logging.progress": False,
        "logging.samples": False,
        "run.output_dir": work / "runs",
    }
    overrides = [f"{key}={value}" for key, value in settings.items()]
    config = config_module.load(REPO / "config.yaml", overrides)
    path = work / "bench.yaml"
    config_module.save(config, path)
    return path


def prepare(w: Workload, work: Path, teacher_url: str) -> Path:
    """Model, tasks and config under `work`; returns the config's path. Runs left there by an
    earlier benchmark are removed (a run name is never reused)."""
    from rlaif.tiny import make_tiny_model

    for old in ("runs", "trl"):
        shutil.rmtree(work / old, ignore_errors=True)
    model = make_tiny_model(work / "model", hidden_size=w.hidden, layers=w.layers)
    tasks = write_tasks(w.tasks, work / "tasks.jsonl")
    return write_config(w, work, model, tasks, teacher_url)


def bench_env() -> dict[str, str]:
    return {**os.environ, KEY_ENV: "bench", "PYTHONPATH": str(REPO)}


# --- the runs -------------------------------------------------------------------------------


def run_rlaif(config: Path, staleness: int, work: Path) -> list[dict]:
    """`python -m rlaif train` at this staleness; its metrics rows."""
    name = f"staleness-{staleness}"
    log = work / f"{name}.log"
    command = [sys.executable, "-m", "rlaif", "train", "--config", str(config)]
    command += ["--set", f"pipeline.max_staleness={staleness}", "--set", f"run.name={name}"]
    with log.open("w") as out:
        done = subprocess.run(command, cwd=REPO, env=bench_env(), stdout=out, stderr=out)
    if done.returncode:
        sys.exit(f"{name} failed (exit {done.returncode}); the end of {log}:\n{_tail(log)}")
    metrics = work / "runs" / name / "metrics.jsonl"
    return [json.loads(line) for line in metrics.read_text().splitlines()]


def run_trl(config: Path, w: Workload, work: Path) -> dict:
    """bench/pipeline_trl.py in its own process; its JSON result."""
    log = work / "trl.log"
    command = [sys.executable, str(REPO / "bench/pipeline_trl.py"), "--config", str(config)]
    command += ["--warmup", str(w.warmup), "--output-dir", str(work / "trl")]
    with log.open("w") as out:
        done = subprocess.run(command, cwd=REPO, env=bench_env(), stdout=out, stderr=out)
    result = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if done.returncode or not result:
        sys.exit(f"TRL failed (exit {done.returncode}); the end of {log}:\n{_tail(log)}")
    return json.loads(result[-1])


def engine_line(log: Path) -> str:
    """What rlaif said about the student, rustc jobs and torch threads."""
    said = [line for line in log.read_text().splitlines() if line.startswith("student:")]
    return said[0] if said else f"(no 'student:' line in {log})"


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:])


def steady(rows: list[dict], warmup: int, staleness: int) -> Stages:
    """Means over the steps after the warm-up but the last: at staleness 1 the last step has no
    next batch to generate, so it is not a steady step.

    A row's gen_seconds is its own batch's, generated `staleness` steps earlier; the generation
    done during a step is that of the row `staleness` steps later, so gen is read from there:
    then gen + update is the driver's work in the steps whose time is measured.
    """
    kept = [r for r in rows if warmup < r["iteration"] <= len(rows) - max(1, staleness)]
    ahead = [rows[r["iteration"] - 1 + staleness] for r in kept]  # iteration n is rows[n - 1]

    def mean(key: str, among: list[dict] = kept) -> float | None:
        values = [r[key] for r in among if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    return Stages(
        step=mean("step_seconds") or 0.0,
        gen=mean("gen_seconds", ahead),
        score=mean("score_seconds"),
        train=mean("train_seconds"),
        wait=mean("score_wait_seconds"),
        hidden=mean("score_hidden_frac"),
        samples_per_s=mean("samples_per_s"),
    )


def trl_stages(result: dict, samples_per_step: int) -> Stages:
    """TRL scores in line: its reward time is all waited for, none of it hidden. Its update is
    the rest of the step (log-prob passes, backward, optimizer, and TRL's own bookkeeping)."""
    step, gen, score = result["step_seconds"], result["gen_seconds"], result["score_seconds"]
    return Stages(
        step=step,
        gen=gen,
        score=score,
        train=step - gen - score,
        wait=score,
        hidden=0.0,
        samples_per_s=samples_per_step / step,
    )


# --- the report -----------------------------------------------------------------------------


def print_table(runs: list[tuple[str, Stages]]) -> None:
    def cell(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    head = ("mode", "s/step", "gen", "score", "update", "wait", "hidden", "samples/s", "teacher")
    print(" | ".join(f"{h:>9}" if i else f"{h:<17}" for i, h in enumerate(head)))
    for name, s in runs:
        cells = [
            cell(s.step),
            cell(s.gen),
            cell(s.score),
            cell(s.train),
            cell(s.wait),
            cell(s.hidden, ".0%"),
            cell(s.samples_per_s),
            cell(s.teacher_calls, ".1f"),
        ]
        print(" | ".join([f"{name:<17}", *(f"{c:>9}" for c in cells)]))
    print(
        "(seconds per step, means over the steady steps; score = a batch's first request to its "
        "last verdict; update = log-prob passes, backward and optimizer step; wait = the driver "
        "waiting on scoring; hidden = the share of scoring that ran beside other work; teacher = "
        "requests per step)"
    )


def overlap_check(sync: Stages, pipelined: Stages) -> tuple[bool, str]:
    """The driver's own work comes from the staleness-1 run; a batch's scoring from the
    staleness-0 run, where it runs alone (at staleness 1 two batches can be scored at once and
    share the judges, so a batch's first-request-to-last-verdict span there is longer than its
    share of the judges' time)."""
    work = pipelined.gen + pipelined.train
    bound = OVERLAP_SLACK * max(work, sync.score)
    ok = pipelined.step <= bound
    return ok, (
        f"overlap: staleness 1 step {pipelined.step:.2f} s <= {OVERLAP_SLACK} x max(gen + update "
        f"{work:.2f}, score {sync.score:.2f}) = {bound:.2f} s (gen + update of the staleness-1 "
        "run, score of the staleness-0 run)"
    )


def rebalance(balance: float, teacher_concurrency: int, latency_ms: float) -> str:
    """What would bring scoring near generation + update. Scoring is mostly teacher time, which
    goes about as latency / concurrency (the rustc jobs set a floor)."""
    concurrency = round(teacher_concurrency * balance)
    if concurrency >= 1 and concurrency != teacher_concurrency:
        return f"try --teacher-concurrency {concurrency}"
    return f"try --latency-ms {round(latency_ms / balance, -1):g} at this concurrency"


def speedup_check(sync: Stages, pipelined: Stages, w: Workload) -> tuple[bool, str]:
    """Balance is scoring (alone, at staleness 0) over the driver's work at staleness 1, where
    generation and the update may have fewer threads than alone: the speedup is largest when
    the two are equal. `allowed` is what perfect overlap would give with these stage times."""
    speedup = sync.step / pipelined.step
    work_alone, work_beside = sync.gen + sync.train, pipelined.gen + pipelined.train
    balance = sync.score / work_beside
    allowed = (work_alone + sync.score) / max(work_beside, sync.score)
    line = (
        f"speedup: staleness 0 step {sync.step:.2f} s / staleness 1 step {pipelined.step:.2f} s "
        f"= {speedup:.2f}x >= {MIN_SPEEDUP}x; these stage times allow at most {allowed:.2f}x "
        f"((gen + update {work_alone:.2f} at staleness 0 + score {sync.score:.2f}) / "
        f"max(gen + update {work_beside:.2f} at staleness 1, score)); balance score / (gen + "
        f"update at staleness 1) = {balance:.2f}"
    )
    if not BALANCED[0] <= balance <= BALANCED[1]:
        line += f" (not balanced: {rebalance(balance, w.teacher_concurrency, w.latency_ms)})"
    return speedup >= MIN_SPEEDUP, line


def print_checks(sync: Stages, pipelined: Stages, trl: Stages | None, w: Workload) -> bool:
    results = [overlap_check(sync, pipelined), speedup_check(sync, pipelined, w)]
    for ok, line in results:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    if trl is not None:
        print(
            f"TRL GRPOTrainer / rlaif (staleness 1), seconds per step at {w.samples_per_step} "
            f"samples per step: {trl.step:.2f} / {pipelined.step:.2f} = "
            f"{trl.step / pipelined.step:.2f}x"
        )
    return all(ok for ok, _ in results)


def describe(w: Workload) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.node()} ({platform.machine()}, {cores} cores, load average "
        f"{load:.1f}), python {platform.python_version()}"
    )
    print("workload: " + ", ".join(f"{k}={v}" for k, v in asdict(w).items()))
    if load > 0.5 * cores:
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores): timings are noisy")


def main(argv: list[str] | None = None) -> int:
    w, args = parse_args(argv)
    describe(w)
    with_trl = not args.skip_trl and importlib.util.find_spec("trl") is not None
    if not args.skip_trl and not with_trl:
        print("trl is not installed (pip install -e '.[bench]'): the TRL comparison is skipped")
    with (
        tempfile.TemporaryDirectory(prefix="rlaif-bench-") as temp,
        TeacherServer(
            latency_s=w.latency_ms / 1000, jitter_s=w.jitter_ms / 1000, jitter_seed=0
        ) as server,
    ):
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        config = prepare(w, work, server.openai_url)
        runs = {}
        for staleness in (0, 1):
            print(f"running rlaif, max_staleness {staleness} ...", flush=True)
            server.reset()  # each run meets the same sequence of delays
            stages = steady(run_rlaif(config, staleness, work), w.warmup, staleness)
            runs[staleness] = replace(stages, teacher_calls=len(server.requests) / w.steps)
        print(engine_line(work / "staleness-0.log"))
        trl = None
        if with_trl:
            print("running TRL GRPOTrainer ...", flush=True)
            server.reset()
            result = run_trl(config, w, work)
            trl = trl_stages(result, w.samples_per_step)
            trl = replace(trl, teacher_calls=len(server.requests) / w.steps)
            for note in result.get("differences", []):
                print(f"  TRL differs: {note}")
    table = [("rlaif staleness 0", runs[0]), ("rlaif staleness 1", runs[1])]
    print_table(table + ([("TRL GRPOTrainer", trl)] if trl is not None else []))
    return 0 if print_checks(runs[0], runs[1], trl, w) else 1


if __name__ == "__main__":
    sys.exit(main())
