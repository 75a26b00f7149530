"""MkDocs hooks of vigie's documentation site (named by ``hooks:`` in ``mkdocs.yml``).

The pages under ``docs/`` link to files of the repository outside ``docs/`` (a README of
``k8s/``, a ``.proto`` under ``src/``). Such a link works where the repository is browsed,
but the site holds only ``docs/``, so on the site it would lead nowhere. This hook checks
that each such target exists in the repository (a missing one is a warning, which
``mkdocs build --strict`` turns into a failure) and, on the site only, writes the link as
its text followed by the repository path, so that the reader still learns where to look.
Links between pages of ``docs/`` are left to MkDocs, which validates them itself.

After each page is rendered, three accessibility fixes of the theme's HTML: the top bar
becomes a navigation landmark, code blocks take the keyboard's focus (they may scroll
sideways), and long inline code is marked so that it may wrap (``extra.css``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("mkdocs.hooks.vigie")

#: An inline Markdown link (not an image): ``[text](target)``.
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repository_target(target: str, page_dir: Path, docs: Path, repo: Path) -> Path | None:
    """The repository file a link leaves ``docs/`` for, or None for any other link.

    Args:
        target: The link's target as written (``../../k8s/README.md#retraining``).
        page_dir: The folder of the page that holds the link.
        docs: The documentation folder.
        repo: The repository root (the folder of ``mkdocs.yml``).
    """
    if _SCHEME.match(target) or target.startswith(("#", "/")):
        return None
    path = unquote(target.split("#", 1)[0])
    if not path:
        return None
    resolved = (page_dir / path).resolve()
    if resolved.is_relative_to(docs) or not resolved.is_relative_to(repo):
        return None
    return resolved


def _rewrite(match: re.Match[str], page: Any, page_dir: Path, docs: Path, repo: Path) -> str:
    target = match.group("target")
    resolved = repository_target(target, page_dir, docs, repo)
    if resolved is None:
        return match.group(0)
    relative = resolved.relative_to(repo).as_posix()
    if not resolved.exists():
        log.warning(
            "Doc file '%s' links to '%s', which is not a file of the repository",
            page.file.src_uri,
            relative,
        )
        return match.group(0)
    text = match.group("text")
    if text.strip("` ").rstrip("/") in {relative, target.split("#", 1)[0].rstrip("/")}:
        return text
    return f"{text} (`{relative}` in the repository)"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite the links that leave ``docs/`` for a repository file (see the module)."""
    docs = Path(config["docs_dir"]).resolve()
    repo = Path(config["config_file_path"]).resolve().parent
    page_dir = (docs / page.file.src_uri).parent
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            lines.append(line)
            continue
        if fenced:
            lines.append(line)
            continue
        lines.append(_LINK.sub(lambda m: _rewrite(m, page, page_dir, docs, repo), line))
    return "\n".join(lines)


#: The theme's top bar is a plain ``div``; a screen reader lists it among the landmarks
#: only with a navigation role (axe-core's "region" rule checks that every part of a page
#: is in a landmark).
_TOP_BAR = '<div class="navbar fixed-top'
#: A code block wider than the page scrolls sideways; a keyboard reaches it only when it
#: can take the focus (WCAG 2.1.1; axe-core's "scrollable-region-focusable").
_CODE_BLOCK = re.compile(r"<pre(?=[\s>])(?![^>]*\btabindex=)")
#: Inline code long enough to widen a table past the page (a test's node id, a path):
#: marked so that the style sheet lets it wrap anywhere (WCAG 1.4.10, reflow).
_LONG_CODE = re.compile(r"<code>(?=[^<]{20,}</code>)")


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Give the theme's top bar the navigation landmark it lacks, let the keyboard reach
    every code block, and mark long inline code."""
    output = output.replace(
        _TOP_BAR, '<div role="navigation" aria-label="Site" class="navbar fixed-top', 1
    )
    output = _LONG_CODE.sub('<code class="long">', output)
    return _CODE_BLOCK.sub('<pre tabindex="0"', output)
