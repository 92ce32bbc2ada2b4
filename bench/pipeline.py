"""The pipeline: seconds per step with and without overlap, and against TRL's GRPOTrainer, on the
workload shapes users meet.

Each shape is one fixed workload run three times in one invocation, so that the runs differ only
in what is measured: `python -m rlaif train` with `pipeline.max_staleness` 0 (generate, score,
update, one after the other) and 1 (step k+1 is generated, and step k-1's update runs, while step
k is scored), then TRL's GRPOTrainer in its own process (bench/pipeline_trl.py: same model, tasks,
sampling, samples per step, learning rate, precision and reward, through TRL's async reward
functions), unless `--skip-trl` is given or trl is not installed (`pip install -e '.[bench]'`).

The shapes (`--shape`; `all` runs the three in turn):
- teacher (the default): teacher-bound scoring. The student is a tiny random Llama
  (`rlaif.student.tiny`, `--hidden` wide, `--layers` deep, fp32 weights); the tasks are the first
  `--tasks` of data/train.jsonl; the judges are the real rustc (`rust.concurrency` at its
  default, cores - 1) and a teacher that is the loopback server of tests/teacher_server.py, which
  answers every request after `--latency-ms` plus or minus `--jitter-ms` (seeded),
  `--teacher-concurrency` requests at once (2 here), no rate limit. The shape is meant to be
  balanced, scoring about as long as generation + update, since only then can overlap win its
  most; it was with one request at a time until the thread policy let generation and the update
  keep both cores beside the teacher's waits (twice as fast), which left the step bound by
  scoring alone (bench/RESULTS.md: 1.43x at most). `--teacher-concurrency 1` gives the older
  workload, for comparison with results before 2026-12-06. Every sample with code goes to the
  teacher (`teacher.only_compiled: false`).
  (`student.autocast` is left at auto: on a CPU with bf16 matrix hardware rlaif, and TRL with
  it, now compute in bf16, where results before it was added were plain fp32.)
- rustc: rustc-bound scoring. A smaller tiny student (64 wide, 2 layers), the teacher off, the
  `--tasks` tasks of data/train.jsonl with the most hidden tests, twice the tasks per step and
  16 new tokens, run at `rust.concurrency` 1 and at cores - 1 (once when those are equal, as on
  2 cores). Not covered: the tiny model's Rust never compiles, so each job is rustc's check and
  parse of noise (about 0.1 s, bench/RESULTS.md's "prose" job), never the test build and run:
  the tests never run. Scoring can outweigh generation + update here only by the number of
  samples, not by the cost of a real job (about 0.35 s for code that compiles and is tested),
  and whether it does depends on the machine: the balance line says. What the shape does
  measure is the contention that matters: rustc processes running one after another beside
  generation and the update, and the thread policy giving way to them. A student whose code
  compiles is the student shape's, which is generation-bound on a CPU.
- student: generation-bound. config.yaml's student as shipped (models/qwen2.5-coder-0.5b, built
  by `make student`), its sampling and its tasks and samples per step, the teacher off, 4 steps
  with 1 of warm-up: scoring takes under a second a step, generation most of a minute. TRL loads
  and runs the same model (slowly: `--skip-trl` when that is not wanted).

Common to all: curriculum off (every task as often as the others; both runs draw the same
tasks), a constant learning rate, both result caches off so every step really compiles and
really waits for the teacher, no checkpoint inside the timed steps. Each run's metrics.jsonl
gives the per-step stage times and the mean torch threads generation and the update used
(rollout.threads.ThreadPolicy gives torch the cores the rustc jobs running at that moment leave
free); the first `--warmup` steps and the last are left out of the steady state.

The report, per shape: the table; the bound that perfect overlap allows from max_staleness 0's
own stage times (a step of max(generation + update, scoring) instead of their sum) and how close
max_staleness 1 came (its step over the bound's step); the balance, scoring over generation +
update at max_staleness 0 (above 1: scoring-bound); the share of scoring hidden. Then the
checks, printed PASS or FAIL (the exit status is 1 when one fails; no test asserts them):
- teacher: max_staleness 1 at least 1.5x faster per step than 0 and at least 1.6x faster than
  TRL, and its step within 1.15x of the bound;
- rustc: max_staleness 1 not slower per step than 0;
- student: max_staleness 1 within 5% of 0 per step, or faster.

    python bench/pipeline.py                   # teacher: 10 steps per run, 2 of them warm-up
    python bench/pipeline.py --shape rustc     # 10 steps per run and rust concurrency
    python bench/pipeline.py --shape student   # 4 steps per run, minutes each
    python bench/pipeline.py --shape all       # the three, one after the other
    python bench/pipeline.py --quick           # a smoke run of the whole script: small and short
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's rlaif, and the test server
from teacher_server import TeacherServer  # noqa: E402

from rlaif import config as config_module  # noqa: E402
from rlaif.judges.rust.jobs import cpu_count  # noqa: E402
from rlaif.records.metrics import namespaced  # noqa: E402

KEY_ENV = "RLAIF_BENCH_KEY"  # the loopback teacher takes any key; this names where it is
MIN_SPEEDUP = 1.5  # teacher: staleness 0 over staleness 1, seconds per step
MIN_TRL_SPEEDUP = 1.6  # teacher: TRL over staleness 1
BOUND_SLACK = 1.15  # teacher: staleness 1's step over the bound's
NOT_SLOWER_SLACK = 1.05  # student: staleness 1's step over staleness 0's
BALANCED = (0.8, 1.25)  # scoring / (generation + update) counted as "about as long"
TEACHER_FIELDS = ("latency_ms", "jitter_ms", "teacher_concurrency")
TINY_FIELDS = ("hidden", "layers")


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
    torch_threads: int = 0  # pipeline.torch_threads: 0 follows the rustc jobs running

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
    gen_threads: float | None = None  # mean torch threads of generation's forward passes
    train_threads: float | None = None  # and of the update's micro-batches


@dataclass(frozen=True)
class Result:
    """One shape's three runs on the same workload."""

    sync: Stages  # max_staleness 0
    pipelined: Stages  # max_staleness 1
    trl: Stages | None  # None: not run


