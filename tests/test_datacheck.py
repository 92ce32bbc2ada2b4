"""`data check` with the real rustc: good tasks pass, and each kind of bad task is named."""

from __future__ import annotations

import json
from collections import Counter

import anyio
import pytest

from rlaif.config import RustConfig
from rlaif.data.check import (
    check_files,
    constant_of,
    duplicate_prompts,
    free_fn_signatures,
    static_problems,
    stub_of,
)
from rlaif.data.tasks import load_tasks
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.rust.syntax import placeholder_answer, rust_metrics
from rlaif.judges.scoring import declared_functions
from tests.conftest import REPO, run_cli

DOUBLE = {
    "id": "double_it",
    "difficulty": "easy",
    "prompt": "Write a Rust function `fn double(x: i64) -> i64` that returns twice `x`.",
    "tests": """#[test]
fn small() {
    assert_eq!(double(2), 4);
    assert_eq!(double(0), 0);
}
#[test]
fn negative() {
    assert_eq!(double(-5), -10);
}""",
    "reference": "fn double(x: i64) -> i64 {\n    x * 2\n}\n",
}
LABEL = {
    "id": "label_struct",
    "difficulty": "medium",
    "prompt": "Define `struct Label { text: String }` with `impl Label { fn new(text: &str) -> "
    "Self; fn shout(&self) -> String }`, where `shout` returns the text in upper case followed "
    "by `!`, and write `fn shout_all(labels: &[Label]) -> Vec<String>`.",
    "tests": """#[test]
fn one() {
    assert_eq!(Label::new("hi").shout(), "HI!");
}
#[test]
fn many() {
    let ls = [Label::new("a"), Label::new("{b}")];
    assert_eq!(shout_all(&ls), vec!["A!", "{B}!"]);
    assert!(shout_all(&[]).is_empty());
}""",
    "reference": """struct Label {
    text: String,
}

impl Label {
    fn new(text: &str) -> Self {
        Label { text: text.to_string() }
    }

    fn shout(&self) -> String {
        format!("{}!", self.text.to_uppercase())
    }
}

fn shout_all(labels: &[Label]) -> Vec<String> {
    labels.iter().map(Label::shout).collect()
}
""",
}


