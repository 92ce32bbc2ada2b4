"""`train`, `eval`, `report` and `export`: the commands that make a run, measure a model, and turn
a run's files into plots or a plain model folder.

`train` checks everything that needs no model first (config, task files, rustc, the sandbox
level with one job through it, the teacher's key), so a mistake costs a second, not a model
load; torch and transformers are imported only after those checks pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
from pathlib import Path

from rich.console import Console
from rich.text import Text

from rlaif import config as config_module
from rlaif import strict_json
from rlaif.cli.common import DEFAULT_CONFIG, config_arguments, print_error, quiet_libraries
from rlaif.config import ConfigError
from rlaif.data.tasks import load_tasks
from rlaif.judges.rust.jobs import find_toolchain
from rlaif.judges.rust.sandbox_levels import SandboxUnavailable
from rlaif.judges.teacher.setup import make_teacher
from rlaif.loop.blind import find_blind


def add_train(commands) -> None:
    train = commands.add_parser("train", help="train the student (the default command)")
    config_arguments(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="PATH",
        help="continue a run: PATH is a run directory (its newest checkpoint) or a checkpoint "
        "folder; alone, the run named by run.name, else the newest run under run.output_dir. "
        "The checkpoint's config is used, with --set (or an explicit --config) on top",
    )
    train.set_defaults(handler=_train)


def add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a model on held-out tasks")
    config_arguments(evaluate)
    evaluate.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="model folder or run directory to evaluate (default: student.model); give two to "
        "compare them (before, after)",
    )
    evaluate.add_argument(
        "--baseline",
        action="store_true",
        help="also evaluate student.model first and compare the checkpoint with it",
    )
    evaluate.add_argument(
        "--temperature", type=float, help="sampling temperature (default: student.temperature)"
    )
    evaluate.add_argument("--tasks", help="task file (default: data.eval)")
    evaluate.add_argument(
        "--max-tasks",
        type=int,
        help="evaluate the first N tasks only (default: eval.max_tasks; 0: all)",
    )
    evaluate.add_argument("--n", type=int, default=4, help="samples per task (default: 4)")
    evaluate.add_argument("--k", default="1,2,4", help="pass@k values, comma-separated")
    evaluate.add_argument("--output", help="also write the table as JSON to this file")
    evaluate.add_argument(
        "--samples-output",
        help="also write every sample (model, task, completion, rustc counts, reward terms) "
        "to this JSONL file, one line each",
    )
    evaluate.set_defaults(handler=_eval)


def add_report(commands) -> None:
    report = commands.add_parser("report", help="plots and a summary of a run")
    report.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/NAME")
    report.add_argument("--output", type=Path, help="where to write (default: RUN_DIR/report)")
    report.set_defaults(handler=_report)


def add_export(commands) -> None:
    export = commands.add_parser(
        "export", help="write a checkpoint as a plain model folder (from_pretrained, no peft)"
    )
    export.add_argument("checkpoint", help="a checkpoint folder, or a run directory (its newest)")
    export.add_argument("out", help="the folder to write (new, or empty)")
    export.add_argument(
        "--merge",
        action="store_true",
        help="merge a LoRA checkpoint's adapter into its base model (required for LoRA)",
    )
    export.set_defaults(handler=_export)


def _train(args: argparse.Namespace, console: Console) -> int:
    resume = None
    if args.resume is None:
        args.config = args.config or DEFAULT_CONFIG
        config = config_module.load(args.config, args.overrides)
    else:
        resume, config = _resume_config(args, console)
    tasks = load_tasks(config.data.train)
    if resume is not None:
        from rlaif.records.resume import check_tasks

        check_tasks(resume.checkpoint, tasks, config.data.train)
    eval_tasks = load_tasks(config.data.eval) if config.eval.every else None
    if config.logging.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "logging.tensorboard is true but the tensorboard package is not installed: "
            "pip install 'rlaif[tensorboard]' (or set logging.tensorboard=false)"
        )
    toolchain = find_toolchain(config.rust.rustc)
    teacher, teacher_status = make_teacher(config.teacher, cache_config=config.cache)
    if int(os.environ.get("RANK", "0")) > 0:  # under `accelerate launch`, the main one speaks
        console = Console(quiet=True)
    console.print(f"config: {args.config}; tasks: {len(tasks)} from {config.data.train}")
    console.print(f"rustc: {toolchain.version}")
    config = sandbox_first(config, toolchain, console)
    console.print(teacher_status)

    import anyio  # the heavy imports (torch, transformers) wait until every check has passed

    from rlaif.loop.pipeline import train
    from rlaif.student.model import StudentLoadError

    quiet_libraries()
    try:
        anyio.run(
            lambda: train(
                config, tasks, toolchain, teacher, console, resume=resume, eval_tasks=eval_tasks
            )
        )
    except (StudentLoadError, FileExistsError) as exc:
        print_error(exc)
        return 2
    except Exception as exc:  # task groups wrap it in ExceptionGroups: find it or re-raise
        blind = find_blind(exc)
        if blind is None:
            raise
        print_error(blind)
        return 1
    except KeyboardInterrupt:
        # Every finished step is already on disk (metrics and samples are flushed per step).
        console.print(
            "interrupted: the run directory holds every step that finished; "
            "`--resume` continues from its last checkpoint"
        )
        return 130
    return 0


def _resume_config(args: argparse.Namespace, console: Console):
    """(where to resume, the config to resume with), refusing changes that alter training."""
    from rlaif.records.resume import check_config, locate

    if args.resume:
        point = locate(args.resume, None)
    else:  # the run is named by run.name / run.output_dir, from the config and --set
        path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None)
        point = locate(None, config_module.load(path, args.overrides))
    saved_path = point.checkpoint / "config.yaml"
    saved = config_module.load(saved_path)
    config = config_module.load(args.config or saved_path, args.overrides)
    allowed = check_config(saved, config, point.checkpoint)
    if allowed:
        console.print("changed for the resumed run: " + "; ".join(allowed))
    args.config = args.config or str(saved_path)
    return point, config


def sandbox_first(config: config_module.Config, toolchain, console: Console):
    """Say which sandbox level runs, whether it cuts the network and what it leaves uncovered,
    and run one known-good job through it; refuse to start when that fails (the run would
    train blind). Returns the config with the level resolved, as the run saves it."""
    from rlaif.cli.doctor import sandbox_checks

    level, checks = sandbox_checks(config, toolchain)
    for check in checks:
        console.print(Text(f"{check.name}: {check.detail}"))
    failed = [check.detail for check in checks if check.required and not check.ok]
    if level is None or failed:
        raise SandboxUnavailable("; ".join(failed))
    return dataclasses.replace(config, rust=dataclasses.replace(config.rust, sandbox=level.name))


def _eval(args: argparse.Namespace, console: Console) -> int:
    overrides = list(args.overrides)
    if args.temperature is not None:
        overrides.append(f"student.temperature={args.temperature}")  # checked like any --set
    if args.max_tasks is not None:
        overrides.append(f"eval.max_tasks={args.max_tasks}")  # checked like any --set
    config = config_module.load(args.config or DEFAULT_CONFIG, overrides)
    tasks = load_tasks(args.tasks or config.data.eval)[: config.eval.max_tasks or None]
    toolchain = find_toolchain(config.rust.rustc)
    try:
        ks = sorted({int(k) for k in args.k.split(",")})
    except ValueError:
        raise ConfigError(
            f"--k {args.k!r}: expected comma-separated integers, e.g. 1,2,4"
        ) from None
    if args.n < 1 or ks[0] < 1 or ks[-1] > args.n:
        raise ConfigError(f"--n {args.n} --k {args.k}: need 1 <= k <= n")
    if args.baseline and not args.checkpoint:
        raise ConfigError("--baseline compares a --checkpoint with student.model: give one")
    models = ([config.student.model] if args.baseline else []) + args.checkpoint
    if len(models) > 2:
        raise ConfigError(f"at most two models to compare, got {len(models)}: {models}")

    import anyio

    from rlaif.evaluation.evaluate import compare, evaluate, resolve_model, sample_records
    from rlaif.student.model import StudentLoadError

    quiet_libraries()
    models = [resolve_model(m) for m in models or [config.student.model]]
    try:
        evaluated = anyio.run(evaluate, config, tasks, toolchain, models, args.n, ks, console)
    except StudentLoadError as exc:
        print_error(exc)
        return 2
    results = [result.rows for result in evaluated]
    if args.samples_output:
        with open(args.samples_output, "w") as out:
            for model, result in zip(models, evaluated, strict=True):
                for record in sample_records(model, result.scored):
                    out.write(strict_json.dumps(record) + "\n")
    if args.output:
        if len(results) == 1:
            payload = results[0]
        else:
            payload = {
                "models": models,
                "before": results[0],
                "after": results[1],
                "delta": compare(results[0], results[1]),
            }
        Path(args.output).write_text(strict_json.dumps(payload, indent=2))
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    from rlaif.records.report import ReportError, write_report

    try:
        report = write_report(args.run_dir, args.output)
    except ReportError as exc:
        print_error(exc)
        return 2
    for path in report.plots:
        console.print(f"plot: {path}")
    for note in report.notes:
        console.print(f"skipped: {note}")
    console.print(f"summary: {report.summary}")
    return 0


def _export(args: argparse.Namespace, console: Console) -> int:
    from rlaif.records.export import export_checkpoint
    from rlaif.student.model import StudentLoadError

    quiet_libraries()
    try:
        done = export_checkpoint(args.checkpoint, args.out, args.merge)
    except StudentLoadError as exc:  # e.g. a LoRA checkpoint's base model is no longer there
        print_error(exc)
        return 2
    console.print(f"exported: {done}")
    return 0
