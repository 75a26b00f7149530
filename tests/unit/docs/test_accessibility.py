"""The training, architecture and specification pages read well with a screen reader.

Each page has one first-level heading, first, and never skips a heading level; every
image has a text alternative; every Mermaid diagram is followed by a text description;
links say where they lead (no "here", no bare address); and no sentence points at
something by its colour alone. The built pages are checked in a browser by
``tests/e2e/test_report_pages_a11y.py``; these checks read the Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_training import FENCE

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = ("docs/training", "docs/architecture", "docs/specs")
PAGES = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.md"))
HEADING = re.compile(r"^(#{1,6})\s+\S")
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
VAGUE_LINK_TEXTS = {"here", "click here", "this", "this page", "link", "more", "read more"}
COLOUR_ONLY = re.compile(
    r"\b(?:in|the|shown in|marked in) (?:red|green|blue|orange|yellow|grey|gray)\b", re.I
)
DESCRIPTION = "Text description:"


def page_ids() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in PAGES]


def line_problems(number: int, line: str) -> list[str]:
    """Images without a real text alternative, vague link texts, colour as the only cue."""
    problems = []
    for image in IMAGE.finditer(line):
        alt = image.group("alt").strip()
        if len(alt) < 20 or alt.lower() == Path(image.group("src")).stem.lower():
            problems.append(f"line {number}: image {image.group('src')} lacks a real alt text")
    for link in LINK.finditer(line):
        words = link.group("text").strip("` ").lower()
        if words in VAGUE_LINK_TEXTS or re.match(r"^(https?:|www\.)", words):
            problems.append(f"line {number}: link text {link.group('text')!r} says nothing")
    if COLOUR_ONLY.search(line):
        problems.append(f"line {number}: points at something by its colour")
    return problems


def heading_problems(levels: list[tuple[int, int]]) -> list[str]:
    """One first-level heading, first; no level skipped. ``levels``: (line, level)."""
    problems = []
    if not levels or levels[0][1] != 1:
        problems.append("the page does not start with a first-level heading")
    if sum(1 for _, level in levels if level == 1) > 1:
        problems.append("more than one first-level heading")
    for (_, before), (number, level) in zip(levels, levels[1:], strict=False):
        if level > before + 1:
            problems.append(f"line {number}: heading level {level} after level {before}")
    return problems


def structure_problems(text: str) -> list[str]:
    """What keeps a Markdown page from reading well with a screen reader."""
    problems: list[str] = []
    levels: list[tuple[int, int]] = []
    fence_kind: str | None = None  # the language of the open fenced block, if any
    after_mermaid = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            if fence_kind is None:
                fence_kind = line.strip().strip("`~").strip()
            else:
                after_mermaid, fence_kind = fence_kind == "mermaid", None
            continue
        if fence_kind is not None:
            continue
        if after_mermaid and line.strip():
            if not line.startswith(DESCRIPTION):
                problems.append(f"line {number}: a diagram is not followed by {DESCRIPTION!r}")
            after_mermaid = False
        heading = HEADING.match(line)
        if heading:
            levels.append((number, len(heading.group(1))))
        problems += line_problems(number, line)
    if after_mermaid:
        problems.append(f"the last diagram is not followed by {DESCRIPTION!r}")
    return problems + heading_problems(levels)


@pytest.mark.parametrize("page", PAGES, ids=page_ids())
def test_the_page_reads_well_with_a_screen_reader(page: Path) -> None:
    problems = structure_problems(page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_every_architecture_view_has_a_diagram_and_its_description() -> None:
    for name in ("context", "containers", "components", "data-flows", "deployment"):
        text = (ROOT / "docs" / "architecture" / f"{name}.md").read_text(encoding="utf-8")
        assert "```mermaid" in text, name
        assert text.count("```mermaid") == text.count(DESCRIPTION), name


def test_the_checks_catch_what_they_are_for() -> None:
    bad = (
        "## Starts too low\n\n#### Skips a level\n\n![chart](plot.png)\n\n"
        "See [here](x.md) or [https://example.org](https://example.org).\n\n"
        "The late flights are shown in red.\n\n```mermaid\nflowchart LR\n  a --> b\n```\n\n"
        "No description.\n"
    )
    assert structure_problems(bad) == [
        "line 5: image plot.png lacks a real alt text",
        "line 7: link text 'here' says nothing",
        "line 7: link text 'https://example.org' says nothing",
        "line 9: points at something by its colour",
        "line 16: a diagram is not followed by 'Text description:'",
        "the page does not start with a first-level heading",
        "line 3: heading level 4 after level 2",
    ]
    good = (
        "# Title\n\n## Part\n\n```mermaid\nflowchart LR\n  a --> b\n```\n\n"
        "Text description: a to b.\n"
    )
    assert structure_problems(good) == []