Check = tuple[bool | None, str]  # (passed, line); None: printed for information only


@dataclass(frozen=True)
class Shape:
    """A workload users meet: settings put on top of config.yaml by the same machinery."""

    name: str
    about: str
    workload: Workload  # its default flags
    quick: Workload  # --quick's
    checks: Callable[[Result, Workload], list[Check]]
    tiny: bool = True  # the tiny random student; False: config.yaml's student
    teacher: bool = False  # the loopback teacher judges too; False: teacher.provider none
    most_tests: bool = False  # the tasks with the most hidden tests, else the first ones
    rust_jobs: tuple[int, ...] = (0,)  # rust.concurrency, a sub-run each; 0: cores - 1


# --- the bound and the checks -----------------------------------------------------------------


def overlap_bound(sync: Stages) -> float:
    """Seconds per step that perfect overlap allows with max_staleness 0's own stage times:
    generation + update beside scoring instead of before it."""
    return max(sync.gen + sync.train, sync.score)


def bound_speedup(sync: Stages) -> float:
    """What perfect overlap would win: the stages one after the other over side by side."""
    return (sync.gen + sync.train + sync.score) / overlap_bound(sync)


def speedup_check(slower: str, slower_step: float, pipelined: Stages, least: float) -> Check:
    speedup = slower_step / pipelined.step
    return speedup >= least, (
        f"speedup: {slower} {slower_step:.2f} s / staleness 1 {pipelined.step:.2f} s per step "
        f"= {speedup:.2f}x >= {least}x"
    )


