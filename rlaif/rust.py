"""One rustc job per sample: check the code, then build and run the task's hidden tests.

A job runs up to four sandboxed processes (see `sandbox.py`), each in the job's own temp dir:
1. check: `rustc --crate-type lib --emit=metadata --error-format=json`; errors and warnings are
   counted from the JSON diagnostics ("aborting due to" summary lines carry no code and are not
   counted; dead_code is allowed because the harness, not the student, decides what is called);
2. parse (only when the check failed): `-Zparse-crate-root-only` tells a syntax error from a type
   error exactly (stable rustc accepts it under RUSTC_BOOTSTRAP=1);
3. test build: the code plus the tests inside `mod rlaif_hidden_tests { use super::*; ... }`,
   built with `rustc --test`;
4. test run: the binary, filtered to the hidden tests (tests the student wrote itself do not
   count), under CPU, memory and file-size limits, without network where the OS allows it.
Tasks in the MultiPL-E format (harness "main") replace steps 3 and 4: the code plus the task's
`fn main()` of assertions is built as a program and run; it is one test, passed on exit code 0.

Expected failures (syntax errors, failing tests, timeouts) are fields of the returned
`RustResult`; `sandbox_error` is set only when the harness itself failed, so that the sample is
left out of the reward rather than scored as bad code.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

from .config import RustConfig
from .sandbox import Limits, ProcessResult, run_sandboxed, scrubbed_env
from .types import HARNESSES, RustResult

HIDDEN_TESTS_MODULE = "rlaif_hidden_tests"
_SUMMARY = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")
_RUNNING = re.compile(r"^running (\d+) tests?$", re.MULTILINE)
_PASSED_LINE = re.compile(r"^test \S+ \.\.\. ok$", re.MULTILINE)
# dead_code is allowed: the harness, not the student, decides which functions get called.
CHECK_FLAGS = ("--crate-type", "lib", "--emit=metadata", "--error-format=json", "-A", "dead_code")
PARSE_FLAGS = ("--crate-type", "lib", "-Zparse-crate-root-only")


class RustToolchainError(RuntimeError):
    """rustc is missing or broken: nothing can be scored, so the run must not start."""


@dataclass(frozen=True)
class Toolchain:
    rustc: str  # the real compiler binary (not a rustup proxy), so no rustup env is needed
    version: str  # e.g. "rustc 1.95.0 (59807616e 2026-04-14)"; part of every cache key later


def find_toolchain(rustc: str = "rustc") -> Toolchain:
    """Locate a working rustc or raise RustToolchainError saying how to get one."""
    path = shutil.which(rustc)
    if path is None:
        raise RustToolchainError(
            f"rustc not found (rust.rustc={rustc!r}). Install Rust (https://rustup.rs) or point "
            "rust.rustc at a rustc binary."
        )
    try:
        version = _run_quick([path, "--version"]).strip()
        sysroot = _run_quick([path, "--print", "sysroot"]).strip()
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        raise RustToolchainError(f"{path} does not run: {exc}") from exc
    real = Path(sysroot) / "bin" / "rustc"
    return Toolchain(rustc=str(real) if real.exists() else path, version=version)


def _run_quick(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"exit code {done.returncode}")
    return done.stdout


def test_program(code: str, tests: str) -> str:
    """The source the hidden tests are built from: the student's code, then the tests."""
    return f"{code}\n\n#[cfg(test)]\nmod {HIDDEN_TESTS_MODULE} {{\n    use super::*;\n{tests}\n}}\n"


def main_harness_program(code: str, tests: str) -> str:
    """The program a "main"-harness task runs: the code, then the task's `fn main()` of asserts."""
    return f"{code}\n\n{tests}\n"


