"""The reward formula with hand-computed numbers (pure: no rustc needed), and placeholder
answers to a shipped task scored through `Scorer` with the real rustc."""

from __future__ import annotations

import dataclasses
import math

import anyio
import pytest

from rlaif.config import RewardsConfig, RustConfig
from rlaif.data.tasks import load_tasks
from rlaif.judges.rewards import AST_TERMS, reward_terms
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.rust.syntax import rust_metrics
from rlaif.judges.scoring import Scorer, declared_functions
from rlaif.records.metrics import sample_record, score_metrics
from rlaif.types import Judgement, RustResult, Sample
from tests.conftest import REPO

W = RewardsConfig()
OFF = Judgement(abstained="off")
COMPILED = RustResult(
    parsed=True, compiled=True, tests_total=4, tests_built=True, tests_passed=4, clippy_ran=True
)
IDIOMATIC = """
/// Sums the even numbers.
fn sum_even(xs: &[i64]) -> Option<i64> {
    let total = xs.iter().filter(|x| *x % 2 == 0).sum::<i64>();
    match total { 0 => None, t => Some(t) }
}
"""


def test_every_term_of_a_compiling_idiomatic_solution():
    m = rust_metrics(IDIOMATIC)
    components, sources = reward_terms(COMPILED, OFF, True, W, m)
    assert components == {
        "parse": 8.0,
        "compile": 10.0,
        "errors": 5.0,
        "warnings": 1.0,
        "unused": 0.0,
        "clippy": 1.0,  # clippy ran and found nothing
        "tests": 10.0,  # 4 of 4
        "all_tests": 5.0,
        "structure": 2 * 0.5,  # one function: min(0.5 x 1, 2), times 2
        # Option +0.5, docs 0.5 x 1/1 = 0.5; no Result, no ?, no unsafe, no panic: 1.0 x 3
        "quality": 3.0,
        # iterators 1 + match 0.8 + closure 0.7 + chain 0.6 + turbofish 0.3 = 3.4, times 2
        "idioms": pytest.approx(6.8),
        "complexity": 0.0,
    }
    assert sources["rust"] == pytest.approx(8 + 10 + 5 + 1 + 1 + 10 + 5 + 1 + 3 + 6.8)


def test_warnings_clippy_lints_and_errors_are_weighted_and_capped():
    r = RustResult(parsed=True, compiled=True, warnings=3, clippy_ran=True, clippy_lints=20)
    c, _ = reward_terms(r, OFF, True, W)
    assert c["warnings"] == -1.5  # 3 x -0.5
    assert c["clippy"] == -2.0  # 20 lints, at most 8 counted: 8 x -0.25
    broken = RustResult(parsed=True, errors=25)
    c, _ = reward_terms(broken, OFF, True, W)
    assert c["errors"] == -20.0 and c["warnings"] == 0.0  # 10 errors counted at most: 10 x -2


def test_ast_terms_need_a_passing_test_by_default():
    m = rust_metrics(IDIOMATIC)
    # Broken code that parses and is full of structure earns no syntax-tree terms...
    rich_but_broken = RustResult(parsed=True, errors=1)
    c, s = reward_terms(rich_but_broken, OFF, True, W, m)
    assert [c[t] for t in AST_TERMS] == [0.0, 0.0, 0.0, 0.0]
    assert s["rust"] == 8 - 2  # parse, one error
    # ...nor does code that compiles but passes no test...
    compiles_fails_all = RustResult(parsed=True, compiled=True, tests_total=3, tests_built=True)
    c, _ = reward_terms(compiles_fails_all, OFF, True, W, m)
    assert [c[t] for t in AST_TERMS] == [0.0, 0.0, 0.0, 0.0]
    # ...while one passing test opens the gate, and so does compiling for a task without tests.
    for r in (
        dataclasses.replace(compiles_fails_all, tests_passed=1),
        RustResult(parsed=True, compiled=True),
    ):
        c, _ = reward_terms(r, OFF, True, W, m)
        assert c["structure"] == 1.0 and c["idioms"] == pytest.approx(6.8)
    # The looser gates are there on purpose.
    c, _ = reward_terms(
        compiles_fails_all, OFF, True, dataclasses.replace(W, ast_gate="compile"), m
    )
    assert c["structure"] == 1.0
    c, _ = reward_terms(rich_but_broken, OFF, True, dataclasses.replace(W, ast_gate="parse"), m)
    assert c["structure"] == 1.0 and c["idioms"] == pytest.approx(6.8)


