"""Adversarial code through the real rustc job, at every sandbox level this machine has.

Each attack is contained, or the level lists it as not covered (`Level.gaps`), and then the
test checks that it really is not: a gap that closes must come off the list, and the list is
what `doctor` and the run's first lines print. Levels: namespaces (Linux as root), seatbelt
(macOS only: skipped elsewhere; its profile text is checked everywhere), posix. The posix level
runs here with prlimit, unshare and setpriv off PATH and an audit hook recording every /proc
path this process opens, standing for a machine that has neither (macOS).

RLIMIT_NPROC does not bind root, so at the posix level as root the fork bomb and the thread
explosion are listed as not covered and not tried; instead they run at the posix level as
`nobody` (setpriv, through tests/sandbox_as_user.py), with a hard process limit around the
whole attempt in case the sandbox's own limit failed.

"Left behind" is checked by scanning /proc (on the test's side) for a marker unique to the
test: every attacking process carries it in its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import pytest

from rlaif.config import RustConfig
from rlaif.judges.rust import jail, sandbox, sandbox_levels, seatbelt
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.rust.sandbox import Limits, run_sandboxed, scrubbed_env
from rlaif.judges.rust.sandbox_levels import Level, SandboxUnavailable
from tests.conftest import REPO

HIDDEN_TOOLS = ("prlimit", "unshare", "setpriv", "nsenter")
AS_USER = str(REPO / "tests" / "sandbox_as_user.py")


# --- levels and the machine each stands for --------------------------------------------------


@pytest.fixture(scope="session")
def path_without_util_linux(tmp_path_factory) -> str:
    """A PATH dir holding every tool of SAFE_PATH but prlimit, unshare, setpriv and nsenter."""
    bin_dir = tmp_path_factory.mktemp("posix-bin")
    for folder in sandbox.SAFE_PATH.split(":"):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bin_dir / entry.name
            if entry.name not in HIDDEN_TOOLS and not target.exists():
                target.symlink_to(entry.path)
    return str(bin_dir)


@pytest.fixture(params=sandbox_levels.LEVELS)
def level(request, monkeypatch, path_without_util_linux, toolchain) -> Level:
    """Each level, skipped where unavailable; `toolchain` is found before PATH is narrowed."""
    why = sandbox_levels.unavailable(request.param)
    if why is not None:
        pytest.skip(f"{request.param}: {why}")
    if request.param == "posix":
        monkeypatch.setenv("PATH", path_without_util_linux)
        monkeypatch.setattr(sandbox, "SAFE_PATH", path_without_util_linux)
        assert [t for t in HIDDEN_TOOLS if shutil.which(t)] == []
    return sandbox_levels.resolve(request.param)


_proc_reads: list[str] | None = None  # a list while a posix job runs: what it opened in /proc
_hooked = False


def _audit(event: str, args: tuple) -> None:
    if _proc_reads is None or event not in ("open", "os.scandir", "os.listdir") or not args:
        return
    path = args[0]
    if isinstance(path, str | bytes | os.PathLike) and os.fsdecode(path).startswith("/proc"):
        _proc_reads.append(os.fsdecode(path))


@contextlib.contextmanager
def no_proc_reads(level: Level):
    """At the posix level: fail if this process opens anything under /proc meanwhile."""
    global _proc_reads, _hooked
    if level.name != "posix":
        yield
        return
    if not _hooked:
        sys.addaudithook(_audit)  # hooks cannot be removed: it stays, idle, for the session
        _hooked = True
    _proc_reads = []
    try:
        yield
        assert _proc_reads == [], f"the posix level read /proc: {_proc_reads[:5]}"
    finally:
        _proc_reads = None


def judge(level: Level, toolchain, code: str, tests: str, **rust):
    config = RustConfig(**{"timeout_s": 10.0, "sandbox": level.name, **rust})
    with no_proc_reads(level):
        return anyio.run(RustJudge(toolchain, config, concurrency=1).judge, code, tests)


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def gone(marker: str, wait_s: float = 2.0) -> bool:
    """No process carries `marker` (killed ones may take a moment to go)."""
    deadline = time.monotonic() + wait_s
    while processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def processes_of_job_uids() -> list[int]:
    """Processes running as any job uid of this test process (namespaces level only)."""
    first = jail.UID_BASE + (os.getpid() % 1000) * jail.UIDS_PER_PROCESS
    return [pid for uid in range(first, first + 8) for pid in jail.pids_of_uid(uid)]


def host_is_healthy(level: Level, toolchain) -> None:
    """Nothing of the job still runs, and a normal job still compiles and passes afterwards."""
    assert processes_of_job_uids() == []
    r = judge(
        level, toolchain, "fn one() -> i32 { 1 }", "#[test]\nfn t() { assert_eq!(one(), 1); }"
    )
    assert r.all_tests_passed, r.log


# --- attacks, at every level -----------------------------------------------------------------


def test_infinite_loop_is_timed_out_and_killed(level, toolchain):
    marker = f"rlaif-loop-{uuid.uuid4().hex}"
    code = (
        'fn spin() { let _c = std::process::Command::new("sh").arg("-c")'
        f'.arg("while :; do :; done; : {marker}").spawn(); loop {{ std::hint::black_box(1); }} }}'
    )
    r = judge(level, toolchain, code, "#[test]\nfn t() { spin(); }", timeout_s=3.0, test_cpu_s=1)
    assert r.compiled and r.timed_out and r.tests_passed == 0 and r.tests_total == 1
    assert 0 < r.run_seconds < 3.5  # the CPU limit (1 s) or the wall clock (3 s) stopped it
    assert gone(marker)  # the spawned shell loop died with the job too
    host_is_healthy(level, toolchain)


def test_fork_bomb_hits_the_process_limit_and_leaves_nothing(level, toolchain):
    if not level.covers("processes"):  # never tried where nothing would stop it
        pytest.skip(f"not covered at {level.name}: {level.gaps['processes']}")
    marker = f"rlaif-bomb-{uuid.uuid4().hex}"
    code = (
        'fn bomb() { let _ = std::process::Command::new("sh").arg("-c")'
        f'.arg("b() {{ b | b & }}; b; : {marker}").status(); '
        "std::thread::sleep(std::time::Duration::from_secs(2)); }"
    )
    r = judge(level, toolchain, code, "#[test]\nfn t() { bomb(); }", timeout_s=4.0)
    assert r.compiled and r.tests_total == 1  # a record, whatever the test's fate
    assert gone(marker)
    host_is_healthy(level, toolchain)


THREADS = """
fn explode() -> usize {
    let mut spawned = 0;
    let mut handles = Vec::new();
    for _ in 0..10_000 {
        let nap = || std::thread::sleep(std::time::Duration::from_secs(3));
        match std::thread::Builder::new().spawn(nap) {
            Ok(h) => { handles.push(h); spawned += 1; }
            Err(_) => break,
        }
    }
    spawned
}
"""


def test_thread_explosion_is_refused_threads_beyond_the_limit(level, toolchain):
    if not level.covers("threads"):
        pytest.skip(f"not covered at {level.name}: {level.gaps['threads']}")
    # The test fails (so its log shows the count) when the limit did not stop the spawning.
    tests = '#[test]\nfn t() { let n = explode(); assert!(n < 100, "spawned {n}"); }'
    r = judge(level, toolchain, THREADS, tests, test_processes=32)
    assert r.all_tests_passed, r.log
    host_is_healthy(level, toolchain)


def test_a_4_gb_allocation_fails_inside_the_memory_limit(level, toolchain):
    if not level.covers("memory"):
        pytest.skip(f"not covered at {level.name}: {level.gaps['memory']}")
    code = "fn big() -> u8 { let v = vec![7u8; 4 << 30]; v[(4 << 30) - 1] }"
    tests = "#[test]\nfn t() { assert_eq!(big(), 7); }"
    r = judge(level, toolchain, code, tests, test_memory_mb=1024)
    assert r.compiled and r.tests_passed == 0 and r.tests_total == 1
    assert r.run_signal == "SIGABRT", r  # Rust aborts when the allocator says no
    host_is_healthy(level, toolchain)


def test_100_mb_to_stdout_is_capped_and_stopped(level, toolchain):
    code = (
        "fn flood() { use std::io::Write; let line = [b'x'; 1 << 20]; "
        "let mut out = std::io::stdout(); for _ in 0..100 { let _ = out.write_all(&line); } }"
    )
    r = judge(level, toolchain, code, "#[test]\nfn t() { flood(); }")
    assert r.compiled and r.output_capped and r.tests_passed == 0
    assert len(r.log) <= 2000
    host_is_healthy(level, toolchain)


def test_the_test_cannot_read_an_api_key_of_the_parent(level, toolchain, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    code = 'fn key() -> Option<String> { std::env::var("ANTHROPIC_API_KEY").ok() }'
    r = judge(level, toolchain, code, "#[test]\nfn absent() { assert_eq!(key(), None); }")
    assert r.all_tests_passed, r.log


def test_env_macros_see_the_scrubbed_environment_at_compile_time(level, toolchain, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    r = judge(level, toolchain, 'fn key() -> &\'static str { env!("ANTHROPIC_API_KEY") }', "")
    assert r.parsed and not r.compiled and r.errors == 1  # "not defined at compile time"
    code = 'fn key() -> Option<&\'static str> { option_env!("ANTHROPIC_API_KEY") }'
    r = judge(level, toolchain, code, "#[test]\nfn none() { assert_eq!(key(), None); }")
    assert r.all_tests_passed, r.log


def test_writes_outside_the_job_dir_do_not_reach_the_host(level, toolchain):
    name = f"rlaif-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}", f"{Path.home()}/{name}"]
    code = (
        "fn escape() -> usize {\n"
        + "".join(f'    let _ = std::fs::write("{t}", b"x");\n' for t in targets)
        + '    std::fs::write("inside", b"ok").map(|_| 1).unwrap_or(0)\n}'
    )
    try:
        r = judge(level, toolchain, code, "#[test]\nfn t() { assert_eq!(escape(), 1); }")
        assert r.all_tests_passed, r.log  # writing inside its own dir works
        reached = [t for t in targets if os.path.exists(t)]
    finally:
        for t in targets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)
    if level.covers("writes"):
        assert reached == []
    else:  # listed as not covered: check that it really is not
        assert f"/tmp/{name}" in reached, level.gaps["writes"]
    host_is_healthy(level, toolchain)


def test_a_private_file_of_the_account_cannot_be_read(level, toolchain, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    key = private / "key"
    key.write_text("sk-ant-private-file")
    key.chmod(0o600)
    code = f'fn peek() -> Option<String> {{ std::fs::read_to_string("{key}").ok() }}'
    r = judge(level, toolchain, code, "#[test]\nfn t() { assert_eq!(peek(), None); }")
    if level.covers("reads"):
        assert r.all_tests_passed, r.log
    else:
        assert r.compiled and r.tests_passed == 0, level.gaps["reads"]


def test_the_network_is_cut_even_to_this_hosts_loopback(level, toolchain):
    with socket.create_server(("127.0.0.1", 0)) as server:  # listening: connects would succeed
        port = server.getsockname()[1]
        code = f'fn reach() -> bool {{ std::net::TcpStream::connect("127.0.0.1:{port}").is_ok() }}'
        r = judge(level, toolchain, code, "#[test]\nfn t() { assert!(!reach()); }")
    if level.network_cut:
        assert r.all_tests_passed, r.log
    else:
        assert r.compiled and r.tests_passed == 0, level.gaps["network"]


def test_a_process_that_leaves_the_group_dies_with_the_job(level, toolchain):
    marker = f"rlaif-leave-{uuid.uuid4().hex}"
    code = (
        "fn leave() { use std::os::unix::process::CommandExt; "
        'let _ = std::process::Command::new("sh").arg("-c")'
        f'.arg("sleep 30; : {marker}").process_group(0).spawn(); }}'
    )
    r = judge(level, toolchain, code, "#[test]\nfn t() { leave(); }")
    assert r.all_tests_passed, r.log
    survivors = [] if gone(marker, wait_s=1.0) else processes_with(marker)
    for pid in survivors:  # the test's own attack, a group leader: ended here with its sleep
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if level.covers("escape"):
        assert survivors == []
    else:
        assert survivors, level.gaps["escape"]


@pytest.mark.parametrize(
    "code",
    [
        'fn secret() -> &\'static str { include_str!("/etc/passwd") }',
        'fn secret() -> &\'static [u8] { include_bytes!("/etc/passwd") }',
        'macro_rules! m { ($i:ident) => { $i!("/etc/passwd") } }\n'
        "fn s() -> &'static str { m!(include_str) }",
        '#[path = "/etc/passwd"]\nmod secret;',
    ],
)
def test_compile_time_file_reads_are_refused_before_rustc_runs(code, toolchain):
    """Every level: the scan runs before any process starts."""
    r = judge(sandbox_levels.resolve("auto"), toolchain, code, "#[test]\nfn t() {}")
    assert r.rejected is not None and "compile time" in r.rejected
    assert not r.compiled and r.check_seconds == 0.0  # rustc never ran


# --- the posix level's process limits, as an unprivileged user ------------------------------


def _python_for(user: str) -> str | None:
    """A Python of this one's version that `user` may run and that may start itself again (the
    posix level runs `sys.executable`): ours may sit in /root."""
    again = "import subprocess, sys; subprocess.run([sys.executable, '-V'], check=True)"
    for candidate in (
        sys.executable,
        f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}",
    ):
        done = subprocess.run(
            ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
            + [candidate, "-c", again],
            capture_output=True,
            cwd="/",
        )
        if done.returncode == 0:
            return candidate
    return None


def _others_may_read(path: Path) -> bool:
    """Whether a user with no rights of its own can read `path`: every folder above it lets
    others through (x) and the path itself lets them read (r)."""
    path = path.resolve()
    through = all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)
    return through and bool(path.stat().st_mode & stat.S_IROTH)


def as_nobody(argv: list[str], processes: int, timeout_s: float = 4.0) -> dict:
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no Python that the user nobody may run")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    if not all(_others_may_read(Path(p)) for p in (AS_USER, site, REPO / "rlaif")):
        # e.g. a checkout under a 0700 temporary folder: nobody cannot reach the code it runs.
        pytest.skip("the checkout or its packages are not readable by the user nobody")
    env = {"PATH": sandbox.SAFE_PATH, "PYTHONPATH": f"{REPO}:{site}", "LANG": "C.UTF-8"}

    def safety_net() -> None:  # should the sandbox's own limit fail, this one still holds
        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))

    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python, AS_USER]
    done = subprocess.run(
        [*command, str(timeout_s), str(processes), "--", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
        preexec_fn=safety_net,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uid"] != 0 and result["proc_reads"] == []
    return result


needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not sys.platform.startswith("linux"),
    reason="runs the posix level as nobody: needs root, Linux and setpriv",
)


@needs_root_and_setpriv
def test_a_fork_bomb_stops_at_the_posix_levels_limit_as_an_ordinary_user():
    # Counted first: background sleeps until fork fails. The job may hold 32 processes besides
    # what nobody ran before (this helper), and the shell is one of them.
    flood = "n=0; while [ $n -lt 200 ]; do sleep 3 & n=$((n+1)); echo $n; done"
    result = as_nobody(["/bin/sh", "-c", flood], 32)
    assert "fork" in result["stderr"].lower(), result  # dash: "Cannot fork"
    assert 24 <= int(result["stdout"].split()[-1]) <= 32, result  # not the safety net's 256
    marker = f"rlaif-bomb-{uuid.uuid4().hex}"
    result = as_nobody(["/bin/sh", "-c", f"b() {{ b | b & }}; b; sleep 2; : {marker}"], 32)
    assert "fork" in result["stderr"].lower(), result  # "Cannot fork": the limit said no
    assert gone(marker)


@needs_root_and_setpriv
def test_a_thread_explosion_stops_at_the_posix_levels_limit_as_an_ordinary_user(toolchain):
    folder = tempfile.mkdtemp(prefix="rlaif-threads-")
    try:
        os.chmod(folder, 0o755)  # nobody runs the program; we (root) build it
        source = Path(folder) / "main.rs"
        source.write_text(THREADS + 'fn main() { println!("spawned {}", explode()); }\n')
        binary = Path(folder) / "explode"
        subprocess.run([toolchain.rustc, "-o", str(binary), str(source)], check=True)
        result = as_nobody([str(binary)], 32, timeout_s=10.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    spawned = int(result["stdout"].split()[-1])
    assert 0 < spawned < 100, result


# --- harness failures are errors, not results ------------------------------------------------


@pytest.mark.skipif(
    sandbox_levels.unavailable("namespaces") is not None, reason="the namespace jail is absent"
)
def test_the_jail_runs_as_its_own_uid_with_empty_homes():
    async def main():
        with sandbox.job(sandbox_levels.resolve("namespaces")) as job:
            return await run_sandboxed(
                ["sh", "-c", "id -u; find /root /home -mindepth 1 | wc -l; ls /tmp; echo $$"],
                job=job,
                env=scrubbed_env(job.workdir),
                timeout_s=10,
                limits=Limits(processes=8),
                no_network=True,
            ), job

    result, job = anyio.run(main)
    uid, root_entries, tmp_listing, pid = result.stdout.split("\n")[:4]
    assert result.returncode == 0, result.stderr
    assert int(uid) == job.uid != 0
    assert root_entries.strip() == "0"  # /root and /home are empty tmpfs mounts in the jail
    assert tmp_listing == Path(job.workdir).parent.name  # only the job's own tree is in /tmp
    assert int(pid) < 50  # a fresh PID namespace: only the jail setup ran before (pid 10 here)
    assert not os.path.exists(job.workdir)  # removed afterwards


@pytest.mark.skipif(
    sandbox_levels.unavailable("namespaces") is not None, reason="the namespace jail is absent"
)
def test_a_jail_that_cannot_be_set_up_is_an_error_not_a_result():
    """The harness failed, not the code: callers turn this into `sandbox_error` (a NaN reward).
    A command that exits as the jail's setup would (or prints what it prints) changes nothing."""

    async def main(argv):
        with sandbox.job(sandbox_levels.resolve("namespaces")) as job:
            if argv is None:
                with open(job.fstab, "a") as f:  # a mount that cannot succeed
                    f.write("rlaif-jail /nonexistent-dir/x tmpfs size=1m 0 0\n")
                argv = ["true"]
            return await run_sandboxed(argv, job=job, env=scrubbed_env(job.workdir), timeout_s=10)

    with pytest.raises(RuntimeError, match="the jail could not be set up"):
        anyio.run(main, None)
    faked = anyio.run(main, ["sh", "-c", "echo 'the jail could not be set up' >&2; exit 32"])
    assert faked.returncode == 32


