"""The rustc job with the real compiler: exact counts, hidden tests, sandbox basics, rewards."""

from __future__ import annotations

import dataclasses
import math
import os

import anyio
import pytest

from rlaif.cache import ResultCache
from rlaif.config import RewardsConfig, RustConfig
from rlaif.data.tasks import load_tasks
from rlaif.judges.rewards import RUST_TERMS, reward_terms
from rlaif.judges.rust.diagnostics import parse_test_output
from rlaif.judges.rust.jobs import RustJudge, find_toolchain
from rlaif.records.metrics import score_metrics
from rlaif.types import TEACHER_OFF, Judgement, Sample, Scored, Task
from tests.conftest import REPO, run_cli

ADD_TESTS = """
#[test]
fn small() { assert_eq!(add(2, 3), 5); }
#[test]
fn negative() { assert_eq!(add(-2, -3), -5); }
#[test]
fn zero() { assert_eq!(add(0, 0), 0); }
"""
CORRECT = "fn add(a: i32, b: i32) -> i32 { a + b }"
WRONG = "fn add(a: i32, b: i32) -> i32 { a - b }"  # passes only `zero`
TYPE_ERRORS = "fn add(a: i32, b: i32) -> i32 { let s: String = 5; a + c }"
SYNTAX_ERROR = "fn add(a: i32, b: i32) -> i32 { a + }"
PROSE = "I am sorry, but I cannot write this function for you."


def judge(code: str, tests: str = ADD_TESTS, **rust):
    config = RustConfig(**rust)
    judge = RustJudge(find_toolchain(), config, concurrency=2)
    return anyio.run(judge.judge, code, tests)


def test_correct_solution_passes_every_hidden_test():
    r = judge(CORRECT)
    assert (r.parsed, r.compiled, r.errors, r.warnings) == (True, True, 0, 0)
    assert (r.tests_passed, r.tests_total) == (3, 3) and r.all_tests_passed


def test_wrong_solution_compiles_and_fails_tests():
    r = judge(WRONG)
    assert r.compiled and r.tests_built and (r.tests_passed, r.tests_total) == (1, 3)
    assert r.compiles_as_solution


def test_code_that_type_checks_without_the_tasks_api_is_not_a_solution():
    # A reply that defines something else (or restates a struct and stops) type-checks alone,
    # but the tests cannot build against it.
    for code in ("fn sum(a: i32, b: i32) -> i32 { a + b }", "fn add(a: i64) -> i64 { a }"):
        r = judge(code)
        assert r.compiled and not r.tests_built and r.tests_total == 3, code
        assert r.tests_passed == 0 and not r.compiles_as_solution
        assert r.log.startswith("test build: ")


def test_type_errors_are_counted_exactly_with_codes():
    r = judge(TYPE_ERRORS)
    assert r.parsed and not r.compiled
    assert r.errors == 2  # E0308 (String = 5) and E0425 (no `c`); "aborting" lines not counted
    assert sorted(r.error_codes) == ["E0308", "E0425"]


def test_syntax_error_does_not_parse():
    r = judge(SYNTAX_ERROR)
    assert not r.parsed and not r.compiled and r.errors == 1 and r.error_codes == ()


def test_warnings_are_counted_by_lint_name():
    r = judge("fn add(a: i32, b: i32) -> i32 { let unused = 1; a + b }")
    assert r.compiled and r.warnings == 1 and r.warning_names == ("unused_variables",)


def test_the_students_own_tests_do_not_count():
    gamed = WRONG + "\n#[cfg(test)] mod mine { #[test] fn always() {} #[test] fn again() {} }"
    r = judge(gamed)
    assert (r.tests_passed, r.tests_total) == (1, 3)


def test_infinite_loop_is_killed_and_reported_as_timed_out():
    code = "fn add(a: i32, b: i32) -> i32 { loop { std::hint::black_box(a); } }"
    r = judge(code, timeout_s=2.0, test_cpu_s=1)
    assert r.compiled and r.timed_out and r.tests_passed == 0 and r.tests_total == 3
    assert r.sandbox_error is None  # the code's endless loop, not rustc's: a failed test