class RustJudge:
    """Runs rustc jobs, at most `concurrency` at once (cores - 1 by default)."""

    def __init__(self, toolchain: Toolchain, config: RustConfig, concurrency: int):
        self.toolchain = toolchain
        self.config = config
        self.limiter = anyio.CapacityLimiter(concurrency)
        self._bin_dir = str(Path(toolchain.rustc).parent)

    async def judge(self, code: str, tests: str, harness: str = "libtest") -> RustResult:
        if not code.strip():
            return RustResult(log="no code found in the completion")
        if harness not in HARNESSES:
            raise ValueError(f"unknown test harness {harness!r} (one of {HARNESSES})")
        async with self.limiter:
            workdir = tempfile.mkdtemp(prefix="rlaif-rust-")
            try:
                return await self._job(Path(workdir), code, tests, harness)
            except OSError as exc:
                return RustResult(sandbox_error=f"{type(exc).__name__}: {exc}")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _job(self, workdir: Path, code: str, tests: str, harness: str) -> RustResult:
        seconds = 0.0
        (workdir / "lib.rs").write_text(code)
        check = await self._rustc(workdir, "lib.rs", *CHECK_FLAGS)
        seconds += check.seconds
        if check.timed_out:
            return RustResult(timed_out=True, seconds=seconds, log="rustc timed out")
        diagnostics = parse_diagnostics(check.stderr)
        errors = [d for d in diagnostics if d.level == "error"]
        warnings = [d for d in diagnostics if d.level == "warning"]
        if check.returncode not in (0, 1) or (check.returncode == 1 and not errors):
            return RustResult(
                sandbox_error=f"rustc exited with {check.returncode}",
                seconds=seconds,
                log=check.stderr[-2000:],
            )
        counts = dict(
            errors=len(errors),
            warnings=len(warnings),
            error_codes=tuple(d.code for d in errors if d.code),
            warning_names=tuple(d.code for d in warnings if d.code),
        )
        if errors:
            parse = await self._rustc(
                workdir, "lib.rs", *PARSE_FLAGS, extra_env={"RUSTC_BOOTSTRAP": "1"}
            )
            seconds += parse.seconds
            log = "\n".join(d.rendered for d in errors)[-2000:]
            return RustResult(parsed=parse.returncode == 0, seconds=seconds, log=log, **counts)

        if harness == "main":
            return await self._main_harness(workdir, code, tests, seconds, counts)
        tests_total = len(re.findall(r"#\[test\]", tests))
        if tests_total == 0:
            return RustResult(parsed=True, compiled=True, seconds=seconds, **counts)
        return await self._hidden_tests(workdir, code, tests, tests_total, seconds, counts)

    async def _hidden_tests(
        self, workdir: Path, code: str, tests: str, tests_total: int, seconds: float, counts: dict
    ) -> RustResult:
        """Build the code with the task's tests and run them (the code already type-checks)."""
        (workdir / "tests.rs").write_text(test_program(code, tests))
        build = await self._rustc(workdir, "tests.rs", "--test", "-o", "tests", "-A", "warnings")
        seconds += build.seconds
        if build.returncode != 0:
            # The code type-checks alone but not against the tests: wrong signature or types.
            return RustResult(
                parsed=True,
                compiled=True,
                tests_total=tests_total,
                timed_out=build.timed_out,
                seconds=seconds,
                log=("test build: " + build.stderr)[-2000:],
                **counts,
            )
        run = await run_sandboxed(
            [str(workdir / "tests"), f"{HIDDEN_TESTS_MODULE}::"],
            cwd=str(workdir),
            env=scrubbed_env(str(workdir), RUST_TEST_THREADS="1", RUST_BACKTRACE="0"),
            timeout_s=self.config.timeout_s,
            limits=Limits(
                cpu_s=self.config.test_cpu_s, memory_mb=self.config.test_memory_mb, file_mb=16
            ),
            no_network=True,
        )
        seconds += run.seconds
        total, passed = parse_test_output(run.stdout, tests_total)
        log = "" if passed == total else (run.stdout + run.stderr)[-2000:]
        # Out of CPU time (SIGXCPU from the rlimit) is a timeout too, just measured in CPU.
        timed_out = run.timed_out or run.returncode == -signal.SIGXCPU
        return RustResult(
            parsed=True,
            compiled=True,
            tests_total=total,
            tests_passed=passed,
            timed_out=timed_out,
            seconds=seconds,
            log=log,
            **counts,
        )

    async def _main_harness(
        self, workdir: Path, code: str, tests: str, seconds: float, counts: dict
    ) -> RustResult:
        """Build code + `fn main()` as a program and run it: one test, passed on exit code 0."""
        (workdir / "main.rs").write_text(main_harness_program(code, tests))
        build = await self._rustc(workdir, "main.rs", "-o", "main", "-A", "warnings")
        seconds += build.seconds
        result = dict(parsed=True, compiled=True, tests_total=1, **counts)
        if build.returncode != 0:
            log = ("test build: " + build.stderr)[-2000:]
            return RustResult(timed_out=build.timed_out, seconds=seconds, log=log, **result)
        run = await run_sandboxed(
            [str(workdir / "main")],
            cwd=str(workdir),
            env=scrubbed_env(str(workdir), RUST_BACKTRACE="0"),
            timeout_s=self.config.timeout_s,
            limits=Limits(
                cpu_s=self.config.test_cpu_s, memory_mb=self.config.test_memory_mb, file_mb=16
            ),
            no_network=True,
        )
        seconds += run.seconds
        passed = run.returncode == 0
        return RustResult(
            tests_passed=int(passed),
            timed_out=run.timed_out or run.returncode == -signal.SIGXCPU,
            seconds=seconds,
            log="" if passed else (run.stdout + run.stderr)[-2000:],
            **result,
        )

    async def _rustc(
        self, workdir: Path, source: str, *flags: str, extra_env: dict[str, str] | None = None
    ) -> ProcessResult:
        argv = [self.toolchain.rustc, "--edition", self.config.edition, source, *flags]
        env = scrubbed_env(str(workdir), self._bin_dir, **(extra_env or {}))
        return await run_sandboxed(
            argv,
            cwd=str(workdir),
            env=env,
            timeout_s=self.config.timeout_s,
            max_output_bytes=1024 * 1024,
        )


@dataclass(frozen=True)
class Diagnostic:
    level: str  # "error" or "warning"
    code: str | None  # "E0425" for errors, the lint name for warnings, None for syntax errors
    message: str
    rendered: str


def parse_diagnostics(stderr: str) -> list[Diagnostic]:
    """rustc's JSON diagnostics, without the summary lines ("aborting due to ...")."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        level, message = item.get("level"), item.get("message", "")
        if level not in ("error", "warning"):
            continue  # notes, help and "failure-note" lines
        if item.get("code") is None and _is_summary(message):
            continue
        code = (item.get("code") or {}).get("code")
        found.append(Diagnostic(level, code, message, item.get("rendered") or message))
    return found


def _is_summary(message: str) -> bool:
    return message.startswith("aborting due to") or bool(
        re.fullmatch(r"\d+ warnings? emitted", message)
    )


def parse_test_output(stdout: str, expected_total: int) -> tuple[int, int]:
    """(tests run, tests passed) from libtest's plain output, even when it was cut short."""
    running = _RUNNING.search(stdout)
    total = int(running.group(1)) if running else expected_total
    summary = _SUMMARY.search(stdout)
    passed = int(summary.group(1)) if summary else len(_PASSED_LINE.findall(stdout))
    return total, passed
