"""Adversarial code through the real rustc job: each attack ends as a record, the host stays
healthy, and no process of the job is left behind.

"Left behind" is checked by scanning /proc for a marker unique to the test (no psutil): every
attacking process carries it in its command line.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import anyio
import pytest

from rlaif import sandbox
from rlaif.config import RustConfig
from rlaif.rust import RustJudge, find_toolchain
from rlaif.sandbox import Limits, run_sandboxed, scrubbed_env

JAILED = sandbox.jail_level() == "namespaces"
# A fork bomb is only safe to try where the process limit binds: in the jail, or as a non-root
# user (RLIMIT_NPROC does not bind root).
CAN_BOMB = JAILED or os.geteuid() != 0


def judge(code: str, tests: str, **rust):
    config = RustConfig(**{"timeout_s": 10.0, **rust})
    return anyio.run(RustJudge(find_toolchain(), config, concurrency=1).judge, code, tests)


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


def processes_of_job_uids() -> list[int]:
    """Processes running as any job uid of this test process (jail level only)."""
    first = sandbox.UID_BASE + (os.getpid() % 1000) * sandbox.UIDS_PER_PROCESS
    return [pid for uid in range(first, first + 8) for pid in sandbox.pids_of_uid(uid)]


def host_is_healthy() -> None:
    """Nothing of the job still runs, and a normal job still compiles and passes afterwards."""
    assert processes_of_job_uids() == []
    r = judge("fn one() -> i32 { 1 }", "#[test]\nfn t() { assert_eq!(one(), 1); }")
    assert r.all_tests_passed, r.log


def test_infinite_loop_is_timed_out_and_killed():
    marker = f"rlaif-loop-{uuid.uuid4().hex}"
    code = (
        'fn spin() { let _c = std::process::Command::new("sh").arg("-c")'
        f'.arg("while :; do :; done; : {marker}").spawn(); loop {{ std::hint::black_box(1); }} }}'
    )
    r = judge(code, "#[test]\nfn t() { spin(); }", timeout_s=3.0, test_cpu_s=1)
    assert r.compiled and r.timed_out and r.tests_passed == 0 and r.tests_total == 1
    assert 0 < r.run_seconds < 3.5  # the CPU limit (1 s) or the wall clock (3 s) stopped it
    assert processes_with(marker) == []  # the spawned shell loop died with the job too
    host_is_healthy()


@pytest.mark.skipif(not CAN_BOMB, reason="RLIMIT_NPROC does not bind root outside the jail")
def test_fork_bomb_hits_the_process_limit_and_leaves_nothing():
    marker = f"rlaif-bomb-{uuid.uuid4().hex}"
    code = (
        'fn bomb() { let _ = std::process::Command::new("sh").arg("-c")'
        f'.arg("b() {{ b | b & }}; b; : {marker}").status(); '
        "std::thread::sleep(std::time::Duration::from_secs(2)); }"
    )
    r = judge(code, "#[test]\nfn t() { bomb(); }", timeout_s=4.0)
    assert r.compiled and r.tests_total == 1  # a record, whatever the test's fate
    assert processes_with(marker) == []
    host_is_healthy()


@pytest.mark.skipif(not CAN_BOMB, reason="RLIMIT_NPROC does not bind root outside the jail")
def test_thread_explosion_is_refused_threads_beyond_the_limit():
    code = """
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
    # The test fails (so its log shows the count) when the limit did not stop the spawning.
    tests = '#[test]\nfn t() { let n = explode(); assert!(n < 100, "spawned {n}"); }'
    r = judge(code, tests, test_processes=32)
    assert r.all_tests_passed, r.log
    host_is_healthy()


def test_a_4_gb_allocation_fails_inside_the_memory_limit():
    code = "fn big() -> u8 { let v = vec![7u8; 4 << 30]; v[(4 << 30) - 1] }"
    r = judge(code, "#[test]\nfn t() { assert_eq!(big(), 7); }", test_memory_mb=1024)
    assert r.compiled and r.tests_passed == 0 and r.tests_total == 1
    assert r.run_signal == "SIGABRT", r  # Rust aborts when the allocator says no
    host_is_healthy()


