"""The rustc job with the real compiler: exact counts, hidden tests, sandbox basics, rewards."""

from __future__ import annotations

import math
import os

import anyio
import pytest

from rlaif.config import RewardsConfig, RustConfig
from rlaif.data import load_tasks
from rlaif.rewards import reward_terms
from rlaif.rust import RustJudge, parse_test_output
from rlaif.types import Judgement
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
    from rlaif.rust import find_toolchain

    judge = RustJudge(find_toolchain(), config, concurrency=2)
    return anyio.run(judge.judge, code, tests)


def test_correct_solution_passes_every_hidden_test():
    r = judge(CORRECT)
    assert (r.parsed, r.compiled, r.errors, r.warnings) == (True, True, 0, 0)
    assert (r.tests_passed, r.tests_total) == (3, 3) and r.all_tests_passed


def test_wrong_solution_compiles_and_fails_tests():
    r = judge(WRONG)
    assert r.compiled and (r.tests_passed, r.tests_total) == (1, 3)


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

    correct, failing, broken, prose = (reward(c) for c in (CORRECT, WRONG, TYPE_ERRORS, PROSE))
    assert correct > failing > broken > prose
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
