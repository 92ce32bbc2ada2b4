"""Finding the code in what chat and base models actually write."""

from __future__ import annotations

import pytest

from rlaif.student.extract import code_for_task, extract_code
from rlaif.types import Task

CASES = [
    ("Here it is:\n```rust\nfn a() {}\n```\nIt works.", "fn a() {}"),
    ("```rs\nfn a() {}\n```", "fn a() {}"),
    ("Sure: ```rust\nfn a() {}\n```", "fn a() {}"),
    # The stray bare fence small chat models open with (REFERENCE.md).
    ("```\n```rust\nfn a() {}\n```", "fn a() {}"),
    ("Intro\n```\n```rust\nfn a() {}\n```", "fn a() {}"),
    # A rust block wins over an earlier block in another language.
    ("```python\nprint(1)\n```\n```rust\nfn b() {}\n```", "fn b() {}"),
    ("```\nfn c() {}\n```", "fn c() {}"),
    # Cut off by the token limit: everything after the opening fence.
    ("```rust\nfn d() {\n    1", "fn d() {\n    1"),
    # A doc-comment example does not close the block.
    (
        "```rust\n/// ```\n/// d();\n/// ```\nfn d() {}\n```",
        "/// ```\n/// d();\n/// ```\nfn d() {}",
    ),
    ("fn raw() -> i32 { 1 }", "fn raw() -> i32 { 1 }"),
    ("", ""),
]


@pytest.mark.parametrize(("completion", "code"), CASES)
def test_extract_code(completion, code):
    assert extract_code(completion) == code


# code_for_task: what gets judged for a task that gives a prefix (MultiPL-E) and for one that does
# not. The prefix ends with the `{` that opens the body, as MultiPL-E's prompts do.
PREFIX = "/// x plus one\nfn inc(x: i32) -> i32 {\n"
PREFIXED = Task(
    id="inc",
    prompt="Complete inc",
    tests="fn main() {}",
    difficulty="easy",
    harness="main",
    prefix=PREFIX,
    entry_point="inc",
    stop_tokens=("\n}",),
)
PLAIN = Task(id="p", prompt="Write inc", tests="#[test] fn t() {}", difficulty="easy")

PREFIX_CASES = [
    # A raw continuation: cut at the first "\n}" (what follows it is dropped), then closed.
    ("    x + 1\n}\n\nfn main() { junk", PREFIX + "    x + 1\n}"),
    # A continuation that stopped before the closing brace (the generator's stop): closed too.
    ("    x + 1", PREFIX + "    x + 1\n}"),
    # A fenced whole function (what chat models write): taken as it is, prefix not repeated.
    (
        "Sure:\n```rust\nfn inc(x: i32) -> i32 {\n    x + 1\n}\n```\n",
        "fn inc(x: i32) -> i32 {\n    x + 1\n}",
    ),
    # The whole function written raw, without a fence: taken as it is.
    ("fn inc(x: i32) -> i32 { x + 1 }", "fn inc(x: i32) -> i32 { x + 1 }"),
    # A fence holding only the body: it continues the prefix.
    ("```rust\n    x + 1\n}\n```", PREFIX + "x + 1\n}"),
    # `fn increment` is not `fn inc`: still a continuation of the prefix.
    ("    increment(x)\n}\nfn increment(x: i32) -> i32 { x + 1 }", PREFIX + "    increment(x)\n}"),
    ("", ""),
    ("  \n ", ""),
]


@pytest.mark.parametrize(("completion", "code"), PREFIX_CASES)
def test_code_for_a_prefix_task(completion, code):
    assert code_for_task(PREFIXED, completion) == code


def test_code_for_a_libtest_task_is_the_extracted_code():
    for completion, code in CASES:
        assert code_for_task(PLAIN, completion) == code