def bound_check(r: Result) -> Check:
    bound = overlap_bound(r.sync)
    return r.pipelined.step <= BOUND_SLACK * bound, (
        f"bound: staleness 1 step {r.pipelined.step:.2f} s <= {BOUND_SLACK} x the bound "
        f"{bound:.2f} s = {BOUND_SLACK * bound:.2f} s"
    )


def rebalance(balance: float, teacher_concurrency: int, latency_ms: float) -> str:
    """What would bring scoring near generation + update. Scoring is mostly teacher time, which
    goes about as latency / concurrency (the rustc jobs set a floor)."""
    concurrency = round(teacher_concurrency * balance)
    if concurrency >= 1 and concurrency != teacher_concurrency:
        return f"try --teacher-concurrency {concurrency}"
    return f"try --latency-ms {round(latency_ms / balance, -1):g} at this concurrency"


def teacher_checks(r: Result, w: Workload) -> list[Check]:
    """Overlap can win at most 2x, and only when scoring takes about as long as generation plus
    the update, so the speedup check is meant for a balanced workload: when it is off, what
    would bring it near 1 is printed."""
    checks = [speedup_check("staleness 0", r.sync.step, r.pipelined, MIN_SPEEDUP)]
    if r.trl is not None:
        checks.append(speedup_check("TRL GRPOTrainer", r.trl.step, r.pipelined, MIN_TRL_SPEEDUP))
    checks.append(bound_check(r))
    balance = r.sync.score / (r.sync.gen + r.sync.train)
    if not BALANCED[0] <= balance <= BALANCED[1]:
        hint = rebalance(balance, w.teacher_concurrency, w.latency_ms)
        checks.append((None, f"not balanced ({balance:.2f}): {hint}"))
    return checks


def not_slower_check(r: Result, slack: float) -> Check:
    s0, s1 = r.sync.step, r.pipelined.step
    times = "" if slack == 1 else f"{slack} x "
    return s1 <= slack * s0, (
        f"not slower: staleness 1 step {s1:.2f} s <= {times}staleness 0 step {s0:.2f} s"
    )


def rustc_checks(r: Result, w: Workload) -> list[Check]:
    return [not_slower_check(r, 1.0)]


def student_checks(r: Result, w: Workload) -> list[Check]:
    return [not_slower_check(r, NOT_SLOWER_SLACK)]


def shapes() -> dict[str, Shape]:
    """The shapes by name; the student shape's flags are config.yaml's."""
    shipped = config_module.load(REPO / "config.yaml")
    # A smaller student, more samples per step and short completions: noise's rustc jobs are
    # cheap (see the docstring), so scoring outweighs generation + update only this way.
    rustc = replace(Workload(), tasks_per_step=8, max_new_tokens=16, hidden=64, layers=2)
    student = replace(
        Workload(),
        steps=4,
        warmup=1,
        tasks_per_step=shipped.trainer.tasks_per_step,
        samples=shipped.trainer.samples_per_prompt,
        max_new_tokens=shipped.student.max_new_tokens,
    )
    return {
        "teacher": Shape(
            "teacher",
            "teacher-bound scoring",
            replace(Workload(), teacher_concurrency=2),  # balanced: see the docstring
            QUICK,
            teacher_checks,
            teacher=True,
        ),
        "rustc": Shape(
            "rustc",
            "rustc-bound scoring (the teacher off)",
            rustc,
            replace(QUICK, tasks_per_step=4, max_new_tokens=16, hidden=64, layers=2),
            rustc_checks,
            most_tests=True,
            rust_jobs=(1, 0),
        ),
        "student": Shape(
            "student",
            f"generation-bound: {shipped.student.model}, the teacher off",
            student,
            replace(student, steps=3, max_new_tokens=64),
            student_checks,
            tiny=False,
        ),
    }


# --- the workload ---------------------------------------------------------------------------