def test_a_compiling_stub_ranks_below_an_honest_failing_attempt_and_above_broken_code():
    # The first learning run's hack (bench/RESULTS.md): `fn parse_percent(s: &str) -> Option<u8>
    # { Some(50) }` compiles, fails its 3 tests, and rustc says `s` is unused.
    stub_code = "fn parse_percent(s: &str) -> Option<u8> { Some(50) }"
    stub = RustResult(
        parsed=True,
        compiled=True,
        warnings=1,
        warning_names=("unused_variables",),
        clippy_ran=True,
        tests_total=3,
        tests_built=True,
    )
    attempt_code = "fn parse_percent(s: &str) -> Option<u8> { s.trim().parse().ok() }"
    attempt = RustResult(
        parsed=True, compiled=True, clippy_ran=True, tests_total=3, tests_built=True
    )
    c, stub_reward = reward_terms(stub, OFF, True, W, rust_metrics(stub_code))
    assert c["unused"] == -3.0 and c["warnings"] == -0.5
    assert c["quality"] == 0.0  # the signature's Option earns nothing while every test fails
    _, attempt_reward = reward_terms(attempt, OFF, True, W, rust_metrics(attempt_code))
    _, broken_reward = reward_terms(RustResult(parsed=True, errors=1), OFF, True, W)
    assert stub_reward["rust"] == 8 + 10 + 5 - 0.5 - 3 + 1  # 20.5, clippy clean
    assert attempt_reward["rust"] == 8 + 10 + 5 + 1 + 1  # 25
    assert broken_reward["rust"] < stub_reward["rust"] < attempt_reward["rust"]
    # A constant that happens to pass some tests (`None` for mostly-invalid inputs) earns the
    # tests' share, but no syntax-tree terms while it ignores its input.
    lucky = dataclasses.replace(stub, tests_passed=2)
    c, _ = reward_terms(lucky, OFF, True, W, rust_metrics(stub_code))
    assert c["tests"] == pytest.approx(20 / 3) and c["quality"] == 0.0 and c["structure"] == 0.0


def test_compile_pays_only_for_code_that_builds_with_the_tasks_tests():
    # The first learning run's other trick: restate the task's struct and stop. It type-checks,
    # but the tests cannot build (the function they call is missing).
    struct_only = RustResult(parsed=True, compiled=True, clippy_ran=True, tests_total=3)
    c, s = reward_terms(struct_only, OFF, True, W)
    assert c["compile"] == 0.0 and s["rust"] == 8 + 5 + 1 + 1  # 15
    _, broken = reward_terms(RustResult(parsed=True, errors=1), OFF, True, W)
    built = dataclasses.replace(struct_only, tests_built=True)
    _, honest_failure = reward_terms(built, OFF, True, W)
    assert broken["rust"] < s["rust"] < honest_failure["rust"] == 25
    # A task without tests pays for type-checking alone.
    c, _ = reward_terms(RustResult(parsed=True, compiled=True), OFF, True, W)
    assert c["compile"] == 10.0


def test_panics_cost_down_to_the_quality_floor():
    m = rust_metrics("fn f(x: Option<i32>) -> i32 { x.unwrap() }")
    c, _ = reward_terms(COMPILED, OFF, True, W, m)
    # Option +0.5, one panic -2 -> -1.5, times 3
    assert c["quality"] == -4.5
    many = rust_metrics("fn f(x: Option<i32>) -> i32 { x.unwrap() + x.unwrap() + x.unwrap() }")
    c, _ = reward_terms(COMPILED, OFF, True, W, many)
    assert c["quality"] == -6.0  # 0.5 - 6 = -5.5, floored at -2, times 3