def test_100_mb_to_stdout_is_capped_and_stopped():
    code = (
        "fn flood() { use std::io::Write; let line = [b'x'; 1 << 20]; "
        "let mut out = std::io::stdout(); for _ in 0..100 { let _ = out.write_all(&line); } }"
    )
    r = judge(code, "#[test]\nfn t() { flood(); }")
    assert r.compiled and r.output_capped and r.tests_passed == 0
    assert len(r.log) <= 2000
    host_is_healthy()


def test_the_test_cannot_read_an_api_key_of_the_parent(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    code = 'fn key() -> Option<String> { std::env::var("ANTHROPIC_API_KEY").ok() }'
    r = judge(code, "#[test]\nfn absent() { assert_eq!(key(), None); }")
    assert r.all_tests_passed, r.log
    host_is_healthy()


def test_env_macros_see_the_scrubbed_environment_at_compile_time(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    r = judge('fn key() -> &\'static str { env!("ANTHROPIC_API_KEY") }', "")
    assert r.parsed and not r.compiled and r.errors == 1  # "not defined at compile time"
    code = 'fn key() -> Option<&\'static str> { option_env!("ANTHROPIC_API_KEY") }'
    r = judge(code, "#[test]\nfn none() { assert_eq!(key(), None); }")
    assert r.all_tests_passed, r.log


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
def test_compile_time_file_reads_are_refused_before_rustc_runs(code):
    r = judge(code, "#[test]\nfn t() {}")
    assert r.rejected is not None and "compile time" in r.rejected
    assert not r.compiled and r.check_seconds == 0.0  # rustc never ran


def test_writes_outside_the_job_dir_do_not_reach_the_host():
    name = f"rlaif-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}", f"/root/{name}"]
    code = (
        "fn escape() -> usize {\n"
        + "".join(f'    let _ = std::fs::write("{t}", b"x");\n' for t in targets)
        + '    std::fs::write("inside", b"ok").map(|_| 1).unwrap_or(0)\n}'
    )
    r = judge(code, "#[test]\nfn t() { assert_eq!(escape(), 1); }")
    assert r.all_tests_passed, r.log  # writing inside its own dir works
    assert [t for t in targets if os.path.exists(t)] == []
    host_is_healthy()


@pytest.mark.skipif(not JAILED, reason="the namespace jail needs root, unshare and setpriv")
def test_the_jail_runs_as_its_own_uid_with_empty_homes():
    async def main():
        with sandbox.job() as job:
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


@pytest.mark.skipif(not JAILED, reason="the namespace jail needs root, unshare and setpriv")
def test_a_jail_that_cannot_be_set_up_is_an_error_not_a_result():
    """The harness failed, not the code: callers turn this into `sandbox_error` (a NaN reward).
    A command that exits as the jail's setup would (or prints what it prints) changes nothing."""

    async def main(argv):
        with sandbox.job() as job:
            if argv is None:
                with open(job.fstab, "a") as f:  # a mount that cannot succeed
                    f.write("rlaif-jail /nonexistent-dir/x tmpfs size=1m 0 0\n")
                argv = ["true"]
            return await run_sandboxed(argv, job=job, env=scrubbed_env(job.workdir), timeout_s=10)

    with pytest.raises(RuntimeError, match="the jail could not be set up"):
        anyio.run(main, None)
    faked = anyio.run(main, ["sh", "-c", "echo 'the jail could not be set up' >&2; exit 32"])
    assert faked.returncode == 32


@pytest.mark.skipif(not JAILED, reason="the namespace jail needs root, unshare and setpriv")
def test_no_network_in_the_jail():
    async def main():
        with sandbox.job() as job:
            return await run_sandboxed(
                ["cat", "/proc/net/dev"],
                job=job,
                env=scrubbed_env(job.workdir),
                timeout_s=10,
                no_network=True,
            )

    result = anyio.run(main)
    interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]


def test_the_basic_level_still_judges_code(monkeypatch):
    """Where the jail cannot be built (no root): host filesystem, caller's uid, same record."""
    monkeypatch.setattr(sandbox, "jail_level", lambda: "basic")
    r = judge("fn one() -> i32 { 1 }", "#[test]\nfn t() { assert_eq!(one(), 1); }")
    assert r.all_tests_passed, r.log
    # RLIMIT_NPROC counts the caller's tasks already running, this test's threads included.
    assert sandbox.tasks_of_uid(os.geteuid()) >= threading.active_count()