def parse_args(
    argv: list[str] | None = None,
) -> tuple[list[tuple[Shape, Workload]], bool, Path | None]:
    """The shapes to run, each with its workload; whether to skip TRL; where to work."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    known = shapes()
    parser.add_argument(
        "--shape", choices=[*known, "all"], default="teacher", help="the workload (default teacher)"
    )
    for f in fields(Workload):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(flag, type=type(f.default), help="every shape selected")
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke run")
    parser.add_argument("--skip-trl", action="store_true", help="rlaif only, not TRL")
    parser.add_argument(
        "--work", type=Path, help="keep models, configs, logs and runs here (earlier ones replaced)"
    )
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(Workload)}
    given = {k: v for k, v in given.items() if v is not None}
    chosen = list(known.values()) if args.shape == "all" else [known[args.shape]]
    runs = []
    for shape in chosen:
        w = replace(shape.quick if args.quick else shape.workload, **given)
        if w.steps < w.warmup + 2:
            parser.error("--steps must be at least --warmup + 2 (the last step is not timed)")
        if w.tasks_per_step > w.tasks:
            parser.error(f"{shape.name}: --tasks-per-step cannot exceed --tasks ({w.tasks})")
        runs.append((shape, w))
    return runs, args.skip_trl, args.work


def count_tests(task_line: str) -> int:
    """Hidden tests of one data/train.jsonl line."""
    return len(re.findall(r"#\[test\]", json.loads(task_line).get("tests", "")))


def pick_tasks(lines: list[str], n: int, most_tests: bool) -> list[str]:
    """n task lines: the first ones, or those with the most hidden tests (file order on ties)."""
    lines = [line for line in lines if line.strip()]
    if most_tests:
        lines = sorted(lines, key=count_tests, reverse=True)  # stable: ties keep file order
    return lines[:n]


def rust_jobs(shape: Shape) -> list[int]:
    """The shape's rust.concurrency values on this machine, 0 read as cores - 1, each once."""
    resolved = [jobs or max(1, cpu_count() - 1) for jobs in shape.rust_jobs]
    return list(dict.fromkeys(resolved))


def settings(shape: Shape, w: Workload, work: Path, jobs: int, teacher_url: str | None) -> dict:
    """What the shape puts on top of config.yaml."""
    put = {
        "student.max_new_tokens": w.max_new_tokens,
        "rust.concurrency": jobs,
        "pipeline.torch_threads": w.torch_threads,
        "trainer.max_steps": w.steps,
        "trainer.tasks_per_step": w.tasks_per_step,
        "trainer.samples_per_prompt": w.samples,
        "trainer.lr_schedule": "constant",
        "curriculum.enabled": False,
        "data.train": work / "tasks.jsonl",
        "cache.dir": work / "cache",
        "cache.rust": False,
        "cache.teacher": False,
        "checkpoint.every": 0,  # only after the last step, outside the timed steps
        "checkpoint.keep": 1,
        "logging.progress": False,
        "logging.samples": False,
        "run.output_dir": work / "runs",
    }
    if shape.tiny:
        put["student.model"] = work / "model"
        put["student.generate_batch_size"] = w.samples_per_step  # a step in one generate call
    if teacher_url is None:
        put["teacher.provider"] = "none"
    else:
        put.update(
            {
                "teacher.provider": "openai-compatible",
                "teacher.model": "bench-judge",
                "teacher.api_key_env": KEY_ENV,
                "teacher.base_url": teacher_url,
                "teacher.concurrency": w.teacher_concurrency,
                "teacher.requests_per_minute": 0,
                "teacher.tokens_per_minute": 0,
                "teacher.max_attempts": 1,  # the server never fails; a retry would hide a problem
                "teacher.only_compiled": False,
            }
        )
    return put


