"""The README and docs/ stay a true map: every relative link reaches a file and, when it names a
section, a heading of that file; every make target is documented. (The configuration reference is
kept equal to the code by tests/test_config.py.)"""

from __future__ import annotations

import re

from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)


def pages() -> list:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench/RESULTS.md"]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(file) -> set[str]:
    return {anchor(h) for h in HEADING.findall(file.read_text())}


def broken_links(page, root=REPO) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, section = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}: ({target})"
        if not file.exists():
            broken.append(f"{where} no such file")
        elif section and file.suffix == ".md" and section not in headings(file):
            broken.append(f"{where} no such heading in {file.name}")
    return broken


def test_every_relative_link_reaches_a_file_and_heading():
    assert len(pages()) > 5
    broken = [problem for page in pages() for problem in broken_links(page)]
    assert broken == []


def test_the_link_checker_catches_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Real heading (with `code`)\n")
    page.write_text(
        "[ok](other.md#real-heading-with-code) [gone](missing.md) [bad](other.md#nope) "
        "[web](https://example.com/#x)\n"
    )
    problems = broken_links(page, root=tmp_path)
    assert problems == [
        "page.md: (missing.md) no such file",
        "page.md: (other.md#nope) no such heading in other.md",
    ]


def test_every_make_target_is_in_the_command_line_page():
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split()
    documented = (REPO / "docs/command-line.md").read_text()
    assert len(phony) > 8
    assert [t for t in phony if f"`make {t}" not in documented] == []
