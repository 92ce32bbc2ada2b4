"""Find the Rust code in a completion: a fenced block when there is one, else the raw text.

Chat models answer with prose around a ```rust block; base models often write bare code. The
rules, in order: the first block fenced as rust/rs; else the first fenced block of any language;
else an opened but never closed fence (the student ran out of tokens) taken to the end; else the
whole text, which rustc then judges as it is (prose fails to parse, and is scored so).
"""

from __future__ import annotations

import re

# An opening fence may follow text on its line ("Here: ```rust"); a closing one starts a line,
# so the ``` of a doc-comment example ("/// ```") does not end the block.
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*)\Z", re.DOTALL)
_RUST_TAGS = {"rust", "rs"}
# Small chat models often open with a stray bare fence right before the real one.
_STRAY_FENCE = re.compile(r"^[ \t]*```[ \t]*\n(?=[ \t]*```[ \t]*\w)", re.MULTILINE)


def extract_code(completion: str) -> str:
    """The code to compile, stripped; "" when the completion is empty."""
    for text in (completion, _STRAY_FENCE.sub("", completion)):
        for tag, body in _FENCE.findall(text):
            if tag.lower() in _RUST_TAGS and body.strip():
                return body.strip()
    blocks = _FENCE.findall(completion)
    for _, body in blocks:
        if body.strip():
            return body.strip()
    unclosed = _OPEN_FENCE.search(completion)
    if unclosed and unclosed.group(2).strip():
        return unclosed.group(2).strip()
    return completion.strip().strip("`").strip()
