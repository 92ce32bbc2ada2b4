"""Finding the code in what chat and base models actually write."""

from __future__ import annotations

import pytest

from rlaif.extract import extract_code

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