# Constant evaluation that never ends keeps rustc's check busy (the deny-by-default lint that
# would stop it is allowed): a stand-in for rustc running out of time on a loaded machine.
SLOW_TO_CHECK = (
    """#![allow(long_running_const_eval)]
const fn spin(n: u64) -> u64 { let mut i = 0; while i < n { i += 1; } i }
pub const SPUN: u64 = spin(u64::MAX);
"""
    + CORRECT
)


def test_a_rustc_timeout_abstains_is_counted_and_is_not_cached(tmp_path):
    cache = ResultCache(tmp_path, "rust")
    judge = RustJudge(find_toolchain(), RustConfig(timeout_s=0.5), concurrency=1, cache=cache)
    r = anyio.run(judge.judge, SLOW_TO_CHECK, ADD_TESTS)
    assert r.timed_out and r.sandbox_error == "rustc timed out in the check after 0.5 s"
    assert len(cache) == 0  # another try, on a quieter machine, may well compile it
    # No verdict: every rust term abstains (NaN), never the -2 of a broken build.
    components, sources = reward_terms(r, Judgement(abstained=TEACHER_OFF), True, RewardsConfig())
    assert all(math.isnan(components[term]) for term in RUST_TERMS)
    assert math.isnan(sources["rust"])
    task = Task("add", "Write add.", ADD_TESTS, "easy")
    sample = Sample(task, 0, [], [], [], "", SLOW_TO_CHECK, 0, True)
    row = score_metrics([Scored(sample, r, Judgement(abstained=TEACHER_OFF), components, sources)])
    assert (row["rust_timeouts"], row["rust_compile_timeouts"]) == (1, 1)


