"""The documentation site: ``mkdocs build --strict`` from ``mkdocs.yml``, then every link.

The build fails on any warning (a broken link between pages, an anchor that does not
exist, a page left out of the navigation, a link to a repository file that does not
exist). The built pages are then read back: every internal ``href`` and ``src`` must name
a file of the site and, with a fragment, an element of that page with that id; no page may
load a script, a style sheet or an image from outside the site.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"


@dataclass
class Page:
    """What a built page links to and which ids it defines."""

    links: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, url)
    ids: set[str] = field(default_factory=set)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.page.ids.add(value)
            elif name in {"href", "src"}:
                self.page.links.append((tag, name, value))


def read_page(path: Path) -> Page:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector.page


def target_file(site: Path, page: Path, url: str) -> Path:
    """The file of the site an internal URL of ``page`` names."""
    path = unquote(urlsplit(url).path)
    base = site if path.startswith("/") else page.parent
    target = (base / path.lstrip("/")).resolve()
    return target / "index.html" if target.is_dir() or path.endswith("/") else target


def is_external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra (make setup)")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr}"
    assert "WARNING" not in build.stderr, build.stderr
    return out


def test_the_site_builds_strictly_and_every_internal_link_resolves(site: Path) -> None:
    pages = {path: read_page(path) for path in site.rglob("*.html") if path.name != "404.html"}
    assert len(pages) > 40
    broken, outside = [], []
    for path, page in pages.items():
        where = path.relative_to(site)
        for tag, attribute, url in page.links:
            if url.startswith(("mailto:", "data:")):
                continue
            if is_external(url):
                if tag != "a":
                    outside.append(f"{where}: <{tag} {attribute}={url}>")
                continue
            target = path if url.startswith("#") else target_file(site, path, url)
            if not target.is_file():
                broken.append(f"{where}: {url} (no {target})")
                continue
            fragment = urlsplit(url).fragment
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else read_page(target).ids
                if unquote(fragment) not in ids:
                    broken.append(f"{where}: {url} (no element with id {fragment!r})")
    assert not broken, "\n".join(broken)
    assert not outside, "the site loads from outside:\n" + "\n".join(outside)


def test_every_page_of_docs_is_on_the_site(site: Path) -> None:
    missing = []
    for source in DOCS.rglob("*.md"):
        relative = source.relative_to(DOCS).with_suffix("")
        built = (
            relative.parent / "index.html"
            if relative.name in {"README", "index"}
            else relative / "index.html"
        )
        if not (site / built).is_file():
            missing.append(str(source.relative_to(ROOT)))
    assert not missing, missing
    for page in ("index.html", "training/sre/index.html", "specs/ai-solution/index.html"):
        assert (site / page).is_file(), page


def test_repository_links_are_written_as_paths_on_the_site(site: Path) -> None:
    grpc = (site / "grpc" / "index.html").read_text(encoding="utf-8")
    assert ">src/vigie/serving/proto/grpc_predict_v2.proto</code>" in grpc
    assert 'href="../../src/' not in grpc
    training = (site / "training" / "index.html").read_text(encoding="utf-8")
    assert "(<code>README.md</code> in the repository)" in training
    assert 'role="navigation" aria-label="Site"' in training
