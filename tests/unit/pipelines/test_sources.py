"""Reading source files: corrupt archives, truncated lines, missing columns."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.pipelines.expectations import load_expectations
from vigie.pipelines.run import run_pipeline
from vigie.pipelines.sources import read_source
from vigie.warehouse.connection import connect

TABLES = load_expectations().tables


def columns(table: str) -> list[str]:
    return list(TABLES[table].columns)


def test_the_small_set_reads_without_loss(small_source: Path) -> None:
    weather = read_source("weather", small_source / "weather.csv", columns("weather"))
    flights = read_source("flights", small_source / "flights.csv.zip", columns("flights"))

    lines = (small_source / "weather.csv").read_text().splitlines()
    assert len(weather.frame) == len(lines) - 1
    assert weather.malformed == []
    assert weather.frame["_row"].tolist() == list(range(1, len(lines)))
    assert flights.frame["tailnum"].isna().sum() > 0, "NA must read as null"
    assert (flights.frame["dep_time"] == "NA").sum() == 0
    assert set(flights.frame["month"]) == {"1", "11"}


def test_a_truncated_zip_is_source_corrupt(source_copy: Callable[..., Any]) -> None:
    source = source_copy()
    archive = source.file("flights")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])

    with pytest.raises(VigieError) as refused:
        read_source("flights", archive, columns("flights"))

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "flights.csv.zip" in refused.value.message


def test_a_file_that_is_not_a_zip_is_source_corrupt(source_copy: Callable[..., Any]) -> None:
    source = source_copy()
    source.file("flights").write_text("year,month\n2013,1\n")

    with pytest.raises(VigieError) as refused:
        read_source("flights", source.file("flights"), columns("flights"))

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT


def test_a_missing_source_file_is_source_corrupt(tmp_path: Path) -> None:
    with pytest.raises(VigieError) as refused:
        read_source("weather", tmp_path / "weather.csv", columns("weather"))

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "does not exist" in refused.value.message


def test_a_truncated_last_line_is_kept_as_malformed(source_copy: Callable[..., Any]) -> None:
    source = source_copy()
    lines = source.lines("weather")
    cut = lines[-1][: len(lines[-1]) // 2]
    source.write_lines("weather", [*lines[:-1], cut], final_newline=False)

    read = read_source("weather", source.file("weather"), columns("weather"))

    assert len(read.frame) == len(lines) - 2
    ((line_number, text),) = read.malformed
    assert text == cut
    assert line_number == len(lines)


def test_a_missing_declared_column_is_source_corrupt(source_copy: Callable[..., Any]) -> None:
    source = source_copy()
    header = source.header("weather")
    drop = header.index("humid")
    source.write_lines(
        "weather",
        [
            ",".join(f for i, f in enumerate(line.split(",")) if i != drop)
            for line in source.lines("weather")
        ],
    )

    with pytest.raises(VigieError) as refused:
        read_source("weather", source.file("weather"), columns("weather"))

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "humid" in refused.value.message
    assert refused.value.details["missing"] == ["humid"]


def test_a_truncated_last_line_is_quarantined_as_malformed_row_by_a_run(
    tmp_path: Path, source_copy: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    source = source_copy()
    lines = source.lines("weather")
    cut = lines[-1][: len(lines[-1]) // 2]
    source.write_lines("weather", [*lines[:-1], cut], final_newline=False)
    settings = make_settings(tmp_path / "home", source.path)

    result = run_pipeline(settings)

    (weather,) = [t for t in result.record.tables if t.table == "weather"]
    assert weather.rows_in == len(lines) - 1
    assert weather.rows_quarantined == 1
    assert weather.rows_loaded == len(lines) - 2
    assert weather.failures == {"malformed_row": 1}
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        ((table, checks, reasons, record),) = warehouse.query(
            "SELECT source_table, checks, reasons, record FROM quarantine"
        )
    assert (table, checks) == ("weather", "malformed_row")
    assert json.loads(reasons)[0]["check"] == "malformed_row"
    assert json.loads(record) == {"text": cut}