def test_complexity_above_the_threshold_costs():
    branches = "".join(f"    if x == {i} {{ return {i}; }}\n" for i in range(14))
    m = rust_metrics(f"fn f(x: i32) -> i32 {{\n{branches}    0\n}}")
    assert m.complexity == 15  # 1 + 14 ifs
    c, _ = reward_terms(COMPILED, OFF, True, W, m)
    assert c["complexity"] == pytest.approx(-0.5)  # -1 x (15 - 10) / 10


def test_no_code_and_refused_code_score_as_the_most_broken_code():
    refused = RustResult(rejected="refused before compiling: 'include_str' ...")
    for r, has_code in ((RustResult(), False), (refused, True)):
        c, s = reward_terms(r, OFF, has_code, W, rust_metrics("fn main() {}"))
        assert s["rust"] == -20.0  # 10 errors' worth, and nothing else
        assert [c[t] for t in AST_TERMS] == [0.0, 0.0, 0.0, 0.0]


def test_a_sandbox_failure_is_unknown_not_bad():
    c, s = reward_terms(RustResult(sandbox_error="boom"), OFF, True, W, rust_metrics("fn a() {}"))
    assert all(math.isnan(v) for v in c.values()) and math.isnan(s["rust"])


def test_placeholder_answers_score_as_no_code_below_any_broken_reply(toolchain):
    # A real eval task, `fn parse_percent(s: &str) -> Option<u8>`, whose 3 tests each hold an
    # answer that is not `None`, so none of these replies passes one.
    task = next(t for t in load_tasks(REPO / "data/eval.jsonl") if t.id == "parse_percentage")
    assert declared_functions(task) == {"parse_percent"}
    sig = "fn parse_percent(s: &str) -> Option<u8>"
    placeholders = [
        f"{sig} {{ {body} }}"
        for body in ("todo!()", "unimplemented!()", "unreachable!()", 'panic!("x")')
        + ("Some(50)", "Default::default()", "let _ = s; None")
    ]
    broken = f"{sig} {{ s.len() }}"  # one error: usize is not Option<u8>
    honest = f"{sig} {{ s.parse().ok() }}"  # "50%" is no number: it fails all 3 tests
    codes = [*placeholders, broken, honest]
    scorer = Scorer(RustJudge(toolchain, RustConfig(), concurrency=2), None, W)
    samples = [Sample(task, i, [], [], [], code, code, 0, True) for i, code in enumerate(codes)]
    scored = anyio.run(scorer.score, samples)
    rewards = [s.reward for s in scored]
    assert [s.placeholder for s in scored] == [True] * 7 + [False, False]
    for s in scored[:7]:
        assert s.rust.compiles_as_solution and s.rust.tests_passed == 0, s.sample.code
        assert s.reward == -20.0  # per_error x max_errors, as for no code at all
        assert [s.components[t] for t in AST_TERMS] == [0.0, 0.0, 0.0, 0.0]
    # Not compiling: parse 8, one error -2. The honest failure: parse 8 + compile 10 + no errors
    # 5 + no warnings 1 + clippy clean 1 + no test passed.
    assert scored[7].rust.errors == 1 and rewards[7] == 8 - 2
    assert scored[8].rust.tests_total == 3 and rewards[8] == 8 + 10 + 5 + 1 + 1
    assert max(rewards[:7]) < rewards[7] < rewards[8]
    # Before, the todo!() stub's compile credit put it 14 points above the broken reply:
    # parse 8 + compile 10 + no errors 5 - 0.5 for its one warning - 3 for unused `s` + clippy 1.
    stub = scored[0]
    _, before = reward_terms(stub.rust, stub.judgement, True, W, stub.ast)
    assert before["rust"] == 20.5
    # The metrics count them; samples.jsonl says which.
    assert score_metrics(scored)["placeholder_rate"] == 7 / 9
    assert sample_record(1, stub, 0.0)["placeholder"] is True
