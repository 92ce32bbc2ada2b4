"""Does it learn? Evaluate the default student, train it, evaluate the final checkpoint, compare.

    python bench/learning.py            (or `make learn`)
    python bench/learning.py --quick    (a tiny random model, 2 steps, 3 tasks: a smoke test)

1. before: `rlaif eval` of student.model on data.eval, --samples completions per task;
2. `rlaif train --config configs/learn.yaml` (the learning preset: config.yaml with a longer run);
3. after: `rlaif eval` of the run's final checkpoint, same tasks, seed and temperature;
4. a paired bootstrap over tasks (rlaif.evaluation.stats) of mean reward, parse, compile and test
   pass rates and pass@k: the table goes into bench/RESULTS.md between the `learning` markers,
   the run's report plots into bench/learning/, and ten final-checkpoint completions with their
   reward terms into bench/learning/samples.md (to read for reward hacking: high rewards for
   code that games the terms rather than solving the task).

Each step is the project's own command line in a subprocess, as a user runs it; the commands
are printed and recorded. The work files stay in --work (default runs/learning-bench):
before.jsonl / after.jsonl (every sample), before.json / after.json (the eval tables),
tasks.jsonl (the tasks evaluated), meta.json (machine, commands, timings); `--table` rebuilds
the outputs from them and `--skip-before` reuses the saved before-evaluation.

Time on the project's 2-core CPU: about an hour of training (configs/learn.yaml), plus two
evaluations of 62 tasks x 4 samples, i.e. 31 generation batches of 8 each; one such batch took
318 s with the machine shared (load average 4), so run it on a quiet machine, or lower
--samples / --max-tasks (the intervals are over tasks: fewer tasks widen them directly).

`--teacher llama-cpp` trains with the local teacher (`teacher.provider: llama-cpp`, the offline
Qwen2.5-Coder-1.5B-Instruct by default; `make local-teacher` first) and writes its own section,
"Does the teacher help?", with the teacher's share of the training reward and the seconds per
step; `--before-from runs/learning-bench` reuses the compiler-only run's before-evaluation (the
evaluations consult no teacher, so it is the same measurement).

The acceptance rule (`verdict`): the 95% intervals of the rises of the mean reward and of the
compile rate both lie above 0 (pass@1's rise is reported with its interval). Exit code 0 on
PASS, 1 on FAIL, 2 when a step failed. The evaluations consult no teacher: the mean reward is
the compiler's, whatever the training used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere: `python bench/learning.py`

from rlaif import config as config_module  # noqa: E402
from rlaif.evaluation.stats import RATES, Paired, paired_bootstrap, task_values  # noqa: E402
from rlaif.records.metrics import namespaced  # noqa: E402

BEGIN, END = "<!-- learning:begin -->", "<!-- learning:end -->"
HEADING = "## Does it learn? (`make learn`, i.e. `python bench/learning.py`)"
# `--teacher llama-cpp`: the same bench with the local teacher judging during training, in its
# own section beside the compiler-only one.
TEACHER_MARKERS = (
    "<!-- learning-teacher:begin -->",
    "<!-- learning-teacher:end -->",
    "## Does the teacher help? (`python bench/learning.py --teacher llama-cpp`)",
)
SEED = 0  # the bootstrap's draws; the evaluations use the config's run.seed
SHOWN = 10  # completions in samples.md


class BenchError(RuntimeError):
    """A step failed or a saved file is missing; the message says which."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/learn.yaml", help="training and eval config")
    p.add_argument(
        "--preset", help="YAML of keys to apply on top of --config (as --set), e.g. a tuned lr"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--samples", type=int, help="completions per eval task (default 4; quick 2)")
    p.add_argument("--max-tasks", type=int, help="first N eval tasks (default all; quick 3)")
    p.add_argument("--steps", type=int, help="trainer.max_steps (default: the config's)")
    p.add_argument("--resamples", type=int, help="bootstrap draws (default 10000; quick 200)")
    p.add_argument("--work", type=Path, help="work files (default runs/learning-bench)")
    p.add_argument("--results", type=Path, help="the results file (default bench/RESULTS.md)")
    p.add_argument("--out", type=Path, help="plots and samples.md (default bench/learning)")
    p.add_argument("--skip-before", action="store_true", help="reuse the saved before-eval")
    p.add_argument("--table", action="store_true", help="only rebuild the outputs from --work")
    p.add_argument("--quick", action="store_true", help="tiny model, 2 steps, 3 tasks")
    p.add_argument(
        "--teacher",
        choices=["llama-cpp"],
        help="train with the local teacher (teacher.gguf, default the offline Qwen2.5-Coder-1.5B) "
        "and write its own section, 'Does the teacher help?'",
    )
    p.add_argument(
        "--before-from",
        type=Path,
        help="reuse another work folder's before-evaluation (same tasks, samples, seed): the "
        "evaluations consult no teacher, so the compiler-only run's serves a teacher run",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the recorded command
    quick = args.quick
    args.samples = args.samples or (2 if quick else 4)
    args.max_tasks = args.max_tasks if args.max_tasks is not None else (3 if quick else 0)
    args.resamples = args.resamples or (200 if quick else 10_000)
    default_work = "runs/learning-quick" if quick else "runs/learning-bench"
    args.work = args.work or REPO / (default_work + ("-teacher" if args.teacher else ""))
    if args.teacher:
        args.overrides = [f"teacher.provider={args.teacher}", *args.overrides]
    if args.before_from:
        args.skip_before = True
    # A smoke test must not overwrite the real results: its outputs stay in its work folder.
    args.results = args.results or (
        args.work / "RESULTS.md" if quick else REPO / "bench/RESULTS.md"
    )
    plots = "bench/learning-teacher" if args.teacher else "bench/learning"
    args.out = args.out or (args.work / "learning" if quick else REPO / plots)
    if args.samples < 1:
        p.error("--samples must be at least 1")
    return args


# --- the settings every command shares ----------------------------------------------------


def preset_overrides(path: str | Path) -> list[str]:
    """A nested YAML file as `section.key=value` strings, values written so YAML reads them
    back as the same type (5.0e-06 stays a float; PyYAML reads 5e-06 as a string)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    out = []
    for section, keys in data.items():
        if not isinstance(keys, dict):
            raise BenchError(f"{path}: {section} must be a section of keys")
        for key, value in keys.items():
            text = yaml.safe_dump(value, default_flow_style=True).strip()
            out.append(f"{section}.{key}={text.removesuffix('...').strip()}")
    return out


def ks_for(n: int) -> list[int]:
    """pass@k for k = 1, the powers of 2 up to n, and n."""
    return sorted({1, n, *(2**i for i in range(1, n.bit_length()) if 2**i <= n)})


def quick_overrides(work: Path, overrides: list[str]) -> list[str]:
    """A tiny random model (unless student.model is set), short completions, 2 steps."""
    extra = ["student.max_new_tokens=16", "trainer.max_steps=2", "checkpoint.every=1"]
    extra += ["logging.progress=false", f"run.output_dir={work / 'runs'}"]
    if not any(o.startswith("student.model=") for o in overrides):
        model = work / "tiny-model"
        if not (model / "config.json").is_file():
            cli(["make-tiny-model", str(model)])
        extra.append(f"student.model={model}")
    return extra


def cli(args: list[str]) -> float:
    """`python -m rlaif ARGS`, its output shown as it comes; the seconds it took."""
    print(f"$ python -m rlaif {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rlaif", *args], cwd=Path.cwd())
    if done.returncode != 0:
        raise BenchError(f"`python -m rlaif {shlex.join(args)}` exited with {done.returncode}")
    return time.perf_counter() - start


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


# --- the run: before, train, after ---------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    """Run the evaluations and the training; return meta (also saved as work/meta.json)."""
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    overrides = preset_overrides(args.preset) if args.preset else []
    if args.quick:
        overrides += quick_overrides(work, args.overrides)
    if args.steps is not None:
        overrides.append(f"trainer.max_steps={args.steps}")
    overrides += args.overrides  # the user's --set last: it wins
    config = config_module.load(args.config, overrides)
    name = config.run.name or datetime.datetime.now().strftime("learn-%Y%m%d-%H%M%S")
    run_dir = Path(config.run.output_dir) / name
    tasks = work / "tasks.jsonl"
    lines = Path(config.data.eval).read_text().splitlines(True)
    tasks.write_text("".join(lines[: args.max_tasks] if args.max_tasks else lines))
    sets = [a for o in overrides for a in ("--set", o)]
    ks = ",".join(map(str, ks_for(args.samples)))
    common = ["--config", args.config, *sets, "--tasks", str(tasks), "--n", str(args.samples)]
    common += ["--k", ks]
    meta_path = work / "meta.json"
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "bench/learning.py", *args.argv]),
        "config": args.config,
        "overrides": overrides,
        "samples": args.samples,
        "tasks": sum(1 for line in tasks.read_text().splitlines() if line.strip()),
        "seed": config.run.seed,
        "temperature": config.student.temperature,
        "resamples": args.resamples,
    }
    if args.before_from:
        for filename in ("before.json", "before.jsonl"):
            shutil.copy2(args.before_from / filename, work / filename)
        old["before"] = json.loads((args.before_from / "meta.json").read_text())["before"]
        for key in ("samples", "tasks", "seed", "temperature"):
            old[key] = json.loads((args.before_from / "meta.json").read_text()).get(key)
    if args.skip_before:
        if not (work / "before.jsonl").is_file() or "before" not in old:
            raise BenchError(f"--skip-before: no saved before-evaluation in {work}")
        same = ("samples", "tasks", "seed", "temperature")
        changed = [k for k in same if old.get(k) != meta[k]]
        if changed:
            raise BenchError(f"--skip-before: the saved before-evaluation differs in {changed}")
        meta["before"] = old["before"]
    else:
        out = [
            "--output",
            str(work / "before.json"),
            "--samples-output",
            str(work / "before.jsonl"),
        ]
        seconds = cli(["eval", *common, *out])
        meta["before"] = {"model": config.student.model, "seconds": round(seconds, 1)}
    meta_path.write_text(json.dumps(meta, indent=2))

    train = ["train", "--config", args.config, *sets, "--set", f"run.name={name}"]
    seconds = cli(train)
    meta["train"] = {
        "command": shlex.join(["python", "-m", "rlaif", *train]),
        "run_dir": str(run_dir),
        "seconds": round(seconds, 1),
        "steps": trained_steps(run_dir),
    }
    meta_path.write_text(json.dumps(meta, indent=2))

    out = ["--output", str(work / "after.json"), "--samples-output", str(work / "after.jsonl")]
    seconds = cli(["eval", *common, "--checkpoint", str(run_dir), *out])
    meta["after"] = {"model": str(run_dir), "seconds": round(seconds, 1)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def trained_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return int(rows[-1]["iteration"]) if rows else 0


# --- the outputs: table, plots, samples ----------------------------------------------------


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise BenchError(f"{path}: no saved evaluation (run the bench without --table first)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(
    before: list[dict], after: list[dict], samples: int, resamples: int
) -> dict[str, Paired]:
    ks = ks_for(samples)
    return paired_bootstrap(
        task_values(before, ks),
        task_values(after, ks),
        resamples=resamples,
        seed=SEED,
        metrics=[*RATES, *(f"pass@{k}" for k in ks)],
    )


def verdict(result: dict[str, Paired]) -> tuple[bool, str]:
    """The rule: the mean reward and the compile rate (`types.Scored.compiles`: builds with the
    task's tests, no placeholder) each rise beyond their 95% intervals (the interval of the rise
    lies above 0). pass@1's rise is reported whatever it is."""
    reward, compiled = result["mean_reward"], result["compile_rate"]
    reward_ok = reward.diff_ci[0] > 0
    compile_ok = compiled.diff_ci[0] > 0
    why = (
        f"mean reward {reward.diff:+.2f} (95% CI low {reward.diff_ci[0]:+.2f}: "
        f"{'above' if reward_ok else 'not above'} 0); compile rate {compiled.diff:+.3f} "
        f"(95% CI low {compiled.diff_ci[0]:+.3f}: {'above' if compile_ok else 'not above'} 0)"
    )
    if "pass@1" in result:
        p1 = result["pass@1"]
        why += f"; pass@1 {p1.diff:+.3f} [{p1.diff_ci[0]:+.3f}, {p1.diff_ci[1]:+.3f}]"
    return reward_ok and compile_ok, why


def _cell(value: float, ci: tuple[float, float], digits: int, sign: bool = False) -> str:
    if math.isnan(value):
        return "n/a"  # e.g. the test pass rate when no sample compiled, so no test ran
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(value)} [{f.format(ci[0])}, {f.format(ci[1])}]"


def render_section(result: dict[str, Paired], meta: dict, out_dir: str) -> str:
    """The Markdown that goes between the markers: setting, table, verdict, where the rest is."""
    passed, why = verdict(result)
    m, train = meta["machine"], meta.get("train", {})
    lines = [
        f"Machine: {m['cpu']} ({m['cores']} cores), {meta['date']}. Command: `{meta['command']}`.",
        "",
        f"Training: `{train.get('command', '?')}`: {train.get('steps', '?')} steps in "
        f"{_minutes(train.get('seconds'))}. Evaluation: {meta['tasks']} held-out tasks x "
        f"{meta['samples']} samples, temperature {meta['temperature']}, seed {meta['seed']}, "
        f"compiler rewards only (no teacher); before {_minutes(meta['before'].get('seconds'))}, "
        f"after {_minutes(meta.get('after', {}).get('seconds'))}. Starting student "
        f"`{meta['before']['model']}`, final checkpoint of `{train.get('run_dir', '?')}`.",
        "",
        f"Mean [95% CI] over tasks; the intervals are a paired bootstrap over tasks "
        f"({meta['resamples']} draws, `rlaif/evaluation/stats.py`). Rates are over samples, except "
        "test_pass_rate: tests passed of the tests that ran (code that does not compile runs "
        "none), as `rlaif eval` reports it. pass@k: Chen et al. (2021), all tests passed.",
        "",
        "| metric | before | after | after - before |",
        "| --- | --- | --- | --- |",
    ]
    for name, p in result.items():
        digits = 2 if name == "mean_reward" else 3
        lines.append(
            f"| {name} | {_cell(p.before, p.before_ci, digits)} | "
            f"{_cell(p.after, p.after_ci, digits)} | {_cell(p.diff, p.diff_ci, digits, True)} |"
        )
    lines += [
        "",
        f"**{'PASS' if passed else 'FAIL'}** (the rises of the mean reward and of the compile "
        f"rate both have their 95% intervals above 0): {why}.",
        "",
        f"Plots of the training run: `{out_dir}/*.png`; ten final-checkpoint completions with "
        f"their reward terms: `{out_dir}/samples.md`.",
    ]
    return "\n".join(lines)


def _minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def replace_section(
    text: str, body: str, markers: tuple[str, str, str] = (BEGIN, END, HEADING)
) -> str:
    """`text` with what lies between the markers replaced by `body` (the markers stay); a new
    section at the end when the markers are missing."""
    begin, end_marker, heading = markers
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 and end < 0:
        return f"{text.rstrip()}\n\n{heading}\n\n{begin}\n{body}\n{end_marker}\n"
    if start < 0 or end < start or text.count(begin) > 1 or text.count(end_marker) > 1:
        raise BenchError(f"the results file needs exactly one {begin} before one {end_marker}")
    return f"{text[: start + len(begin)]}\n{body}\n{text[end:]}"


def samples_markdown(records: list[dict], count: int = SHOWN, seed: int = SEED) -> str:
    """The top half of `count` completions by reward (where a gamed reward would show) and the
    rest drawn at random from the others (what the model typically writes)."""
    ranked = sorted(records, key=lambda r: _reward(r), reverse=True)
    top = ranked[: count // 2]
    rest = ranked[count // 2 :]
    picked = top + sorted(
        random.Random(seed).sample(rest, min(count - len(top), len(rest))),
        key=lambda r: _reward(r),
        reverse=True,
    )
    model = records[0]["model"] if records else "?"
    lines = [
        "# Final-checkpoint completions",
        "",
        f"From `{model}` on the held-out tasks: the {len(top)} highest rewards, then "
        f"{len(picked) - len(top)} drawn at random (seed {seed}). Written by "
        "`bench/learning.py`; read them for reward hacking (code that scores without solving).",
    ]
    for i, r in enumerate(picked, 1):
        terms = ", ".join(f"{k} {v:+.2f}" for k, v in (r.get("components") or {}).items())
        status = _compile_status(r)
        lines += [
            "",
            f"## {i}. `{r['task_id']}` ({r.get('difficulty')}), sample {r['sample']}: "
            f"reward {_reward(r):.2f}",
            "",
            f"{status}; tests {r['tests_passed']}/{r['tests_total']}; terms: {terms or 'none'}.",
            "",
            fenced(r["completion"], "markdown"),
        ]
    return "\n".join(lines) + "\n"


def _compile_status(record: dict) -> str:
    """How far the code got; records written before `tests_built` existed read as built."""
    if not record["compiled"]:
        return f"does not compile ({record.get('errors')} errors)"
    if record["tests_total"] and not record.get("tests_built", True):
        return "type-checks, but the tests cannot build against it"
    return "compiles"


def _reward(record: dict) -> float:
    value = record.get("reward")
    return float("-inf") if value is None or value != value else float(value)


def fenced(text: str, lang: str) -> str:
    """A code fence longer than any run of backticks inside, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def copy_plots(run_dir: Path, out_dir: Path) -> list[Path]:
    """The run's report (`rlaif report`), its PNGs copied into out_dir."""
    from rlaif.records.report import write_report

    report = write_report(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, out_dir / p.name)) for p in report.plots]


def write_outputs(args: argparse.Namespace, meta: dict) -> bool:
    """Table into the results file, plots and samples.md into --out; True on PASS."""
    before = read_records(args.work / "before.jsonl")
    after = read_records(args.work / "after.jsonl")
    result = compare(before, after, meta["samples"], meta["resamples"])
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(meta.get("train", {}).get("run_dir", ""))
    if (run_dir / "metrics.jsonl").is_file():
        for path in copy_plots(run_dir, args.out):
            print(f"plot: {path}")
    else:
        print(f"no plots: {run_dir} holds no metrics.jsonl")
    (args.out / "samples.md").write_text(samples_markdown(after))
    shown = _shown(args.out)
    results = args.results
    text = results.read_text() if results.is_file() else "# Benchmark results\n"
    section = render_section(result, meta, shown)
    if args.teacher:
        section += "\n\n" + teacher_paragraph(run_dir)
    markers = TEACHER_MARKERS if args.teacher else (BEGIN, END, HEADING)
    results.write_text(replace_section(text, section, markers))
    passed, why = verdict(result)
    print(f"{'PASS' if passed else 'FAIL'}: {why}")
    print(f"table: {results}; samples: {args.out / 'samples.md'}")
    return passed


def teacher_paragraph(run_dir: Path) -> str:
    """The teacher's part in training: its share of the reward and what it cost per step."""
    samples = read_records(run_dir / "samples.jsonl") if run_dir.is_dir() else []
    # A term with no value (an abstention: NaN, written as null) adds nothing.
    terms = [{k: v for k, v in (r.get("components") or {}).items() if _finite(v)} for r in samples]
    total = sum(abs(v) for t in terms for v in t.values())
    teacher = sum(abs(t.get("teacher", 0.0)) for t in terms)
    # Namespaced names; a run logged before they were has flat ones, which `namespaced` maps.
    rows = read_records(run_dir / "metrics.jsonl") if run_dir.is_dir() else []
    rows = [namespaced(row) for row in rows]
    last = rows[-1] if rows else {}
    steps = len(rows) or 1
    share = f"{teacher / total:.1%}" if total else "?"
    return (
        f"The teacher's share of the training reward (sum of |teacher term| over the sum of "
        f"|all terms|, {len(samples)} training samples): {share}. Requests "
        f"{last.get('teacher/requests', '?')}, verdicts {last.get('teacher/verdicts', '?')}, "
        f"abstentions {last.get('teacher/abstained', '?')}, latency p50 "
        f"{last.get('teacher/latency_p50_s', float('nan')):.1f} s; "
        f"{sum(r.get('perf/step_seconds', 0.0) for r in rows) / steps:.0f} s per step."
    )


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.table:
            meta_path = args.work / "meta.json"
            if not meta_path.is_file():
                raise BenchError(f"{meta_path}: nothing saved to rebuild the table from")
            meta = json.loads(meta_path.read_text())
            meta["resamples"] = args.resamples
        else:
            meta = run(args)
        return 0 if write_outputs(args, meta) else 1
    except (BenchError, config_module.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
