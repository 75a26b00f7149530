"""The documentation site's MkDocs hooks (``docs/architecture/site/hooks.py``).

Links from ``docs/`` to repository files outside it become the link text and the
repository path on the site; a link to a repository file that does not exist is a warning
(so ``mkdocs build --strict`` fails); every other link, and code blocks, stay as written.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
HOOKS = ROOT / "docs" / "architecture" / "site" / "hooks.py"


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigie_site_hooks", HOOKS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rewrite(hooks: ModuleType, markdown: str, page: str = "training/sre.md") -> Any:
    config = {"docs_dir": str(ROOT / "docs"), "config_file_path": str(ROOT / "mkdocs.yml")}
    page_object = SimpleNamespace(file=SimpleNamespace(src_uri=page))
    return hooks.on_page_markdown(markdown, page_object, config, None)


def test_a_link_to_a_repository_file_becomes_its_text_and_path(hooks: ModuleType) -> None:
    assert rewrite(hooks, "See [the Kubernetes guide](../../k8s/README.md#known-limits).") == (
        "See the Kubernetes guide (`k8s/README.md` in the repository)."
    )
    assert rewrite(hooks, "[`src/vigie/config.py`](../src/vigie/config.py)", "grpc.md") == (
        "`src/vigie/config.py`"
    )


def test_other_links_and_code_blocks_stay_as_written(hooks: ModuleType) -> None:
    kept = (
        "[the runbook](../runbooks/drift.md#vigieservingdown) [act](https://example.org/act) "
        "[top](#what-you-may-do) ![a chart of the year](../closed-loop.png)\n"
        "```\n[the guide](../../k8s/README.md)\n```"
    )
    assert rewrite(hooks, kept) == kept


def test_a_link_to_a_missing_repository_file_is_a_warning(
    hooks: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.vigie"):
        out = rewrite(hooks, "[gone](../../k8s/GONE.md)")
    assert out == "[gone](../../k8s/GONE.md)"
    assert "links to 'k8s/GONE.md', which is not a file of the repository" in caplog.text


def test_landmark_focusable_code_blocks_and_wrapping_long_code(hooks: ModuleType) -> None:
    html = (
        '<body><div class="navbar fixed-top navbar-expand-lg">x</div>'
        '<pre><code>a</code></pre><pre class="x"><code>b</code></pre>'
        '<pre tabindex="-1">c</pre><prefix>d</prefix>'
        "<td><code>data.load</code> <code>tests/unit/docs/test_site_hooks.py::test_x</code></td>"
        "</body>"
    )
    assert hooks.on_post_page(html, None, None) == (
        '<body><div role="navigation" aria-label="Site" class="navbar fixed-top '
        'navbar-expand-lg">x</div>'
        '<pre tabindex="0"><code>a</code></pre><pre tabindex="0" class="x"><code>b</code></pre>'
        '<pre tabindex="-1">c</pre><prefix>d</prefix>'
        '<td><code>data.load</code> <code class="long">tests/unit/docs/test_site_hooks.py::test_x'
        "</code></td></body>"
    )
