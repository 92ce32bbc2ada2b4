"""`score` and `judge-check`: the judges without a student. `score` runs every reward term over
completions from a file; `judge-check` measures how far the teacher's verdicts agree with the
hidden tests (or, with `--build`, writes a labelled set to measure it on). No model is loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from rlaif import config as config_module
from rlaif import strict_json
from rlaif.cli.common import DEFAULT_CONFIG, config_arguments
from rlaif.config import ConfigError
from rlaif.data.tasks import load_tasks
from rlaif.judges.rust.jobs import find_toolchain
from rlaif.judges.teacher.setup import TeacherUnavailable, make_teacher


def add_score(commands) -> None:
    score = commands.add_parser("score", help="score completions from a JSONL file, no model")
    config_arguments(score)
    score.add_argument(
        "--input", required=True, type=Path, help="JSONL: task_id or task, completion"
    )
    score.add_argument("--output", type=Path, help="JSONL results (default: standard output)")
    score.add_argument("--tasks", help="task file for task_id (default: data.train and data.eval)")
    score.set_defaults(handler=_score)


def add_judge_check(commands) -> None:
    judge = commands.add_parser(
        "judge-check", help="how far the teacher's verdicts agree with the hidden tests"
    )
    config_arguments(judge)
    judge.add_argument(
        "--input",
        type=Path,
        default=Path("data/judge_check.jsonl"),
        help="labelled set, JSONL (default: data/judge_check.jsonl)",
    )
    judge.add_argument("--limit", type=int, help="check the first N records only")
    judge.add_argument("--output", type=Path, help="also write the report as JSON to this file")
    judge.add_argument(
        "--build",
        type=Path,
        metavar="OUT",
        help="instead of checking, write a labelled set to OUT: references, mutants and the "
        "samples of --from-samples, labelled by rustc (training tasks only)",
    )
    judge.add_argument("--from-samples", type=Path, help="a run's samples.jsonl, for --build")
    judge.add_argument(
        "--per-class", type=int, default=40, help="--build: records of each source (default: 40)"
    )
    judge.add_argument(
        "--per-task",
        type=int,
        default=1,
        help="--build: mutants and samples taken from one task, at most (default: 1)",
    )
    judge.add_argument(
        "--seed", type=int, default=0, help="seeds --build's choices and the bootstrap"
    )
    judge.set_defaults(handler=_judge_check)


def _score(args: argparse.Namespace, console: Console) -> int:
    from rlaif.evaluation.score import run_score, write_results
    from rlaif.judges.rust.jobs import default_concurrency

    config = config_module.load(args.config or DEFAULT_CONFIG, args.overrides)
    toolchain = find_toolchain(config.rust.rustc)
    teacher, teacher_status = make_teacher(config.teacher, cache_config=config.cache)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(teacher_status)
    lines, scored, stats = run_score(
        config, args.input, args.tasks, toolchain, teacher, default_concurrency(config.rust)
    )
    if args.output:
        with args.output.open("w") as out:
            write_results(lines, scored, out)
    else:
        write_results(lines, scored, sys.stdout)
    hits = (
        f"; rust cache {stats['cache_hits']} hits, {stats['cache_misses']} misses"
        if "cache_hits" in stats
        else ""
    )
    err.print(f"scored {len(scored)} completions in {stats['seconds']:.2f}s{hits}")
    return 0


def _judge_check(args: argparse.Namespace, console: Console) -> int:
    from rlaif.evaluation.judge_check import blind_teacher_config, render_table, run_judge_check
    from rlaif.evaluation.judge_set import read_labelled

    config = config_module.load(args.config or DEFAULT_CONFIG, args.overrides)
    if args.build is not None:
        return _judge_check_build(args, config, console)
    if args.from_samples is not None:
        raise ConfigError("--from-samples goes with --build OUT (it is what a set is built from)")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: expected at least 1")
    records = read_labelled(args.input)[: args.limit]
    tasks = {task.id: task for task in load_tasks(config.data.train)}
    # Asked blind (no rustc report) and sent everything: see rlaif/evaluation/judge_check.py.
    teacher, status = make_teacher(blind_teacher_config(config.teacher), cache_config=config.cache)
    if teacher is None:
        raise TeacherUnavailable(
            f"judge-check needs a teacher, and it is off: {status.removeprefix('teacher: ')}. "
            "Set teacher.provider (anthropic, openai, openai-compatible with teacher.base_url, or "
            "llama-cpp: a local server, `make local-teacher`) "
            "and teacher.model, and export the API key in the variable teacher.api_key_env names "
            f"(now {config.teacher.api_key_env})."
        )
    console.print(f"{status}; asked blind, without rustc's report")
    console.print(f"grading {len(records)} labelled completions from {args.input}")
    report = run_judge_check(records, tasks, config.data.train, teacher, seed=args.seed)
    console.print(render_table(report, title=f"judge-check: {args.input}"))
    if args.output:
        args.output.write_text(strict_json.dumps(report, indent=2))
    return 0


def _judge_check_build(args: argparse.Namespace, config, console: Console) -> int:
    import anyio

    from rlaif.evaluation.judge_set import (
        build_labelled_set,
        class_counts,
        read_samples,
        write_labelled,
    )
    from rlaif.judges.rust.jobs import RustJudge, cpu_count, rust_cache

    if args.from_samples is None:
        raise ConfigError("--build OUT needs --from-samples RUN/samples.jsonl (a run's samples)")
    if args.per_class < 1 or args.per_task < 1:
        raise ConfigError(f"--per-class {args.per_class} --per-task {args.per_task}: need >= 1")
    tasks = load_tasks(config.data.train)  # training tasks only: data.eval stays held out
    samples = read_samples(args.from_samples, {task.id: task for task in tasks})
    toolchain = find_toolchain(config.rust.rustc)
    # Nothing else runs beside the build (no model), so every core may compile.
    cache = rust_cache(config.cache)
    judge = RustJudge(toolchain, config.rust, config.rust.concurrency or cpu_count(), cache)
    console.print(
        f"rustc: {toolchain.version}; {len(tasks)} training tasks from {config.data.train}, "
        f"{len(samples)} distinct samples from {args.from_samples}"
    )
    try:
        records = anyio.run(
            lambda: build_labelled_set(
                tasks,
                samples,
                judge,
                per_class=args.per_class,
                per_task=args.per_task,
                seed=args.seed,
            )
        )
    finally:
        if cache is not None:
            cache.close()
    write_labelled(args.build, records)
    counts = ", ".join(f"{key} {value}" for key, value in class_counts(records).items())
    console.print(f"wrote {len(records)} labelled records to {args.build}: {counts}")
    return 0
