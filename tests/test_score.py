"""`python -m rlaif score`: completions in, every reward component out, in order, cached."""

from __future__ import annotations

import json

from tests.conftest import run_cli

VOWELS_OK = (
    "```rust\nfn count_vowels(s: &str) -> usize {\n"
    '    s.chars().filter(|c| "aeiouAEIOU".contains(*c)).count()\n}\n```'
)
VOWELS_WRONG = "fn count_vowels(s: &str) -> usize { s.len() }"
VOWELS_BROKEN = "fn count_vowels(s: &str) -> usize { s.chars().count() as i64 }"  # E0308
PROSE = "I cannot help with that."
INLINE = {
    "id": "add",
    "prompt": "Write `fn add(a: i32, b: i32) -> i32`.",
    "tests": "#[test]\nfn t() { assert_eq!(add(2, 3), 5); }",
    "difficulty": "easy",
}


def mixed_lines(n: int) -> list[dict]:
    kinds = [
        {"task_id": "count_ascii_vowels", "completion": VOWELS_OK},
        {"task_id": "count_ascii_vowels", "completion": VOWELS_WRONG},
        {"task_id": "count_ascii_vowels", "completion": VOWELS_BROKEN},
        {"task_id": "count_ascii_vowels", "completion": PROSE},
        {**INLINE, "completion": "fn add(a: i32, b: i32) -> i32 { a + b }"},
        {**INLINE, "completion": "fn add(a: i32, b: i32) -> i32 { a * b }"},
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def score(tmp_path, input_path, *extra):
    return run_cli(
        "score",
        "--input",
        str(input_path),
        "--set",
        "teacher.provider=none",
        "--set",
        f"cache.dir={tmp_path / 'cache'}",
        *extra,
        timeout=300,
    )


def test_100_mixed_completions_in_order_and_the_second_run_is_cached(tmp_path):
    rows = mixed_lines(100)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    first = score(tmp_path, path, "--output", str(out))
    assert first.returncode == 0, first.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in results] == list(range(1, 101))
    assert [r["task_id"] for r in results] == [r.get("task_id", "add") for r in rows]
    # Six distinct completions: each is compiled once, every repeat is served from the cache.
    assert "rust cache 94 hits, 6 misses" in first.stderr
    ok, wrong, broken, prose = (r["reward"] for r in results[:4])
    assert ok > wrong > broken > prose
    for r in results:
        assert set(r["components"]) >= {"parse", "compile", "errors", "tests", "clippy", "idioms"}
        assert "check_seconds" in r["rust"] and "ast" in r
    second = score(tmp_path, path)
    assert second.returncode == 0, second.stderr
    assert "rust cache 100 hits, 0 misses" in second.stderr
    again = [json.loads(line) for line in second.stdout.splitlines()]
    assert [r["reward"] for r in again] == [r["reward"] for r in results]


def test_bad_lines_name_file_line_and_key(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"task_id": "count_ascii_vowels"}),
                json.dumps({"task_id": "no_such_task", "completion": "x"}),
                "{not json",
                json.dumps({**INLINE, "difficulty": "trivial", "completion": "x"}),
                json.dumps({"task_id": "count_ascii_vowels", "completion": 5}),
            ]
        )
    )
    done = score(tmp_path, path)
    assert done.returncode == 2 and done.stdout == ""
    for expected in (
        f"{path}:1: completion: missing",
        f"{path}:2: task_id: 'no_such_task' is not a task of the dataset",
        f"{path}:3: not valid JSON",
        f"{path}:4: difficulty: 'trivial' is not one of",
        f"{path}:5: completion: expected a string",
    ):
        assert expected in done.stderr


def test_tasks_file_option(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"task_id": "add", "completion": "fn add() {}"}) + "\n")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(INLINE) + "\n")
    done = score(tmp_path, path, "--tasks", str(tasks))
    assert done.returncode == 0, done.stderr
    (result,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["task_id"] == "add" and result["rust"]["compiled"] is True
    assert result["rust"]["tests_passed"] == 0  # the test build fails: add takes no arguments
