"""`doctor`, `data check` and `config-doc`: checks of the machine, the task files and the
configuration reference, none of which loads a model.

`config-doc --write FILE` rewrites the table between FILE's config-doc markers
(docs/configuration.md, `make docs`); a test keeps that table equal to what `config-doc` prints,
so the reference cannot drift from the config dataclasses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.text import Text

from rlaif import config as config_module
from rlaif.cli.common import DEFAULT_CONFIG, config_arguments
from rlaif.data.tasks import DataError
from rlaif.judges.rust.jobs import find_toolchain

TABLE_START = "<!-- config-doc:start"
TABLE_END = "<!-- config-doc:end -->"


def add_config_doc(commands) -> None:
    doc = commands.add_parser("config-doc", help="print the config reference (Markdown)")
    doc.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help="rewrite the table between the config-doc markers of FILE "
        "(e.g. docs/configuration.md)",
    )
    # The option's old name, for Makefiles written before the reference left the README.
    doc.add_argument("--readme", dest="write", type=Path, help=argparse.SUPPRESS)
    doc.set_defaults(handler=_config_doc)


def add_doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="check that this machine can train this config")
    config_arguments(doctor)
    doctor.add_argument("--online", action="store_true", help="also send one teacher request")
    doctor.set_defaults(handler=_doctor)


def add_data(commands) -> None:
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


def reference_table() -> list[str]:
    """The configuration reference as Markdown table lines: header, rule, one row per key."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in config_module.reference_rows():
        shown = f"`` {default} ``" if "`" in default else f"`{default}`"  # a span may hold `
        rows.append(f"| `{key}` | {shown} | {meaning} |")
    return rows


def _config_doc(args: argparse.Namespace, console: Console) -> int:
    rows = reference_table()
    if args.write is None:
        print("\n".join(rows))
        return 0
    # Replace what lies between the file's two markers (the marker lines themselves stay).
    lines = args.write.read_text().split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(TABLE_START)]
    ends = [i for i, line in enumerate(lines) if line.startswith(TABLE_END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise DataError(f"{args.write}: needs one {TABLE_START} ... and one {TABLE_END}")
    lines[starts[0] + 1 : ends[0]] = rows
    args.write.write_text("\n".join(lines))
    console.print(f"updated the configuration reference in {args.write}")
    return 0
