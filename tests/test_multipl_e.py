"""MultiPL-E tasks: loaded from their own JSONL format, judged as programs by the real rustc,
scored, and evaluated by the eval command."""

from __future__ import annotations

import json
import re

import anyio
import pytest

from rlaif.config import RewardsConfig, RustConfig
from rlaif.data.tasks import DataError, load_tasks, task_from_row
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.scoring import Scorer
from rlaif.student.extract import code_for_task
from rlaif.types import Sample
from tests.conftest import REPO, run_cli

FILE = REPO / "tests/data/multipl_e.jsonl"
# Bodies that continue each task's prefix, as a base model would write them (with what MultiPL-E's
# stop token cuts off after the closing brace).
CORRECT_BODIES = {
    "HumanEval_53_add": "    x + y\n}\n\nfn main() {}\n",
    "mbpp_count_vowels": '    s.chars().filter(|c| "aeiouAEIOU".contains(*c)).count()\n}\n',
    "HumanEval_12_longest": (
        "    let mut best: Option<String> = None;\n"
        "    for s in strings {\n"
        "        if best.as_ref().map_or(true, |b| s.len() > b.len()) {\n"
        "            best = Some(s);\n"
        "        }\n"
        "    }\n"
        "    best\n}\n"
    ),
}
WRONG_BODIES = {
    "HumanEval_53_add": "    x - y\n}",  # add(0, 1) == -1: the first assertion fails
    "mbpp_count_vowels": "    s.len()\n}",  # "rhythm" has 6 chars, 0 vowels
    # ">=" keeps the last of equally long strings: "z" instead of "x"
    "HumanEval_12_longest": (
        "    let mut best: Option<String> = None;\n"
        "    for s in strings {\n"
        "        if best.as_ref().map_or(true, |b| s.len() >= b.len()) {\n"
        "            best = Some(s);\n"
        "        }\n"
        "    }\n"
        "    best\n}"
    ),
}


def judge_all(toolchain, codes: list[tuple[str, str]]):
    judge = RustJudge(toolchain, RustConfig(), concurrency=2)

    async def run():
        results = [None] * len(codes)

        async def one(i, code, tests):
            results[i] = await judge.judge(code, tests, "main")

        async with anyio.create_task_group() as tg:
            for i, (code, tests) in enumerate(codes):
                tg.start_soon(one, i, code, tests)
        return results

    return anyio.run(run)


def test_both_test_styles_load_as_main_harness_tasks():
    tasks = {t.id: t for t in load_tasks(FILE)}
    assert list(tasks) == ["HumanEval_53_add", "mbpp_count_vowels", "HumanEval_12_longest"]
    for task in tasks.values():
        assert task.harness == "main" and task.stop_tokens == ("\n}",)
        # Whether the release's tests opened with the function's `}` or not, a task's tests are
        # exactly its `fn main`, and the student sees the prefix but never the tests.
        assert task.tests.startswith("fn main() {")
        assert task.prefix.rstrip().endswith("{") and task.prefix.rstrip() in task.prompt
        assert "assert_eq" not in task.prompt
    assert tasks["HumanEval_53_add"].entry_point == "add"  # found in the prompt
    assert tasks["mbpp_count_vowels"].entry_point == "count_vowels"  # given
    assert tasks["HumanEval_53_add"].difficulty == "medium"  # the default
    assert tasks["HumanEval_12_longest"].difficulty == "hard"  # given


def test_correct_continuations_pass_and_wrong_ones_fail_with_real_rustc(toolchain):
    tasks = load_tasks(FILE)
    codes = [(code_for_task(t, CORRECT_BODIES[t.id]), t.tests) for t in tasks]
    codes += [(code_for_task(t, WRONG_BODIES[t.id]), t.tests) for t in tasks]
    results = judge_all(toolchain, codes)
    for task, good, bad in zip(tasks, results[:3], results[3:], strict=True):
        assert (good.compiled, good.tests_passed, good.tests_total) == (True, 1, 1), (
            task.id,
            good.log,
        )
        assert good.all_tests_passed
        assert (bad.compiled, bad.tests_passed, bad.tests_total) == (True, 0, 1), task.id
        assert "assertion" in bad.log  # the failing assert_eq! is what the log shows


