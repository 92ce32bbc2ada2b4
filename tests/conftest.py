"""Shared fixtures: a tiny real model, the real rustc, and a way to run the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Keys a developer may have exported must never reach a test's subprocess by accident.
SECRET_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from rlaif.student.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def toolchain():
    from rlaif.judges.rust.jobs import find_toolchain

    return find_toolchain()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: the machine's cores are shared, and one thread is faster
    than two fighting (and gives the same float sums every time)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings(**values) -> list[str]:
    """`--set` arguments: settings(student__model=m) -> ["--set", "student.model=m"]."""
    args = []
    for key, value in values.items():
        args += ["--set", f"{key.replace('__', '.', 1)}={value}"]
    return args


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300):
    """`python -m rlaif ARGS` in a subprocess, as a user runs it; returns CompletedProcess."""
    base = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return subprocess.run(
        [sys.executable, "-m", "rlaif", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
