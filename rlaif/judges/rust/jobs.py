"""One rustc job per sample: check and lint the code, then build and run the task's hidden tests.

A job is up to four sandboxed processes, each confined at the level `rust.sandbox` picks (see
`sandbox.py` for what each level covers):
1. check: `rustc --emit=metadata --error-format=json`, or `clippy-driver` with the same flags when
   `rust.clippy` is on. clippy-driver is rustc with clippy's lint passes added, so one process
   gives rustc's diagnostics and clippy's lints (measured: at most ~20 ms a job, where a
   separate clippy pass would cost a second check, 70 to 120 ms; bench/RESULTS.md). Errors,
   warnings and clippy lints are counted from the JSON diagnostics ("aborting due to" summary
   lines carry no code and are not counted; dead_code is allowed: the harness, not the student,
   picks what is called);
2. parse (only when the check failed): `-Zparse-crate-root-only` tells a syntax error from a type
   error exactly (stable rustc accepts it under RUSTC_BOOTSTRAP=1);
3. test build, skipped when the check failed. Harness "libtest": the code plus the tests inside
   `mod rlaif_hidden_tests { use super::*; ... }`, built with `rustc --test`. Harness "main"
   (MultiPL-E): the code followed by the task's `fn main()` of asserts, built as a program;
4. test run, under CPU, memory, file-size and process limits, without network where the level
   cuts it. libtest runs only the hidden module (tests the student wrote itself do not count); a
   "main" program is one test that passes when it exits with 0.

Compile-time reads: `include!`, `include_str!`, `include_bytes!` and `#[path = ...]` make rustc
read files. Code that names them is refused before rustc runs (`RustResult.rejected`). Whatever
slips past that scan still runs in the sandbox: at the namespaces level rustc is an unprivileged
uid that sees only files every user can read, the job dir and the toolchain (the posix and
seatbelt levels leave reads open). `env!` and `option_env!` read rustc's
environment, which is the scrubbed one (no API keys), so they are left alone.

Expected failures (syntax errors, failing tests, timeouts, refusals) are fields of the returned
`RustResult`; `sandbox_error` is set only when no verdict could be had, so that the sample is
left out of the reward rather than scored as bad code: the harness itself failed, or rustc ran
out of time (`timed_out` too; under load that says nothing about the code). A test binary that
runs out of time is a failed test. Results are cached by everything that can change them
(`cache_key_for`); timeouts and sandbox errors are not cached (load can cause them).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

from rlaif.cache import InFlight, ResultCache, cache_key
from rlaif.config import CacheConfig, RustConfig
from rlaif.judges.rust import sandbox
from rlaif.judges.rust.diagnostics import parse_diagnostics, parse_test_output
from rlaif.judges.rust.sandbox import Limits, ProcessResult, run_sandboxed, scrubbed_env
from rlaif.judges.rust.sandbox_levels import resolve
from rlaif.types import RustResult

HIDDEN_TESTS_MODULE = "rlaif_hidden_tests"
CACHE_SCHEMA = "rust-v3"  # bump when the meaning of a cached RustResult changes
# dead_code is allowed: the harness, not the student, decides which functions get called.
CHECK_FLAGS = ("--emit=metadata", "--error-format=json", "-A", "dead_code")
PARSE_FLAGS = ("-Zparse-crate-root-only",)
BUILD_FLAGS = ("-A", "warnings")
# rustc and the linker use a few dozen threads at most; this only stops a runaway.
RUSTC_LIMITS = Limits(file_mb=512, processes=256)
LOG_CHARS = 2000
# Macros and attributes that make rustc read a file at compile time. The bare names are matched
# too, so passing them to a macro_rules! macro (`m!(include_str)`) is caught as well.
_COMPILE_TIME_READS = re.compile(
    r"\b(?:include_str|include_bytes)\b|\binclude\s*!|#!?\s*\[[^\]]*\bpath\s*="
)


class RustToolchainError(RuntimeError):
    """rustc is missing or broken: nothing can be scored, so the run must not start."""


@dataclass(frozen=True)
class Toolchain:
    rustc: str  # the real compiler binary (not a rustup proxy), so no rustup env is needed
    version: str  # e.g. "rustc 1.95.0 (59807616e 2026-04-14)"; part of every cache key
    sysroot: str = ""  # kept visible (read-only) inside the jail
    clippy: str | None = None  # clippy-driver of the same toolchain, when installed


def find_toolchain(rustc: str = "rustc") -> Toolchain:
    """Locate a working rustc (and its clippy-driver) or raise RustToolchainError."""
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
    clippy = Path(sysroot) / "bin" / "clippy-driver"
    return Toolchain(
        rustc=str(real) if real.exists() else path,
        version=version,
        sysroot=sysroot,
        clippy=str(clippy) if clippy.exists() else None,
    )


def _run_quick(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"exit code {done.returncode}")
    return done.stdout


def test_program(code: str, tests: str) -> str:
    """The source the libtest harness builds: the student's code, then the hidden tests."""
    return f"{code}\n\n#[cfg(test)]\nmod {HIDDEN_TESTS_MODULE} {{\n    use super::*;\n{tests}\n}}\n"