def prepare(shape: Shape, w: Workload, work: Path, jobs: int, teacher_url: str | None) -> Path:
    """Model, tasks and config under `work`; returns the config's path. Runs left there by an
    earlier benchmark are removed (a run name is never reused)."""
    for old in ("runs", "trl"):
        shutil.rmtree(work / old, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if shape.tiny:
        from rlaif.student.tiny import make_tiny_model

        make_tiny_model(work / "model", hidden_size=w.hidden, layers=w.layers)
    lines = (REPO / "data/train.jsonl").read_text().splitlines()
    tasks = pick_tasks(lines, w.tasks, shape.most_tests)
    (work / "tasks.jsonl").write_text("\n".join(tasks) + "\n")
    put = settings(shape, w, work, jobs, teacher_url)
    config = config_module.load(REPO / "config.yaml", [f"{k}={v}" for k, v in put.items()])
    path = work / "bench.yaml"
    config_module.save(config, path)
    return path


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
    return [namespaced(json.loads(line)) for line in metrics.read_text().splitlines()]


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
    then gen + update is the driver's work in the steps whose time is measured. A row's
    gen_threads_mean already covers the generation done since the row before it. The rows are
    metrics.jsonl's, under the namespaced names (`perf/gen_seconds`).
    """
    kept = [r for r in rows if warmup < r["iteration"] <= len(rows) - max(1, staleness)]
    ahead = [rows[r["iteration"] - 1 + staleness] for r in kept]  # iteration n is rows[n - 1]

    def mean(key: str, among: list[dict] = kept) -> float | None:
        values = [r[key] for r in among if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    return Stages(
        step=mean("perf/step_seconds") or 0.0,
        gen=mean("perf/gen_seconds", ahead),
        score=mean("perf/score_seconds"),
        train=mean("perf/train_seconds"),
        wait=mean("perf/score_wait_seconds"),
        hidden=mean("perf/score_hidden_frac"),
        samples_per_s=mean("perf/samples_per_s"),
        gen_threads=mean("perf/gen_threads_mean"),
        train_threads=mean("perf/train_threads_mean"),
    )


def trl_stages(result: dict, samples_per_step: int) -> Stages:
    """TRL scores in line: its reward time is all waited for, none of it hidden. Its update is
    the rest of the step (log-prob passes, backward, optimizer, and TRL's own bookkeeping)."""
    step, gen, score = result["step_seconds"], result["gen_seconds"], result["score_seconds"]
    threads = result.get("torch_threads")
    return Stages(
        step=step,
        gen=gen,
        score=score,
        train=step - gen - score,
        wait=score,
        hidden=0.0,
        samples_per_s=samples_per_step / step,
        gen_threads=threads,
        train_threads=threads,
    )


def teacher_for(shape: Shape, w: Workload):
    """The loopback teacher for a shape that has one, else a context giving None."""
    if not shape.teacher:
        return contextlib.nullcontext()
    return TeacherServer(latency_s=w.latency_ms / 1000, jitter_s=w.jitter_ms / 1000, jitter_seed=0)


def measure(shape: Shape, w: Workload, jobs: int, work: Path, with_trl: bool) -> Result:
    """The shape's workload at max_staleness 0 and 1, then in TRL's GRPOTrainer."""

    def calls(server) -> float | None:
        return len(server.requests) / w.steps if server is not None else None

    with teacher_for(shape, w) as server:
        config = prepare(shape, w, work, jobs, server.openai_url if server else None)
        runs = []
        for staleness in (0, 1):
            print(f"running rlaif, max_staleness {staleness} ...", flush=True)
            if server is not None:
                server.reset()  # each run meets the same sequence of delays
            stages = steady(run_rlaif(config, staleness, work), w.warmup, staleness)
            runs.append(replace(stages, teacher_calls=calls(server)))
        print(engine_line(work / "staleness-0.log"))
        trl = None
        if with_trl:
            print("running TRL GRPOTrainer ...", flush=True)
            if server is not None:
                server.reset()
            result = run_trl(config, w, work)
            trl = replace(trl_stages(result, w.samples_per_step), teacher_calls=calls(server))
            precision = result.get("autocast", "fp32")
            print(f"  TRL: {result['torch_threads']} torch threads, autocast {precision}")
            for note in result.get("differences", []):
                print(f"  TRL differs: {note}")
    return Result(runs[0], runs[1], trl)


# --- the report -----------------------------------------------------------------------------


def print_table(result: Result) -> None:
    def cell(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    runs = [("rlaif staleness 0", result.sync), ("rlaif staleness 1", result.pipelined)]
    if result.trl is not None:
        runs.append(("TRL GRPOTrainer", result.trl))
    head = ("mode", "s/step", "gen", "score", "update", "wait", "hidden", "samples/s", "teacher")
    head += ("gen thr", "upd thr")
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
            cell(s.gen_threads, ".1f"),
            cell(s.train_threads, ".1f"),
        ]
        print(" | ".join([f"{name:<17}", *(f"{c:>9}" for c in cells)]))
    print(
        "(seconds per step, means over the steady steps; score = a batch's first request to its "
        "last verdict; update = log-prob passes, backward and optimizer step; wait = the driver "
        "waiting on scoring; hidden = the share of scoring that ran beside other work; teacher = "
        "requests per step; gen thr, upd thr = mean torch threads of generation and the update)"
    )


def print_bound(r: Result) -> None:
    s0, s1 = r.sync, r.pipelined
    bound, work = overlap_bound(s0), s0.gen + s0.train
    print(
        f"bound: perfect overlap of staleness 0's stage times, max(gen + update {work:.2f}, score "
        f"{s0.score:.2f}) = {bound:.2f} s per step instead of {work + s0.score:.2f} s "
        f"({bound_speedup(s0):.2f}x); staleness 1 took {s1.step:.2f} s = {s1.step / bound:.2f}x "
        "the bound"
    )
    print(
        f"balance: score / (gen + update) at staleness 0 = {s0.score / work:.2f} (above 1: "
        f"scoring-bound); hidden: {s1.hidden or 0.0:.0%} of scoring at staleness 1 ran beside "
        "generation and the update"
    )


def print_checks(checks: list[Check]) -> bool:
    for ok, line in checks:
        print(f"{'info' if ok is None else 'PASS' if ok else 'FAIL'}  {line}")
    return all(ok is not False for ok, _ in checks)


def describe_machine() -> None:
    cores = cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.node()} ({platform.machine()}, {cores} cores, load average "
        f"{load:.1f}), python {platform.python_version()}"
    )
    if load > 0.5 * cores:
        print(f"note: the machine is busy (load {load:.1f} on {cores} cores): timings are noisy")


def workload_line(shape: Shape, w: Workload) -> str:
    """The workload's flags that the shape uses."""
    unused = (() if shape.teacher else TEACHER_FIELDS) + (() if shape.tiny else TINY_FIELDS)
    return ", ".join(f"{k}={v}" for k, v in asdict(w).items() if k not in unused)


def main(argv: list[str] | None = None) -> int:
    runs, skip_trl, work_dir = parse_args(argv)
    describe_machine()
    with_trl = not skip_trl and importlib.util.find_spec("trl") is not None
    if not skip_trl and not with_trl:
        print("trl is not installed (pip install -e '.[bench]'): the TRL comparison is skipped")
    passed = True
    with tempfile.TemporaryDirectory(prefix="rlaif-bench-") as temp:
        for shape, w in runs:
            concurrencies = rust_jobs(shape)
            if len(concurrencies) < len(shape.rust_jobs):
                print(f"\n({shape.name}: rust concurrency 1 is cores - 1 here, so it runs once)")
            for jobs in concurrencies:
                label = f"{shape.name}-{jobs}" if len(concurrencies) > 1 else shape.name
                print(f"\n== {shape.name}: {shape.about}, rust concurrency {jobs}")
                print(f"workload: {workload_line(shape, w)}")
                result = measure(shape, w, jobs, (work_dir or Path(temp)) / label, with_trl)
                print_table(result)
                print_bound(result)
                passed = print_checks(shape.checks(result, w)) and passed
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