def write(path, *rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def judge(toolchain) -> RustJudge:
    return RustJudge(toolchain, RustConfig(), concurrency=2)


def check(judge, *paths):
    return anyio.run(check_files, list(paths), judge)


def test_stub_replaces_every_body_and_keeps_declarations():
    source = """trait Named {
    fn name(&self) -> String;
    fn greet(&self) -> String { format!("hi {}", self.name()) }
}
// a comment with fn fake() { and a brace
struct P { f: fn(i32) -> i32 }
fn tricky<'a>(mut s: &'a str) -> &'a str where 'a: 'a, {
    let _brace = "}{"; let _c = '}'; let _r = r#"fn x() {"#;
    fn inner() {}
    s
}
"""
    stub = stub_of(source)
    # Two bodies became todo!() and the trait's declaration, comment and fn-pointer field stayed.
    assert stub.count("todo!()") == 2
    assert "fn name(&self) -> String;" in stub
    assert "// a comment with fn fake() { and a brace" in stub
    assert "struct P { f: fn(i32) -> i32 }" in stub
    assert "fn tricky<'a>(mut s: &'a str) -> &'a str where 'a: 'a, { todo!() }" in stub
    assert "inner" not in stub and "}{" not in stub
    # Only the top-level free function is a signature the prompt must give, without
    # `mut s` and without the where clause's trailing comma.
    assert free_fn_signatures(source) == ["fn tricky<'a>(s: &'a str) -> &'a str where 'a: 'a"]


def test_constant_answer_defaults_every_body_but_those_told_to_panic():
    source = "fn a(x: i32) -> i32 {\n    x + 1\n}\nimpl S { fn new() -> Self { S } }\n"
    assert constant_of(source) == (
        "fn a(x: i32) -> i32 { Default::default() }\n"
        "impl S { fn new() -> Self { Default::default() } }\n"
    )
    assert constant_of(source, {1}).endswith("fn new() -> Self { todo!() } }\n")


def test_static_problems_assertions_signature_and_shadowing(tmp_path):
    weak = {**DOUBLE, "tests": "#[test]\nfn a() { assert_eq!(double(1), 2); assert!(true); }"}
    wrong_prompt = {**DOUBLE, "id": "p", "prompt": "Write `fn double(x: i32) -> i32`."}
    shadowing = {**DOUBLE, "id": "s", "tests": DOUBLE["tests"].replace("fn small", "fn double")}
    path = write(tmp_path / "t.jsonl", weak, wrong_prompt, shadowing)
    first, second, third = load_tasks(path)
    assert static_problems(first) == ["tests: 2 assertions, at least 3 needed"]
    assert static_problems(second) == [
        "prompt: does not give the signature `fn double(x: i64) -> i64`"
    ]
    assert static_problems(third) == [
        "tests: test `double` shadows the function `double` it should test"
    ]


def test_eval_prompts_that_repeat_train_prompts_are_found(tmp_path):
    train = write(tmp_path / "train.jsonl", DOUBLE, LABEL)
    same = {**DOUBLE, "id": "again", "prompt": "  " + DOUBLE["prompt"].upper().replace(" ", "\n")}
    # LABEL's prompt has 39 words, so 37 word 3-grams; changing its last word changes only the
    # last 3-gram: 36 shared of 38 in the union, Jaccard 0.947 >= 0.8.
    near = {**LABEL, "id": "near", "prompt": LABEL["prompt"].replace("Vec<String>`.", "Vec<_>`.")}
    other = {**DOUBLE, "id": "other", "prompt": "Write `fn triple(x: i64) -> i64`."}
    evals = write(tmp_path / "eval.jsonl", same, near, other)
    problems = duplicate_prompts(load_tasks(train), load_tasks(evals))
    assert [(p.task_id, p.what.split(" (")[0]) for p in problems] == [
        ("again", "prompt: the same as double_it"),
        ("near", "prompt: nearly the same as label_struct"),
    ]
    assert problems[0].where == f"{evals}:1" and f"{train}:1" in problems[0].what
    assert "similarity 0.95" in problems[1].what


def test_good_files_pass_from_the_command_line(tmp_path):
    train = write(tmp_path / "train.jsonl", DOUBLE, LABEL)
    evals = write(
        tmp_path / "eval.jsonl",
        {
            **DOUBLE,
            "id": "d2",
            "prompt": "Write a Rust function "
            "`fn double(x: i64) -> i64` returning x + x; it must not add a third x.",
        },
    )
    done = run_cli("data", "check", train, evals, "--concurrency", "2", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 tasks in 2 file(s): ok" in done.stdout


def test_each_bad_task_is_named_with_its_line_and_what_failed(judge, tmp_path):
    broken = {**DOUBLE, "id": "broken_ref", "reference": "fn double(x: i64) -> i64 { x * }"}
    warned = {**DOUBLE, "id": "warns", "reference": "fn double(x: i64) -> i64 { let y = 1; x * 2 }"}
    # The reference is right and the test is wrong: 2 * 3 is 6, not 5.
    wrong_test = {
        **DOUBLE,
        "id": "wrong_test",
        "tests": DOUBLE["tests"].replace("(-5), -10", "(3), 5"),
    }
    # The last test calls nothing the student writes, so the todo!() stub passes it.
    vacuous = {
        **DOUBLE,
        "id": "vacuous",
        "tests": DOUBLE["tests"] + "\n#[test]\nfn x() { assert!(1 < 2); }",
    }
    path = write(tmp_path / "bad.jsonl", DOUBLE, broken, warned, wrong_test, vacuous)
    report = check(judge, path)
    assert report.tasks == 5 and not report.ok
    found = {(p.where, p.task_id, p.what.split(":")[0]) for p in report.problems}
    assert found == {
        (f"{path}:2", "broken_ref", "reference"),
        (f"{path}:3", "warns", "reference"),
        (f"{path}:4", "wrong_test", "reference"),
        (f"{path}:5", "vacuous", "stub (todo!() bodies) passes 1 of 3 tests (x)"),
    }
    by_id = {p.task_id: p.what for p in report.problems}
    assert by_id["broken_ref"].startswith("reference: does not compile: ")
    assert by_id["warns"] == "reference: 1 warning(s) (unused_variables)"
    assert by_id["wrong_test"].startswith("reference: passes 1 of 2 tests")


def test_tests_that_a_constant_answer_mostly_passes_are_reported(judge, tmp_path):
    # `false` (bool's default) is right for both odd numbers' tests: 2 of 3 pass.
    parity = {
        "id": "parity",
        "difficulty": "easy",
        "prompt": "Write a Rust function `fn is_even(x: i64) -> bool`.",
        "tests": """#[test]
fn odd() {
    assert!(!is_even(1));
    assert!(!is_even(-3));
}
#[test]
fn more_odd() {
    assert!(!is_even(7));
}
#[test]
fn even() {
    assert!(is_even(0));
}""",
        "reference": "fn is_even(x: i64) -> bool {\n    x % 2 == 0\n}\n",
    }
    # An even number in one odd test leaves the constant 1 of 3: fewer than half, no problem.
    mixed = {**parity, "id": "mixed", "tests": parity["tests"].replace("(7)", "(7) && is_even(8)")}
    # LABEL's `Label::new` returns a `Label`, which has no default: its body falls back to
    # todo!() (the others stay `String::new()` and an empty vector) and every test panics.
    path = write(tmp_path / "t.jsonl", parity, mixed, LABEL)
    report = check(judge, path)
    assert [(p.where, p.task_id) for p in report.problems] == [(f"{path}:1", "parity")]
    what = report.problems[0].what
    assert what.startswith("constant answer (Default::default() bodies) passes 2 of 3 tests (")
    passing = what.split("tests (")[1].split(")")[0]
    assert sorted(passing.split(", ")) == ["more_odd", "odd"]


def test_duplicate_ids_within_and_across_files_fail_the_command(tmp_path):
    same_file = write(tmp_path / "a.jsonl", DOUBLE, {**LABEL, "id": "double_it"})
    done = run_cli("data", "check", same_file, "--concurrency", "2", timeout=120)
    assert done.returncode == 1
    assert f"{same_file}:2: id: 'double_it' already used on line 1" in done.stdout

    train = write(tmp_path / "train.jsonl", LABEL)
    evals = write(tmp_path / "eval.jsonl", {**DOUBLE, "id": "label_struct"})
    done = run_cli("data", "check", train, evals, "--concurrency", "2", timeout=120)
    assert done.returncode == 1
    assert f"{evals}:1: label_struct: id: already used at {train}:1" in done.stdout
    assert "2 tasks in 2 file(s): 1 problem(s)" in done.stdout


def test_shipped_task_files_pass_the_checks_that_need_no_compiler():
    # The rustc half (references pass, stubs fail) runs in CI as `make data-check`.
    train = load_tasks(REPO / "data/train.jsonl")
    held_out = load_tasks(REPO / "data/eval.jsonl")
    assert len(train) >= 200 and len(held_out) >= 60
    problems = [f"{t.source}: {p}" for t in train + held_out for p in static_problems(t)]
    problems += [str(p) for p in duplicate_prompts(train, held_out)]
    assert problems == []
    # A realistic mix, about 40% easy, 40% medium, 20% hard, in both files.
    for tasks in (train, held_out):
        share = Counter(t.difficulty for t in tasks)
        assert share["easy"] >= 0.3 * len(tasks) and share["medium"] >= 0.3 * len(tasks)
        assert share["hard"] >= 0.15 * len(tasks)


def test_no_shipped_reference_is_a_placeholder_and_every_stub_is():
    # The reward's placeholder rule (syntax.placeholder_answer) on known-good code and on the
    # todo!() stubs of it: a reference scored as a placeholder would be a false alarm.
    for task in load_tasks(REPO / "data/train.jsonl") + load_tasks(REPO / "data/eval.jsonl"):
        declared = declared_functions(task)
        assert not placeholder_answer(rust_metrics(task.reference), declared), task.id
        assert placeholder_answer(rust_metrics(stub_of(task.reference)), declared), task.id