def main_program(code: str, tests: str) -> str:
    """The source the "main" harness builds: the code, then the task's `fn main()` of asserts.

    Like MultiPL-E's own harness, the tests are appended as they are: in releases whose test text
    starts with the `}` closing the function, the code is the open function (prompt + completion).
    """
    return f"{code}\n{tests}\n"


def compile_time_read(code: str) -> str | None:
    """Why `code` may not be compiled (it reads files at compile time), or None."""
    found = _COMPILE_TIME_READS.search(code)
    if found is None:
        return None
    return f"refused before compiling: {found.group(0).strip()!r} reads files at compile time"


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_concurrency(config: RustConfig) -> int:
    """`rust.concurrency`, or cores - 1 (at least 1) when it is 0: a core stays with torch."""
    return config.concurrency or max(1, cpu_count() - 1)


def rust_cache(config: CacheConfig) -> ResultCache | None:
    """The on-disk cache of rustc results under `cache.dir`, or None when `cache.rust` is off."""
    if not config.rust:
        return None
    return ResultCache(config.dir, "rust", size_limit_mb=config.size_limit_mb)


class RustJudge:
    """Runs rustc jobs, at most `concurrency` at once, through an optional result cache."""

    def __init__(
        self,
        toolchain: Toolchain,
        config: RustConfig,
        concurrency: int,
        cache: ResultCache | None = None,
    ):
        self.toolchain = toolchain
        self.config = config
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.cache = cache
        self.use_clippy = config.clippy and toolchain.clippy is not None
        self.level = resolve(config.sandbox)  # SandboxUnavailable: never a quiet step down
        self._in_flight = InFlight()  # identical jobs at once run once
        self._bin_dir = str(Path(toolchain.rustc).parent)

    def running(self) -> int:
        """Jobs running now (rustc, clippy or a test binary in the sandbox): the CPU they take is
        what torch's thread count leaves them (`rollout.threads.ThreadPolicy`)."""
        return int(self.limiter.borrowed_tokens)

    def cache_key_for(self, code: str, tests: str, harness: str) -> str:
        """Everything that can change a result: toolchain, flags, limits and the sandbox level
        that enforces them (macOS ignores the memory limit), harness, code, tests."""
        c = self.config
        return cache_key(
            CACHE_SCHEMA,
            self.toolchain.version,
            [CHECK_FLAGS, BUILD_FLAGS, c.edition, self.use_clippy],
            [c.timeout_s, c.test_cpu_s, c.test_memory_mb, c.test_processes, self.level.name],
            harness,
            code,
            tests,
        )

    async def judge(self, code: str, tests: str, harness: str = "libtest") -> RustResult:
        if harness not in ("libtest", "main"):
            raise ValueError(f"unknown test harness {harness!r} (libtest or main)")
        if not code.strip():
            return RustResult(log="no code found in the completion")
        reason = compile_time_read(code)
        if reason is not None:
            return RustResult(rejected=reason, log=reason)
        if self.cache is None:
            async with self.limiter:
                return await self._job_in_sandbox(code, tests, harness)
        key = self.cache_key_for(code, tests, harness)
        # The same code being judged now: its result. The cache is read and written off the
        # event loop (`ResultCache.aget`), so a slow disk stalls this job only.
        stored = await self._in_flight.lookup(key, self.cache.aread)
        self.cache.count(stored)
        if stored is not None:
            return dataclasses.replace(result_from_dict(stored), cached=True)
        with self._in_flight.claim(key):
            async with self.limiter:
                result = await self._job_in_sandbox(code, tests, harness)
            if _cacheable(result):
                await self.cache.aset(key, dataclasses.asdict(result))
        return result

    async def _job_in_sandbox(self, code: str, tests: str, harness: str) -> RustResult:
        try:
            kept = (self.toolchain.sysroot,) if self.toolchain.sysroot else ()
            with sandbox.job(self.level, "rlaif-rust-", read_only=kept) as job:
                return await _Job(self, job, code, tests, harness).run()
        except (OSError, RuntimeError) as exc:
            return RustResult(sandbox_error=f"{type(exc).__name__}: {exc}")


