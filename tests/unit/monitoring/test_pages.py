"""The drift sidecar's report pages: what they show, whatever the results lack."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any

import pytest

from vigie.monitoring.page_views import MAX_WINDOWS, anchor, features_view, natural_key
from vigie.monitoring.pages import render_index, render_not_found, render_window


class Page(HTMLParser):
    """The parts of a page the tests look at: elements with attributes, headings, text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.headings: list[tuple[int, str]] = []
        self.text: list[str] = []
        self._heading: int | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.headings.append((self._heading, ""))

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._heading is not None:
            level, text = self.headings[-1]
            self.headings[-1] = (level, text + data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def links(self) -> list[str]:
        return [a["href"] for a in self.all("a")]

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def feature(name: str, score: float, drifted: bool, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "numeric",
        "stattest": "wasserstein",
        "score": score,
        "threshold": 0.1,
        "drifted": drifted,
        "missing": 0,
    } | extra


def window(model: str = "flight_delay", version: str = "3", index: int = 12, **extra: Any):
    """A complete window result, as the sidecar produces it."""
    result: dict[str, Any] = {
        "model": model,
        "version": version,
        "window_id": f"{index:06d}",
        "kind": "count",
        "start": "2013-05-01T06:00:00+00:00",
        "end": "2013-05-09T22:59:00+00:00",
        "analysed_at": "2013-05-10T00:01:02+00:00",
        "rows": 5000,
        "reference_rows": 5000,
        "drift": {
            "share_drifted": 0.41,
            "drifted_count": 9,
            "columns_count": 22,
            "dataset_drift": False,
            "features": [
                feature("distance", 0.02, False),
                feature("temp", 0.53, True),
                feature("carrier", 0.2, True, kind="categorical", stattest="jensenshannon"),
            ],
        },
        "prediction": {
            "mean": 0.21,
            "quantiles": {"0.5": 0.18, "0.9": 0.41, "0.99": 0.7},
            "drift": {"stattest": "wasserstein", "score": 0.2, "threshold": 0.1, "drifted": True},
        },
        "quality": {
            "labelled_rows": 4200,
            "label_coverage": 0.84,
            "task": "classification",
            "metrics": {"roc_auc": 0.66, "brier": 0.18},
            "gates": {"roc_auc": {"min": 0.7}, "brier": {"max": 0.2}},
            "passed": False,
        },
        "bad_input": {"missing_feature": 3, "corrupt_entry": 0},
        "consecutive_drift": 2,
        "retraining_requested": True,
        "report_html": "report.html",
        "report_json": "snapshot.json",
    }
    return result | extra


HEALTH = {
    "status": "ok",
    "last_poll": "2013-05-10T00:02:00Z",
    "last_analysis": "2013-05-10T00:01:02+00:00",
    "entries_read": 60_000,
    "outcomes_read": 51_000,
    "labels_known": 40_000,
    "open_windows": {"flight_delay/3": 1234},
    "last_error": None,
    "bad_input": {"missing_feature": 3},
    "retraining_requests": [
        {
            "model": "flight_delay",
            "version": "3",
            "requested_at": "2013-05-10T00:01:02+00:00",
            "windows": ["000011", "000012"],
            "features": ["temp", "carrier"],
        }
    ],
}

WINDOW_URL = "/models/flight_delay/versions/3/windows/000012"


def assert_accessible_structure(page: Page) -> None:
    """What WCAG asks of any page, checked without a browser."""
    assert page.all("html")[0]["lang"] == "en"
    assert page.all("title")
    assert len(page.all("h1")) == 1
    levels = [level for level, _ in page.headings]
    assert levels[0] == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    assert page.all("main") and page.all("nav")
    assert page.all("a", class_="skip-link", href="#content")
    ids = Counter(a["id"] for _, a in page.elements if "id" in a)
    assert not [i for i, n in ids.items() if n > 1]
    for _, attrs in page.elements:
        for key in ("aria-labelledby", "aria-describedby"):
            assert all(ref in ids for ref in attrs.get(key, "").split()), attrs
    for svg in page.all("svg", role="img"):
        assert svg["aria-labelledby"] and svg["aria-describedby"]
    for icon in page.all("svg", class_="icon"):
        assert icon["aria-hidden"] == "true"
    assert all(a.get("scope") in {"col", "row"} for a in page.all("th"))
    assert len(page.all("caption")) == len(page.all("table"))


def test_index_lists_models_versions_and_windows_newest_first() -> None:
    results = [window(index=i) for i in (3, 12, 1)] + [window(version="2", index=1)]
    results.append(window(model="arrival_delay", version="1", index=1, quality=None))
    page = Page(render_index(results, {}))
    assert_accessible_structure(page)
    headings = [text for _, text in page.headings]
    assert headings.index("Model arrival_delay") < headings.index("Model flight_delay")
    assert headings.index("flight_delay version 3") < headings.index("flight_delay version 2")
    rows = [h for h in page.links() if h.startswith("/models/flight_delay/versions/3/windows/")]
    # The latest window's card, then the table of windows, newest first.
    assert rows == [f"/models/flight_delay/versions/3/windows/{i:06d}" for i in (12, 12, 3, 1)]
    words = page.words
    assert "No dataset drift" not in words and "No window shows dataset drift" in words
    assert "Partial drift" in words and "Gates failed" in words and "No labels" in words
    assert "41.0%" in words and "84.0%" in words and "Requested" in words


def test_index_shows_health_and_retraining_requests_with_window_links() -> None:
    page = Page(render_index([window()], HEALTH))
    words = page.words
    assert "OK" in words and "60,000" in words and "51,000" in words
    assert "Windows being filled: flight_delay/3 (1,234 rows)." in words
    assert "40,000 labels held" in words
    assert "Last error" not in words
    assert "2013-05-10 00:02 UTC" in words and "missing feature" in words
    assert "/models/flight_delay/versions/3/windows/000011" in page.links()
    assert "temp, carrier" in words


def test_index_charts_have_text_alternatives() -> None:
    results = [window(index=i) for i in range(1, 6)]
    results[-1]["drift"]["dataset_drift"] = True
    page = Page(render_index(results, HEALTH))
    charts = page.all("svg", role="img")
    assert len(charts) == 2
    ids = {a["id"] for _, a in page.elements if "id" in a}
    assert {c["aria-labelledby"] for c in charts} <= ids
    assert len(page.all("details")) == 2
    words = page.words
    assert "Dataset drift in 1 window: 000005" in words
    assert "roc_auc of each labelled window" in words and "Failing the gate:" in words
    assert "gate: min 0.7" in words


def test_index_bounds_the_windows_of_a_version() -> None:
    results = [window(index=i) for i in range(1, MAX_WINDOWS + 11)]
    page = Page(render_index(results, {}))
    links = {h for h in page.links() if "/windows/" in h}
    assert len(links) == MAX_WINDOWS
    assert f"/models/flight_delay/versions/3/windows/{MAX_WINDOWS + 10:06d}" in links
    assert "/models/flight_delay/versions/3/windows/000010" not in links
    assert f"the {MAX_WINDOWS} most recent of {MAX_WINDOWS + 10}" in page.words


def test_index_with_no_window_yet_and_no_health() -> None:
    page = Page(render_index([], {}))
    assert_accessible_structure(page)
    assert "No window has been analysed yet" in page.words
    assert "Not reported" in page.words and "No retraining has been requested" in page.words


def test_window_page_shows_everything_of_a_full_result() -> None:
    history = [window(index=i) for i in range(1, 12)] + [window(index=13), window(version="2")]
    page = Page(render_window(window(), history=history))
    assert_accessible_structure(page)
    assert page.all("h1")
    assert page.headings[0] == (1, "Window 000012 flight_delay version 3")
    words = page.words
    for text in (
        "9 of 22 features (41.0%)",
        "Retraining requested.",
        "failing: roc_auc",
        "at least 0.700",
        "at most 0.200",
        "p50",
        "p99",
        "0.700",
        "missing feature",
        "2013-05-01 06:00 UTC",
        "2013-05-10 00:01:02 UTC",
    ):
        assert text in words, text
    trend = [c for c in page.all("svg", role="img") if "drift-trend" in c["aria-labelledby"]]
    assert trend
    # Only earlier windows of the same version make the trend: 000001..000012.
    assert "the 12 windows from 000001 to 000012" in words
    assert "000013" not in words


def test_window_page_links_back_and_to_the_reports() -> None:
    page = Page(render_window(window(), base="/drift/"))
    links = page.links()
    assert f"/drift{WINDOW_URL}/report.html" in links
    assert f"/drift{WINDOW_URL}/snapshot.json" in links
    assert "/drift/" in links
    assert f"/drift/#{anchor('model', 'flight_delay')}" in links
    assert f"/drift/#{anchor('version', 'flight_delay', '3')}" in links
    assert page.all("span", **{"aria-current": "page"})
    index = Page(render_index([window()], {}, base="/drift"))
    assert f"/drift{WINDOW_URL}" in index.links()
    assert index.all("h3", id=anchor("version", "flight_delay", "3"))
    assert index.all("h2", id=anchor("model", "flight_delay"))


def test_window_page_lists_features_by_drift() -> None:
    page = Page(render_window(window()))
    names = [text for text in page.text if text in {"temp", "carrier", "distance"} and text.strip()]
    # Table order (after the chart's labels): drifted first, furthest past the threshold.
    assert names[-3:] == ["temp", "carrier", "distance"]
    assert "0.530 drifted" in page.words


def test_p_value_tests_drift_below_their_threshold() -> None:
    drift = {
        "features": [
            feature("a", 0.40, False, stattest="ks", threshold=0.05),
            feature("b", 0.001, True, stattest="ks", threshold=0.05),
            feature("c", 0.03, True, stattest="odd_test", threshold=0.05),
            feature("d", 0.9, True, stattest="odd_distance", threshold=0.1),
        ]
    }
    rows = features_view(drift)
    assert [r["name"] for r in rows] == ["b", "d", "c", "a"]
    assert [r["direction"] for r in rows] == ["p-value", "distance", "p-value", "p-value"]
    page = Page(render_window(window(drift=drift)))
    assert "Feature drift scores (p-value tests)" in page.words
    assert "Feature drift scores (distance tests)" in page.words


def test_window_page_with_only_its_identity() -> None:
    result = {"model": "flight_delay", "version": "3", "window_id": "000001"}
    page = Page(render_window(result))
    assert_accessible_structure(page)
    words = page.words
    assert "HTML report of this window has not been generated yet" in words
    assert "JSON snapshot of this window has not been generated yet" in words
    assert "No labels have arrived for this window yet" in words
    assert "No per-feature drift result for this window" in words
    assert "No prediction statistics for this window" in words
    assert "Bad input was not counted for this window" in words
    assert "Not analysed" in words
    assert not [h for h in page.links() if h.endswith((".html", ".json"))]
    index = Page(render_index([result], {"status": "stalled", "last_error": "disk <full>"}))
    assert_accessible_structure(index)
    assert "Stalled" in index.words and "No labels" in index.words
    assert "Last error: disk <full>" in index.words


def test_window_page_with_partial_values() -> None:
    result = window(
        quality={"metrics": {"roc_auc": None, "mae": 12.5}, "gates": {"roc_auc": {"min": 0.7}}},
        prediction={"mean": None, "quantiles": {"median": 0.2, "0.9": "high"}},
        drift={
            "share_drifted": None,
            "features": [
                {"name": "temp"},
                "junk",
                {"score": 1},
                {"name": "wind", "stattest": "no_value", "score": None, "drifted": True},
            ],
        },
        bad_input={"missing_feature": 0},
        report_json=None,
        start="not a time",
        end=None,
        rows=None,
    )
    page = Page(render_window(result, history=[window(index=11, drift=None, quality=None)]))
    assert_accessible_structure(page)
    words = page.words
    assert "Not computed" in words and "No gate" in words and "12.500" in words
    assert "no score drifted" in words and "no_value" in words
    assert "median" in words and "not a time" in words
    assert "No bad input in this window" in words
    assert "JSON snapshot of this window has not been generated yet" in words
    assert f"{WINDOW_URL}/report.html" in page.links()


@pytest.mark.parametrize(
    ("model", "version", "window_id"),
    [
        ("<script>alert('m')</script>", "1", "000001"),
        ("flight delay & co", 'v"2"/b', "x&y?z#w"),
    ],
)
def test_odd_names_are_escaped_in_text_and_links(model: str, version: str, window_id: str) -> None:
    odd = window(model=model, version=version, window_id=window_id)
    odd["drift"]["features"].append(feature("<b>bold</b>", 0.5, True))
    html = render_index([odd], {"retraining_requests": [{"model": model, "version": version,
                                                         "windows": [window_id]}]})  # fmt: skip
    html += render_window(odd)
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    page = Page(render_window(odd))
    assert_accessible_structure(page)
    links = page.links()
    url = next(h for h in links if h.endswith("/report.html"))
    assert url.startswith("/models/") and url.count("/") == 7
    assert "&" not in url.replace("&amp;", "") and " " not in url and '"' not in url
    index = Page(render_index([odd], {}))
    assert_accessible_structure(index)
    assert url.removesuffix("/report.html") in index.links()


def test_anchor_ids_are_stable_and_distinct() -> None:
    assert anchor("model", "flight_delay") == "model-flight_delay"
    odd = anchor("model", "a b")
    assert re.fullmatch(r"model-a-b-[0-9a-f]{8}", odd)
    assert odd != anchor("model", "a/b") and odd == anchor("model", "a b")


def test_natural_order_of_versions_and_windows() -> None:
    assert sorted(["10", "9", "v2", "v10", "1"], key=natural_key) == ["1", "9", "10", "v2", "v10"]


def test_not_found_page_is_friendly_and_escaped() -> None:
    page = Page(render_not_found("No window <7> for flight_delay 3.", base="/drift"))
    assert_accessible_structure(page)
    assert "No window <7> for flight_delay 3." in page.words
    assert "/drift/" in page.links()
    assert "Page not found" in page.words