def test_a_fenced_whole_function_passes_too(toolchain):
    (task,) = [t for t in load_tasks(FILE) if t.id == "HumanEval_53_add"]
    reply = "Here you go:\n```rust\nfn add(x: isize, y: isize) -> isize {\n    x + y\n}\n```\n"
    (result,) = judge_all(toolchain, [(code_for_task(task, reply), task.tests)])
    assert result.all_tests_passed


def test_a_type_error_is_counted_and_a_missing_function_fails_the_build(toolchain):
    (task,) = [t for t in load_tasks(FILE) if t.id == "HumanEval_53_add"]
    type_error, other_name = judge_all(
        toolchain,
        [
            (code_for_task(task, '    "x"\n}'), task.tests),  # &str where isize is expected
            ("fn plus(x: isize, y: isize) -> isize { x + y }", task.tests),  # no `add`
        ],
    )
    assert not type_error.compiled and type_error.error_codes == ("E0308",)
    assert type_error.tests_passed == 0
    # The program is the code plus the task's `main`, checked as one: `main` calls `add`, which
    # the code does not define, so it does not compile (E0425) and no test runs.
    assert not other_name.compiled and other_name.error_codes == ("E0425",)
    assert (other_name.tests_passed, other_name.tests_total) == (0, 0)


def test_scorer_judges_a_multipl_e_sample_under_its_harness(toolchain):
    (task,) = [t for t in load_tasks(FILE) if t.id == "mbpp_count_vowels"]
    completion = CORRECT_BODIES[task.id]
    sample = Sample(task, 0, [], [], [], completion, code_for_task(task, completion), 0, True)
    scorer = Scorer(RustJudge(toolchain, RustConfig(), 1), None, RewardsConfig())
    scored = anyio.run(scorer.score_one, sample)
    assert scored.rust.all_tests_passed
    # Compiler: parse 8 + compile 10 + no errors 5 + no warnings 1 + clippy clean 1 + tests
    # 10 * 1/1 + all pass 5 = 40. Syntax tree (one documented fn; chars/filter/count, a closure,
    # a chain): structure 2 * 0.5 = 1; quality 3 * (doc coverage 1 * 0.5) = 1.5; idioms
    # 2 * (iterators 1 + closures 0.7 + chains 0.6) = 4.6; complexity 1 costs nothing. 47.1.
    assert scored.components["idioms"] == pytest.approx(4.6)
    assert scored.reward == pytest.approx(47.1)


ROW = {
    "name": "t",
    "language": "rs",
    "prompt": "fn f() -> i32 {\n",
    "tests": "}\nfn main() { assert_eq!(f(), 1); }",
    "stop_tokens": ["\n}"],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"language": "py"}, "f.jsonl:7: language: 'py' is not Rust"),
        ({"tests": "  "}, "f.jsonl:7: tests: expected a non-empty string"),
        ({"prompt": "fn f() -> i32"}, "f.jsonl:7: prompt: must end with the `{`"),
        ({"prompt": "/// no function here {"}, "f.jsonl:7: prompt: no `fn NAME` in it"),
        ({"stop_tokens": "\n}"}, "f.jsonl:7: stop_tokens: expected a non-empty list"),
        ({"test": "fn main() {}"}, "f.jsonl:7: test: give `tests` or `test`, not both"),
        ({"difficulty": "trivial"}, "f.jsonl:7: difficulty: 'trivial' is not one of"),
        ({"entry_point": "f()"}, "f.jsonl:7: entry_point: expected a Rust function name"),
    ],
)
def test_a_bad_multipl_e_row_names_file_line_and_key(change, message):
    with pytest.raises(DataError, match="^" + re.escape(message)):
        task_from_row({**ROW, **change}, "f.jsonl:7")


def test_a_missing_tests_field_names_both_spellings_problem_in_the_file(tmp_path):
    path = tmp_path / "he.jsonl"
    rows = [ROW, {k: v for k, v in ROW.items() if k != "tests"} | {"name": "u"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=f"{path}:2: tests: missing \\(a MultiPL-E row\\)"):
        load_tasks(path)


def test_eval_command_runs_on_a_multipl_e_file(tiny_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    done = run_cli(
        "eval",
        "--checkpoint",
        str(tiny_model_dir),
        "--tasks",
        str(FILE),
        "--n",
        "2",
        "--k",
        "1",
        "--set",
        "student.max_new_tokens=8",
        "--output",
        str(out),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert rows["all"]["tasks"] == 3 and rows["all"]["samples"] == 6
    assert rows["medium"]["tasks"] == 2 and rows["hard"]["tasks"] == 1
