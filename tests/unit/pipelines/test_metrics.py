"""The Prometheus textfile of pipeline metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vigie.pipelines.lineage import RunRecord, TableStats
from vigie.pipelines.metrics import write_metrics

#: One sample line of the text exposition format: name, optional labels, a float value.
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\n]*\""
    r"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\n]*\")*)\})?"
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|NaN|Inf))$"
)
COMMENT = re.compile(r"^# (?P<kind>HELP|TYPE) (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<rest>.+)$")
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(status: str, finished: datetime | None) -> RunRecord:
    run = RunRecord(
        run_id="run-1",
        actor="tester",
        policy_hash="ab" * 32,
        window_from=None,
        window_to=None,
        started_at=START,
        code_version="0.1.0",
    )
    run.status, run.finished_at = status, finished
    if status == "success":
        run.tables = [
            TableStats("airlines", 16, 16, 17, 0, 0),
            TableStats("flights", 100, 95, 95, 3, 5),
        ]
    return run


def parse(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse a textfile strictly: every line a HELP, a TYPE or a sample."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: dict[str, str] = {}
    for line in path.read_text().splitlines():
        comment = COMMENT.match(line)
        if comment:
            if comment["kind"] == "TYPE":
                assert comment["rest"] in {"gauge", "counter", "untyped"}, line
                typed[comment["name"]] = comment["rest"]
            continue
        sample = SAMPLE.match(line)
        assert sample, f"not a Prometheus text line: {line!r}"
        assert sample["name"] in typed, f"sample before its TYPE: {line!r}"
        labels = frozenset(
            re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', sample["labels"] or "")
        )
        key = (sample["name"], labels)
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(sample["value"])
    assert path.read_text().endswith("\n")
    return samples


def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({"pipeline": "flights_batch", **labels}.items())


def rows(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    """The per-table row counts, ``table/outcome`` -> value, whatever the family is named."""
    found = {}
    for (name, labels), value in samples.items():
        named = dict(labels)
        if name.startswith("vigie_pipeline_rows") and {"table", "outcome"} <= set(named):
            found[f"{named['table']}/{named['outcome']}"] = value
    return found


def test_metrics_file_is_valid_text_exposition(tmp_path: Path) -> None:
    path = write_metrics(tmp_path / "metrics", record("success", START + timedelta(seconds=42)))

    samples = parse(path)

    assert path.name.endswith(".prom")
    counts = rows(samples)
    assert counts["flights/in"] == 100
    assert counts["flights/loaded"] == 95
    assert counts["flights/quarantined"] == 5
    assert counts["flights/corrected"] == 3
    assert counts["airlines/inserted"] == 17
    assert samples[series("vigie_pipeline_duration_seconds")] == 42.0
    assert samples[series("vigie_pipeline_last_run_success")] == 1
    last = samples[series("vigie_pipeline_last_success_timestamp_seconds")]
    assert last == (START + timedelta(seconds=42)).timestamp()
    assert not list(tmp_path.glob("metrics/.*tmp")), "temporary file left behind"


def test_last_success_is_carried_over_a_failed_run(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    success_at = START + timedelta(seconds=30)
    write_metrics(folder, record("success", success_at))

    path = write_metrics(folder, record("failed", START + timedelta(hours=1)))

    samples = parse(path)
    assert samples[series("vigie_pipeline_last_run_success")] == 0
    assert samples[series("vigie_pipeline_last_success_timestamp_seconds")] == (
        success_at.timestamp()
    )
    assert rows(samples) == {}, "a failed run loaded nothing"


def test_a_first_run_that_fails_reports_no_success_ever(tmp_path: Path) -> None:
    path = write_metrics(tmp_path, record("failed", START + timedelta(seconds=1)))

    samples = parse(path)
    assert samples[series("vigie_pipeline_last_success_timestamp_seconds")] == 0
    assert samples[series("vigie_pipeline_last_run_success")] == 0