def _cacheable(r: RustResult) -> bool:
    return r.sandbox_error is None and not r.timed_out


def result_from_dict(stored: dict) -> RustResult:
    """Rebuild a cached RustResult (JSON-able dicts store tuples as lists)."""
    fields = {f.name for f in dataclasses.fields(RustResult)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in fields}
    return RustResult(**values)


class _Job:
    """One job's stages in order; each returns early with a complete record on failure."""

    def __init__(self, judge: RustJudge, job: sandbox.Job, code: str, tests: str, harness: str):
        self.judge, self.job, self.code, self.tests, self.harness = judge, job, code, tests, harness
        self.config = judge.config
        self.fields: dict = {}  # the RustResult being assembled

    def result(self, **more) -> RustResult:
        self.fields.update(more)
        f = self.fields
        f["seconds"] = sum(f.get(k, 0.0) for k in ("check", "parse", "build", "run"))
        timings = {f"{k}_seconds": f.pop(k) for k in ("check", "parse", "build", "run") if k in f}
        f["log"] = f.get("log", "")[-LOG_CHARS:]
        return RustResult(**f, **timings)

    async def run(self) -> RustResult:
        workdir = Path(self.job.workdir)
        main = self.harness == "main"
        source = "main.rs" if main else "lib.rs"
        text = main_program(self.code, self.tests) if main else self.code
        (workdir / source).write_text(text)
        crate = ("--crate-type", "bin" if main else "lib")
        tool = self.judge.toolchain.clippy if self.judge.use_clippy else None
        check = await self.rustc(source, *crate, *CHECK_FLAGS, binary=tool)
        self.fields["check"] = check.seconds
        if check.timed_out:
            return self.rustc_timed_out("check")
        if check.output_capped:
            return self.result(output_capped=True, log="check stopped: output")
        diagnostics = parse_diagnostics(check.stderr)
        if main:
            # Lints inside the task's own `fn main` are not the student's doing; errors there are
            # (a wrong signature breaks the calls), so they stay.
            last = self.code.count("\n") + 1
            diagnostics = [d for d in diagnostics if d.level == "error" or (d.line or 0) <= last]
        errors = [d for d in diagnostics if d.level == "error" and not d.is_clippy]
        warnings = [d for d in diagnostics if d.level == "warning" and not d.is_clippy]
        lints = [d for d in diagnostics if d.is_clippy]
        if check.returncode not in (0, 1) or (check.returncode == 1 and not errors and not lints):
            return self.result(
                sandbox_error=f"the check exited with {check.returncode}",
                log=check.stderr or check.stdout,
            )
        self.fields.update(
            errors=len(errors),
            warnings=len(warnings),
            error_codes=tuple(d.code for d in errors if d.code),
            warning_names=tuple(d.code for d in warnings if d.code),
        )
        if errors:
            parse = await self.rustc(source, *crate, *PARSE_FLAGS, env={"RUSTC_BOOTSTRAP": "1"})
            log = "\n".join(d.rendered for d in errors)
            return self.result(parsed=parse.returncode == 0, parse=parse.seconds, log=log)
        self.fields.update(
            parsed=True,
            compiled=True,
            clippy_ran=self.judge.use_clippy,
            clippy_lints=len(lints),
            clippy_names=tuple(d.code for d in lints if d.code),
        )
        total = 1 if main else len(re.findall(r"#\[test\]", self.tests))
        if total == 0:
            return self.result()
        return await self.hidden_tests(source if main else None, total)

    async def hidden_tests(self, main_source: str | None, total: int) -> RustResult:
        """Build the code with the task's tests and run them (the code already type-checks)."""
        if main_source is None:
            (Path(self.job.workdir) / "tests.rs").write_text(test_program(self.code, self.tests))
            build = await self.rustc("tests.rs", "--test", "-o", "tests", *BUILD_FLAGS)
            argv = [str(Path(self.job.workdir) / "tests"), f"{HIDDEN_TESTS_MODULE}::"]
        else:
            build = await self.rustc(main_source, "-o", "main", *BUILD_FLAGS)
            argv = [str(Path(self.job.workdir) / "main")]
        self.fields.update(build=build.seconds, tests_total=total)
        if build.timed_out:
            return self.rustc_timed_out("test build")
        if build.returncode != 0:
            # The code type-checks alone but not against the tests: wrong signature or types.
            return self.result(log="test build: " + build.stderr)
        self.fields.update(tests_built=True)
        c = self.config
        run = await run_sandboxed(
            argv,
            job=self.job,
            env=scrubbed_env(self.job.workdir, RUST_TEST_THREADS="1", RUST_BACKTRACE="0"),
            timeout_s=c.timeout_s,
            limits=Limits(
                cpu_s=c.test_cpu_s,
                memory_mb=c.test_memory_mb,
                file_mb=16,
                processes=c.test_processes,
            ),
            no_network=True,
        )
        if main_source is None:
            total, passed = parse_test_output(run.stdout, total)
        else:
            passed = int(run.returncode == 0)
        log = "" if passed == total else run.stdout + run.stderr
        # Out of CPU time (SIGXCPU from the rlimit) is a timeout too, just measured in CPU.
        timed_out = run.timed_out or run.returncode == -signal.SIGXCPU
        return self.result(
            run=run.seconds,
            tests_total=total,
            tests_passed=passed,
            timed_out=timed_out,
            run_signal=sandbox.signal_name(run.returncode),
            output_capped=run.output_capped,
            log=log,
        )

    def rustc_timed_out(self, stage: str) -> RustResult:
        """rustc itself ran out of time: on a loaded machine that says nothing about the code,
        so the verdict is unknown (`sandbox_error`: the rust terms abstain, NaN) rather than
        broken code, and it is not cached. A test binary that runs out of time is the code's
        doing (an endless loop) and stays a failed test."""
        reason = f"rustc timed out in the {stage} after {self.config.timeout_s:g} s"
        return self.result(timed_out=True, sandbox_error=reason, log=reason)

    async def rustc(
        self, source: str, *flags: str, binary: str | None = None, env: dict | None = None
    ) -> ProcessResult:
        judge = self.judge
        argv = [binary or judge.toolchain.rustc, "--edition", self.config.edition, source, *flags]
        return await run_sandboxed(
            argv,
            job=self.job,
            env=scrubbed_env(self.job.workdir, judge._bin_dir, **(env or {})),
            timeout_s=self.config.timeout_s,
            limits=RUSTC_LIMITS,
            max_output_bytes=1024 * 1024,
        )