def test_tests_cannot_see_api_keys_of_the_parent(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
    code = 'fn key() -> Option<String> { std::env::var("ANTHROPIC_API_KEY").ok() }'
    tests = (
        '#[test]\nfn absent() { assert_eq!(key(), None); assert!(std::env::var("HOME").is_ok()); }'
    )
    assert os.environ["ANTHROPIC_API_KEY"]
    r = judge(code, tests)
    assert (r.tests_passed, r.tests_total) == (1, 1), r.log


def test_every_shipped_reference_passes_and_a_todo_stub_fails():
    tasks = load_tasks(REPO / "data/train.jsonl")[:3]
    for task in tasks:
        r = judge(task.reference, task.tests)
        assert r.all_tests_passed and r.warnings == 0, (task.id, r.log)


def test_rewards_order_correct_over_failing_over_broken_over_prose():
    weights = RewardsConfig()
    off = Judgement(abstained="off")

    def reward(code: str) -> float:
        components, sources = reward_terms(judge(code), off, bool(code), weights)
        return sources["rust"]

    stub = "fn add(a: i32, b: i32) -> i32 { 0 }"  # ignores its inputs; passes `zero`
    elsewhere = "fn sum(a: i32, b: i32) -> i32 { a + b }"  # type-checks, tests cannot build
    codes = (CORRECT, WRONG, stub, elsewhere, TYPE_ERRORS, PROSE)
    correct, failing, stubbed, missing_api, broken, prose = (reward(c) for c in codes)
    assert correct > failing > stubbed > missing_api > broken > prose
    # No code at all scores as low as the most broken code, never above it.
    assert reward_terms(judge(""), off, False, weights)[1]["rust"] == weights.per_error * 10


def test_abstaining_teacher_makes_its_term_nan_not_zero():
    components, sources = reward_terms(
        judge(CORRECT), Judgement(abstained="timeout"), True, RewardsConfig()
    )
    assert math.isnan(components["teacher"]) and math.isnan(sources["teacher"])
    # parse + compile + no errors + no warnings + clippy clean + 3/3 tests + all-pass bonus
    assert sources["rust"] == 8 + 10 + 5 + 1 + 1 + 10 + 5


def test_test_output_parser_survives_a_crash_mid_run():
    cut = "running 3 tests\ntest m::a ... ok\ntest m::b ... ok\n"
    assert parse_test_output(cut, 9) == (3, 2)
    assert parse_test_output("", 4) == (4, 0)
    full = "running 2 tests\ntest result: FAILED. 1 passed; 1 failed; 0 ignored"
    assert parse_test_output(full, 2) == (2, 1)


def test_missing_rustc_is_a_clear_start_up_error():
    done = run_cli(
        "--set", "rust.rustc=/nonexistent/rustc", "--set", "student.model=/nonexistent", timeout=60
    )
    assert done.returncode == 2
    assert "rustc not found (rust.rustc='/nonexistent/rustc')" in done.stderr


@pytest.mark.parametrize("tests", ["", "// no tests here"])
def test_code_without_tests_is_only_compiled(tests):
    r = judge(CORRECT, tests)
    assert r.compiled and r.tests_total == 0


def test_clippy_lints_are_counted_by_name_apart_from_rustc_warnings():
    code = "fn add(a: i32, b: i32) -> i32 { let unused = 1; return a + b; }"
    r = judge(code)
    assert r.compiled and r.clippy_ran and r.all_tests_passed
    assert r.warning_names == ("unused_variables",)
    assert r.clippy_names == ("clippy::needless_return",) and r.clippy_lints == 1
    off = judge(code, clippy=False)
    assert not off.clippy_ran and off.clippy_lints == 0 and off.warnings == 1


def test_every_stage_is_timed_and_a_failed_check_skips_the_build():
    ok = judge(CORRECT)
    assert ok.check_seconds > 0 and ok.build_seconds > 0 and ok.run_seconds > 0
    assert ok.seconds == pytest.approx(ok.check_seconds + ok.build_seconds + ok.run_seconds)
    broken = judge(TYPE_ERRORS)
    assert broken.check_seconds > 0 and broken.parse_seconds > 0
    assert broken.build_seconds == 0 and broken.run_seconds == 0 and broken.tests_total == 0


MAIN_TESTS = "fn main() {\n    assert_eq!(add(2, 3), 5);\n    assert_eq!(add(-1, 1), 0);\n}\n"


def test_main_harness_one_test_that_passes_on_exit_code_zero():
    run = lambda code: anyio.run(  # noqa: E731
        RustJudge(find_toolchain(), RustConfig(), 1).judge, code, MAIN_TESTS, "main"
    )
    good, bad = run(CORRECT), run(WRONG)
    assert good.all_tests_passed and (good.tests_passed, good.tests_total) == (1, 1)
    assert bad.compiled and (bad.tests_passed, bad.tests_total) == (0, 1)
    assert "assertion" in bad.log
    # MultiPL-E releases whose test text starts with the `}` closing the open function.
    open_fn = "fn add(a: i32, b: i32) -> i32 {\n    a + b"
    r = anyio.run(
        RustJudge(find_toolchain(), RustConfig(), 1).judge, open_fn, "}\n\n" + MAIN_TESTS, "main"
    )
    assert r.all_tests_passed, r.log
    # A lint inside the task's own main (an unused variable there) is not the student's.
    linted = MAIN_TESTS.replace("fn main() {", "fn main() {\n    let unused = 1;")
    r = anyio.run(RustJudge(find_toolchain(), RustConfig(), 1).judge, CORRECT, linted, "main")
    assert r.all_tests_passed and r.warnings == 0, r


def test_results_are_cached_by_code_tests_and_flags(tmp_path):
    from rlaif.cache import ResultCache

    cache = ResultCache(tmp_path, "rust")
    judge_ = RustJudge(find_toolchain(), RustConfig(), 2, cache)

    async def twice():
        first = [await judge_.judge(CORRECT, ADD_TESTS), await judge_.judge(WRONG, ADD_TESTS)]
        # Four identical jobs at once: one runs, three wait for it and read the cache.
        again = [None] * 4

        async def one(i):
            again[i] = await judge_.judge(CORRECT, ADD_TESTS)

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
        return first, again

    (correct, wrong), again = anyio.run(twice)
    assert not correct.cached and all(r.cached for r in again)
    assert again[0] == dataclasses.replace(correct, cached=True)  # tuples and all rebuilt
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (4, 2, 2)
    other = RustJudge(find_toolchain(), RustConfig(test_cpu_s=3), 1, cache)
    assert other.cache_key_for(CORRECT, ADD_TESTS, "libtest") != judge_.cache_key_for(
        CORRECT, ADD_TESTS, "libtest"
    )
