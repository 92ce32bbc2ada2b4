"""Task files: the shipped ones are valid, and a bad line is named by file:line and field."""

from __future__ import annotations

import json

import pytest

from rlaif.data.tasks import DataError, load_tasks
from rlaif.types import DIFFICULTIES
from tests.conftest import REPO, run_cli

GOOD = {
    "id": "t1",
    "prompt": "Write `fn f() -> i32`.",
    "tests": "#[test] fn a() {}",
    "difficulty": "easy",
}


def test_shipped_task_files_are_valid_and_disjoint():
    train = load_tasks(REPO / "data/train.jsonl")
    held_out = load_tasks(REPO / "data/eval.jsonl")
    assert len(train) + len(held_out) >= 20
    assert not {t.id for t in train} & {t.id for t in held_out}
    assert not {t.prompt for t in train} & {t.prompt for t in held_out}
    for task in train + held_out:
        assert task.difficulty in DIFFICULTIES
        assert task.tests.count("#[test]") >= 3, task.id
        assert task.reference, task.id


def test_each_problem_names_file_line_and_field(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rows = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "id": "t2", "difficulty": "trivial"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "tests"} | {"id": "t3"}),
        json.dumps(GOOD),
        json.dumps({**GOOD, "id": "t4", "extra": 1}),
    ]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        load_tasks(path)
    message = str(info.value)
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: difficulty: 'trivial' is not one of" in message
    assert f"{path}:4: tests: missing" in message
    assert f"{path}:5: id: 't1' already used on line 1" in message
    assert f"{path}:6: extra: unknown field" in message


def test_cli_exits_non_zero_naming_the_malformed_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + '{"id": "t2", "prompt": 5}\n')
    done = run_cli("--set", f"data.train={path}", "--set", "student.model=/nonexistent", timeout=60)
    assert done.returncode == 2
    assert f"{path}:2: prompt: expected a non-empty string" in done.stderr
    assert f"{path}:2: tests: missing" in done.stderr


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot read the task file"):
        load_tasks(tmp_path / "nope.jsonl")
