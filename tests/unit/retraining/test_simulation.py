"""The closed-loop simulation's months, metrics and report (synthetic inputs)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.retraining.simulation import (
    DriftMonth,
    MonthResult,
    SimulationOptions,
    SimulationReport,
    month_end,
    month_window,
    served_roc_auc,
    write_report,
)


def test_months_cover_march_to_december_with_their_last_days() -> None:
    months = SimulationOptions().months()
    assert len(months) == 10
    assert months[0] == (date(2013, 3, 1), date(2013, 3, 31))
    assert months[-1] == (date(2013, 12, 1), date(2013, 12, 31))
    assert month_window(2013, 4, days=7) == (date(2013, 4, 1), date(2013, 4, 7))
    assert month_window(2013, 2, days=40) == (date(2013, 2, 1), date(2013, 2, 28))
    assert month_end(date(2013, 2, 3)) == date(2013, 2, 28)


@pytest.mark.parametrize(
    ("from_month", "to_month", "days"), [(1, 3, None), (5, 4, None), (3, 13, None), (3, 4, 0)]
)
def test_bad_months_are_refused(from_month: int, to_month: int, days: int | None) -> None:
    options = SimulationOptions(from_month=from_month, to_month=to_month, days=days)
    with pytest.raises(VigieError) as caught:
        options.months()
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_served_roc_auc_ranks_and_needs_both_classes() -> None:
    assert served_roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert served_roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000).astype(float)
    noisy = labels * 0.5 + rng.random(2000)
    auc = served_roc_auc(noisy.tolist(), labels.tolist())
    assert auc is not None and 0.6 < auc < 0.9
    assert served_roc_auc([0.1, 0.2], [1, 1]) is None
    assert served_roc_auc([], []) is None
    assert served_roc_auc([0.1], [0, 1]) is None


def _month(month: int, static: float | None, loop: float | None, **kwargs: object) -> MonthResult:
    first, last = month_window(2013, month)
    return MonthResult(
        month=f"2013-{month:02d}",
        first=first,
        last=last,
        static_auc=static,
        loop_auc=loop,
        served_rows=100,
        labelled_rows=97,
        versions={"1": 60, "2": 40},
        drift=DriftMonth(windows=4, drifted=3, share=0.61, requests=1),
        **kwargs,  # type: ignore[arg-type]
    )


def _report() -> SimulationReport:
    report = SimulationReport("flight_delay", 2013, "1", "trained on 2013-01-01..2013-02-28")
    report.months = [
        _month(3, 0.66, 0.66, retraining="schedule: unchanged", production_after="1"),
        _month(
            4,
            0.64,
            0.70,
            retraining="drift requests: trained v2 (roc_auc 0.700 vs champion 0.640)",
            promotion="refused v2 (gates_failed: roc_auc | 0.69 < 0.70)",
            production_after="1",
        ),
        _month(5, 0.62, None),
    ]
    report.wall_s = 600.0
    return report


def test_means_skip_missing_months() -> None:
    report = _report()
    assert report.mean("static_auc") == pytest.approx((0.66 + 0.64 + 0.62) / 3)
    assert report.mean("loop_auc") == pytest.approx(0.68)
    assert SimulationReport("m", 2013, "1", "x").mean("loop_auc") is None


def test_markdown_has_a_row_per_month_the_means_and_the_refusal() -> None:
    page = _report().markdown("plot.png")
    rows = [line for line in page.splitlines() if line.startswith("| 2013-")]
    assert len(rows) == 3
    assert (
        "| 2013-04 | 0.640 | 0.700 | 100 (97) | 0.61 (3/4), 1 request(s) | v1 (60), v2 (40) |"
        in (rows[1])
    )
    assert "refused v2 (gates_failed: roc_auc \\| 0.69 < 0.70)" in rows[1]  # pipe escaped
    assert "static 0.640, closed loop 0.680" in page
    assert "not reached" in page
    assert "![ROC AUC per month](plot.png)" in page
    assert "10.0 min" in page


def test_write_report_writes_page_plot_and_json(tmp_path: Path) -> None:
    report = dataclasses.replace(_report(), client_fields="schedule")
    page, image = write_report(report, tmp_path / "docs")
    assert page.name == "closed-loop.md"
    assert page.read_text().startswith("# Closed loop over 2013")
    assert "- requests: schedule-only" in page.read_text()
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "docs" / "closed-loop.json").read_text())
    assert [m["month"] for m in data["months"]] == ["2013-03", "2013-04", "2013-05"]
    assert data["months"][2]["loop_auc"] is None
    assert data["client_fields"] == "schedule"


def test_the_runs_of_both_request_kinds_are_compared(tmp_path: Path) -> None:
    write_report(dataclasses.replace(_report(), client_fields="schedule"), tmp_path)
    page, _ = write_report(_report(), tmp_path)  # full requests, written second
    assert page.name == "closed-loop-full.md"
    text = page.read_text()
    assert "## Both request kinds (the other run: [closed-loop.md](closed-loop.md))" in text
    assert "| 2013-03 |" in text.split("## Both request kinds")[1]


def test_the_json_report_renders_the_same_page_again() -> None:
    report = _report()
    again = SimulationReport.from_json(json.loads(json.dumps(report.to_json())))
    assert again.markdown() == report.markdown()
