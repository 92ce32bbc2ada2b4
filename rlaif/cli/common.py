"""What every command module shares: the `--config`/`--set` options, the default config file,
how an expected error is printed, and quieting transformers before a model loads.

Kept apart from `main` so that the command modules need not import the module that imports them.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

DEFAULT_CONFIG = "config.yaml"


def config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` and repeatable `--set SECTION.KEY=VALUE`, as every config-reading command
    takes them."""
    parser.add_argument("--config", help=f"YAML config (default: {DEFAULT_CONFIG})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key; repeatable",
    )


def print_error(exc: Exception) -> None:
    """`error: MESSAGE` on standard error, for the failures a user can fix (exit code 2 or 1)."""
    # Plain Text, not markup: messages quote user input, which may contain [brackets].
    message = Text("error: ", style="bold red") + Text(str(exc))
    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def quiet_libraries() -> None:
    """Keep transformers' per-file progress bars and advisory warnings out of the run's output."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
