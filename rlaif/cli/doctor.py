"""`python -m rlaif doctor`: is this machine ready to train with this config?

Reports rustc and its version, clippy-driver, the sandbox level `rust.sandbox` picks here
(whether it cuts the network, what it leaves uncovered, and one known-good rustc job run through
it), the device torch would use and its thread count, the teacher (provider, model, and whether
its key variable is set: the key itself is never printed), and the cache folder with its size.
`--online` also sends the teacher one grading request for a small known-good solution (one
attempt, no retries: the point is to see the failure) and reports its latency, or its error, or
that it answered off the rubric's format (a teacher that answers but cannot be read would abstain
on every sample). With `teacher.provider: llama-cpp` it starts the local server for that request.

Each line is a `Check`; the exit code is 1 when a required one fails (rustc missing, a sandbox
level that is not available or a job that fails in it, a requested device absent, a required
teacher without its key, or the online request failing), else 0. `train` runs the same sandbox
checks first and refuses to start when they fail: a run whose every rustc job fails would train
blind.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio

from rlaif.config import Config
from rlaif.judges.rust.jobs import (
    RustJudge,
    RustToolchainError,
    Toolchain,
    cpu_count,
    find_toolchain,
)
from rlaif.judges.rust.sandbox_levels import Level, SandboxUnavailable, resolve
from rlaif.types import Task

# The known-good job that proves the sandbox works: it compiles, builds with its test, passes.
SMOKE_CODE = "fn one() -> i32 { 1 }"
SMOKE_TESTS = "#[test]\nfn one_is_one() { assert_eq!(one(), 1); }"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True  # a failed optional check is a warning, not an error

    @property
    def label(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")


def check_rustc(config: Config) -> list[Check]:
    try:
        toolchain = find_toolchain(config.rust.rustc)
    except RustToolchainError as exc:
        return [Check("rustc", False, str(exc)), Check("clippy-driver", False, "no rustc", False)]
    checks = [Check("rustc", True, f"{toolchain.version} ({toolchain.rustc})")]
    clippy = toolchain.clippy  # the one the judge runs: the toolchain's own
    if clippy is None:
        checks.append(
            Check("clippy-driver", False, "not found (`rustup component add clippy`)", False)
        )
        return checks
    try:
        done = subprocess.run([clippy, "--version"], capture_output=True, text=True, timeout=60)
        version = done.stdout.strip() or done.stderr.strip()
        checks.append(Check("clippy-driver", done.returncode == 0, f"{version} ({clippy})", False))
    except (OSError, subprocess.SubprocessError) as exc:
        checks.append(Check("clippy-driver", False, f"{clippy} does not run: {exc}", False))
    return checks


def sandbox_checks(config: Config, toolchain: Toolchain | None) -> tuple[Level | None, list[Check]]:
    """The level `rust.sandbox` resolves to here (None when it cannot), its lines (level,
    network, not covered), and a smoke job through it: a known-good program that must compile
    and pass its test (never from the cache, which would prove nothing)."""
    try:
        level = resolve(config.rust.sandbox)
    except SandboxUnavailable as exc:
        return None, [Check("sandbox", False, str(exc))]
    checks = [
        Check("sandbox", True, level.lines()[0][1]),
        Check("sandbox network", level.network_cut, level.lines()[1][1], required=False),
        Check("sandbox not covered", not level.gaps, level.lines()[2][1], required=False),
    ]
    if toolchain is None:
        return level, [*checks, Check("sandbox job", False, "not run: no rustc", False)]
    judge = RustJudge(toolchain, dataclasses.replace(config.rust, sandbox=level.name), 1)
    result = anyio.run(judge.judge, SMOKE_CODE, SMOKE_TESTS)
    if result.all_tests_passed and result.sandbox_error is None:
        detail = f"a known-good program compiled and passed its test in {result.seconds:.2f} s"
        return level, [*checks, Check("sandbox job", True, detail)]
    why = result.sandbox_error or result.log.strip()[-300:] or "its test did not pass"
    detail = (
        f"a known-good program failed at the {level.name} level: {why}. Every rustc job would "
        "fail alike and the run would train blind; fix the error, or choose another level "
        "with rust.sandbox"
    )
    return level, [*checks, Check("sandbox job", False, detail)]


def check_sandbox(config: Config) -> list[Check]:
    try:
        toolchain = find_toolchain(config.rust.rustc)
    except RustToolchainError:
        toolchain = None
    return sandbox_checks(config, toolchain)[1]


def check_device(config: Config) -> list[Check]:
    import torch

    from rlaif.student.model import StudentLoadError, pick_device

    try:
        device = pick_device(config.student.device)
    except StudentLoadError as exc:
        return [Check("device", False, str(exc))]
    what = str(device)
    if device.type == "cuda":
        what += f" ({torch.cuda.get_device_name(device)})"
    cores = cpu_count()
    return [
        Check("device", True, f"{what} (student.device={config.student.device})"),
        Check(
            "torch", True, f"{torch.__version__}, {torch.get_num_threads()} threads, {cores} cores"
        ),
    ]


def check_teacher(config: Config, environ: Mapping[str, str]) -> list[Check]:
    t = config.teacher
    if t.provider == "none":
        return [Check("teacher", True, "off (teacher.provider is none)", False)]
    if t.provider == "llama-cpp":
        return [check_local_teacher(config)]
    where = f" at {t.base_url}" if t.base_url else ""
    named = f"{t.provider} {t.model}{where}"
    if not environ.get(t.api_key_env):
        why = f"{named}: {t.api_key_env} is not set, so the teacher is off"
        return [
            Check("teacher", False, why + (" (teacher.required)" if t.required else ""), t.required)
        ]
    budget = []
    if t.max_requests:
        budget.append(f"at most {t.max_requests} requests")
    if t.max_dollars:
        budget.append(f"at most ${t.max_dollars:g}")
    limits = f"{t.requests_per_minute:g} req/min, {t.tokens_per_minute:g} tok/min"
    detail = f"{named}: {t.api_key_env} is set; {limits}; " + (", ".join(budget) or "no budget")
    return [Check("teacher", True, detail)]


def check_local_teacher(config: Config) -> Check:
    """The local server can be started: llama-cpp-python installed, the model file known."""
    from rlaif.judges.teacher.local_server import server_installed, server_threads

    t = config.teacher
    named = f"llama-cpp {t.gguf}"
    if not server_installed():
        return Check(
            "teacher",
            False,
            f"{named}: llama-cpp-python is not installed (`make local-teacher`)",
            t.required,
        )
    path = Path(t.gguf).expanduser()
    from rlaif.student.offline import REGISTRY

    if not path.is_file() and t.gguf not in REGISTRY:
        return Check("teacher", False, f"{named}: neither a file nor an offline model", True)
    cached = Path(config.cache.dir) / "models" / f"{t.gguf}.gguf"
    where = str(path) if path.is_file() else f"offline model ({cached})"
    threads = server_threads(t.server_threads, cpu_count())
    return Check("teacher", True, f"{named}: local llama.cpp server, {where}, {threads} threads")


def check_cache(config: Config) -> list[Check]:
    root = Path(config.cache.dir)
    if not root.exists():
        return [Check("cache", True, f"{root} (empty; made on first use)", False)]
    parts = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
        parts.append(f"{sub.name} {size / 2**20:.1f} MiB")
    on = [name for name in ("rust", "teacher") if getattr(config.cache, name)]
    detail = f"{root.resolve()}: {', '.join(parts) or 'empty'}; caching {', '.join(on) or 'off'}"
    return [Check("cache", True, detail, False)]


async def check_online(config: Config, environ: Mapping[str, str]) -> Check:
    """One grading request, one attempt: its latency and whether the reply reads as a verdict,
    or its error (the key redacted from any text)."""
    from rlaif.judges.teacher.providers import API_ERRORS, error_kind
    from rlaif.judges.teacher.rubric import SYSTEM_PROMPT, grading_request, read_verdict
    from rlaif.judges.teacher.setup import make_teacher

    teacher, status = make_teacher(config.teacher, environ)
    if teacher is None:
        return Check("online", False, f"no request sent: {status}")
    key = environ.get(config.teacher.api_key_env, "")
    request = grading_request(PROBE_TASK, PROBE_CODE, "")
    started = time.perf_counter()
    try:
        with anyio.fail_after(teacher.deadline_s):
            reply = await teacher.backend.complete(SYSTEM_PROMPT, request)
        ms = (time.perf_counter() - started) * 1000
    except (*API_ERRORS, TimeoutError) as exc:
        kind = "timeout" if isinstance(exc, TimeoutError) else error_kind(exc)
        text = f"{kind}: {type(exc).__name__}: {exc}"[:300]
        return Check("online", False, text.replace(key, "***") if key else text)
    finally:
        await teacher.aclose()
    said = reply.text.strip().replace("\n", " ")[:80]
    answered = (
        f"answered in {ms:.0f} ms ({reply.input_tokens} tokens in, {reply.output_tokens} out)"
    )
    verdict = read_verdict(reply.text)
    if isinstance(verdict, str):  # the reason the teacher would abstain on every sample
        return Check("online", False, f"{answered} off the rubric's format ({verdict}): {said!r}")
    scores = ", ".join(f"{k} {v:g}" for k, v in verdict.items() if k != "reason")
    return Check("online", True, f"{answered} in the rubric's format: {scores}")


# The online check's request: a small task and a right answer, so a teacher that reads it well
# scores it high (the score is shown, not checked: judging quality is `judge-check`'s job).
PROBE_TASK = Task(
    id="doctor_probe",
    prompt="Write `fn add(a: i32, b: i32) -> i32` returning the sum of `a` and `b`.",
    tests="",
    difficulty="easy",
)
PROBE_CODE = "/// The sum of `a` and `b`.\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"


def run_doctor(
    config: Config, online: bool, environ: Mapping[str, str] = os.environ
) -> list[Check]:
    checks = [*check_rustc(config), *check_sandbox(config)]
    checks += [*check_device(config), *check_teacher(config, environ)]
    checks += check_cache(config)
    if online:
        checks.append(anyio.run(check_online, config, environ))
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.required and not c.ok for c in checks) else 0