def test_a_limit_that_cannot_be_set_is_an_error_not_a_result():
    """posix: limited_exec.py says "set" only once every limit is; a command that exits as it
    does on failure (126, the same message) is the command's own result."""

    async def main(argv, limits):
        with sandbox.job(sandbox_levels.resolve("posix")) as job:
            env = scrubbed_env(job.workdir)
            return await run_sandboxed(argv, job=job, env=env, timeout_s=10, limits=limits)

    with pytest.raises(RuntimeError, match="posix sandbox could not start the command"):
        anyio.run(main, ["true"], Limits(file_mb=2**62))  # past what setrlimit can take
    message = "rlaif sandbox: a resource limit could not be set"
    faked = anyio.run(main, ["sh", "-c", f"echo '{message}' >&2; exit 126"], Limits(cpu_s=5))
    assert faked.returncode == 126


def test_a_job_dir_that_cannot_be_made_is_a_sandbox_error(toolchain, monkeypatch, tmp_path):
    """What the run's guard (blind.py) counts: the judge's verdict is unknown, not bad code."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    r = judge(sandbox_levels.resolve("posix"), toolchain, "fn one() -> i32 { 1 }", "")
    assert r.sandbox_error is not None and "gone" in r.sandbox_error


# --- choosing the level ----------------------------------------------------------------------


def test_auto_takes_the_strongest_level_and_says_what_it_passed_over(monkeypatch):
    reasons = {"namespaces": "needs root (this process runs as uid 1000)", "seatbelt": "macOS"}
    monkeypatch.setattr(sandbox_levels, "unavailable", lambda name: reasons.get(name))

    level = sandbox_levels.resolve("auto")

    assert level.name == "posix" and not level.network_cut
    (_, head), (_, network), (_, gaps) = level.lines()
    why = f"namespaces: {reasons['namespaces']}; seatbelt: macOS"
    assert head == f"posix (rust.sandbox=auto; not available: {why})"
    assert network.startswith("NOT cut") and "writes:" in gaps and "at every level" in gaps


def test_a_level_that_is_not_available_is_an_error_not_a_step_down(monkeypatch):
    reasons = {"namespaces": "needs root (this process runs as uid 1000)"}
    monkeypatch.setattr(sandbox_levels, "unavailable", lambda name: reasons.get(name))

    with pytest.raises(SandboxUnavailable, match="needs root") as caught:
        sandbox_levels.resolve("namespaces")
    assert "set rust.sandbox to auto (here: seatbelt)" in str(caught.value)
    with pytest.raises(SandboxUnavailable, match="choose one of auto, namespaces"):
        sandbox_levels.resolve("chroot")


def test_the_seatbelt_profile_denies_the_network_and_writes_outside_the_job_dir(tmp_path):
    """Text only: sandbox-exec itself runs on macOS alone (untested there so far)."""
    (tmp_path / "job").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "job")  # /var/folders -> /private/var/folders

    argv = seatbelt.command(["python", "limited_exec.py"], str(tmp_path / "link"))

    assert argv[:2] == ["/usr/bin/sandbox-exec", "-p"]  # never one found on PATH
    assert argv[3] == f"-DJOB_DIR={tmp_path / 'job'}" and argv[4:] == [
        "--",
        "python",
        "limited_exec.py",
    ]
    rules = [line for line in argv[2].splitlines() if line and not line.startswith(";")]
    assert rules[:4] == ["(version 1)", "(allow default)", "(deny network*)", "(deny file-write*)"]
    # The last matching rule applies: the job dir's allow must come after the deny.
    assert rules[4] == '(allow file-write* (subpath (param "JOB_DIR")))'
    assert not any("network" in rule for rule in rules[3:])
