"""Find the Rust code in a completion: a fenced block when there is one, else the raw text.

Chat models answer with prose around a ```rust block; base models often write bare code. The
rules, in order: the first block fenced as rust/rs; else the first fenced block of any language;
else an opened but never closed fence (the student ran out of tokens) taken to the end; else the
whole text, which rustc then judges as it is (prose fails to parse, and is scored so).

`code_for_task` adds what tasks with a prefix (MultiPL-E's) need: a completion that only continues
the given signature is joined to it, MultiPL-E style (prefix + completion cut at the first stop
token + the closing brace); one that writes the whole function is taken as it is.
"""

from __future__ import annotations

import re

from rlaif.types import Task

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


def code_for_task(task: Task, completion: str) -> str:
    """The program text to judge for `completion` of `task`; "" when there is no code.

    Without a prefix: `extract_code`. With one: the code (fenced or raw) is a whole function when
    it defines `fn <entry_point>`, and is then used as it is; otherwise it continues the prefix,
    e.g. prefix "fn add(x: i32) -> i32 {\n" + raw "    x + 1\n}\nfn main..." gives
    "fn add(x: i32) -> i32 {\n    x + 1\n}".
    """
    if task.prefix is None:
        return extract_code(completion)
    if not completion.strip():
        return ""
    fenced = bool(_FENCE.search(completion) or _OPEN_FENCE.search(completion))
    code = extract_code(completion) if fenced else completion
    if task.entry_point and re.search(rf"\bfn\s+{re.escape(task.entry_point)}\b", code):
        return extract_code(code)
    return task.prefix + _cut(code, task.stop_tokens) + "\n}"


def _cut(text: str, stop_tokens: tuple[str, ...]) -> str:
    """`text` up to the earliest stop token (MultiPL-E's rule; "\n}" ends the function)."""
    ends = [i for i in (text.find(t) for t in stop_tokens) if i >= 0]
    return text[: min(ends)] if ends else text
