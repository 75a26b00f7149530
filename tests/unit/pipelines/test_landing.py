"""The landing zone: month partitions, a hashed manifest, and refusing altered files."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.pipelines.expectations import load_expectations
from vigie.pipelines.landing import MANIFEST, extract, read_landed
from vigie.pipelines.sources import file_sha256

TABLES = load_expectations().tables


@pytest.fixture
def landing(tmp_path: Path, small_source: Path) -> Path:
    """A landing zone holding the small set's weather and airlines."""
    folder = tmp_path / "landing"
    assert extract("weather", TABLES["weather"], small_source, folder)
    assert extract("airlines", TABLES["airlines"], small_source, folder)
    return folder


def manifest(landing: Path) -> dict[str, dict[str, dict[str, str | int]]]:
    tables: dict[str, dict[str, dict[str, str | int]]] = json.loads(
        (landing / MANIFEST).read_text()
    )["tables"]
    return tables


def month_file(landing: Path, table: str, month: str) -> tuple[str, Path]:
    """The manifest entry and file of one month's partition (whatever its folder name)."""
    (part,) = [p for p in manifest(landing)[table]["files"] if p.endswith(month)]
    return part, landing / str(manifest(landing)[table]["files"][part]["path"])


def source_rows(source: Path, name: str) -> int:
    return len((source / name).read_text().splitlines()) - 1


def test_extract_writes_month_partitions(landing: Path, small_source: Path) -> None:
    files = manifest(landing)["weather"]["files"]

    january, january_file = month_file(landing, "weather", "2013-01")
    november, november_file = month_file(landing, "weather", "2013-11")
    assert set(files) == {january, november, "malformed"}
    assert january_file.is_file()
    assert november_file.is_file()
    assert january_file.parent.parent == november_file.parent.parent == landing / "weather"
    rows = sum(int(f["rows"]) for part, f in files.items() if part != "malformed")
    assert rows == source_rows(small_source, "weather.csv")
    assert files["malformed"]["rows"] == 0


def test_small_tables_land_in_one_partition(landing: Path) -> None:
    files = manifest(landing)["airlines"]["files"]

    assert set(files) == {"all", "malformed"}
    assert files["all"]["rows"] == 16


def test_manifest_holds_the_sha256_of_every_file_and_of_the_source(
    landing: Path, small_source: Path
) -> None:
    entry = manifest(landing)["weather"]

    assert entry["source_sha256"] == file_sha256(small_source / "weather.csv")
    for info in entry["files"].values():
        assert info["sha256"] == file_sha256(landing / str(info["path"]))


def test_a_second_extract_of_an_unchanged_source_is_a_no_op(
    landing: Path, small_source: Path
) -> None:
    _, part = month_file(landing, "weather", "2013-01")
    before = ((landing / MANIFEST).read_bytes(), part.stat().st_mtime_ns)

    assert extract("weather", TABLES["weather"], small_source, landing) is False

    assert ((landing / MANIFEST).read_bytes(), part.stat().st_mtime_ns) == before


def test_refresh_or_a_changed_source_extracts_again(
    landing: Path, source_copy: Callable[..., Any], small_source: Path
) -> None:
    assert extract("weather", TABLES["weather"], small_source, landing, refresh=True) is True

    changed = source_copy("changed")
    lines = changed.lines("weather")
    changed.write_lines("weather", lines[:-1])
    assert extract("weather", TABLES["weather"], changed.path, landing) is True
    entry = manifest(landing)["weather"]
    assert entry["source_sha256"] == file_sha256(changed.file("weather"))


def test_read_landed_reads_only_the_months_of_the_window(landing: Path) -> None:
    january = read_landed("weather", landing, (date(2013, 1, 2), date(2013, 1, 3)))
    everything = read_landed("weather", landing, None)

    assert set(january.frame["month"]) == {"1"}
    assert set(everything.frame["month"]) == {"1", "11"}
    _, november = month_file(landing, "weather", "2013-11")
    assert str(november.relative_to(landing)) not in january.hashes
    assert str(november.relative_to(landing)) in everything.hashes
    assert january.frame["_row"].dtype == "int64"


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "delete"])
def test_an_altered_landing_file_is_refused_by_name(landing: Path, damage: str) -> None:
    _, part = month_file(landing, "weather", "2013-11")
    data = bytearray(part.read_bytes())
    if damage == "flip_bytes":
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        part.write_bytes(bytes(data))
    elif damage == "truncate":
        part.write_bytes(bytes(data[: len(data) // 2]))
    else:
        part.unlink()

    with pytest.raises(VigieError) as refused:
        read_landed("weather", landing, None)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert str(part) in refused.value.message
    assert "--refresh" in refused.value.message


def test_a_landing_file_outside_the_window_is_not_read(landing: Path) -> None:
    _, part = month_file(landing, "weather", "2013-11")
    part.write_bytes(part.read_bytes()[:100])

    landed = read_landed("weather", landing, (date(2013, 1, 1), date(2013, 1, 31)))

    assert len(landed.frame) > 0


def test_an_unreadable_file_with_a_matching_hash_is_refused(landing: Path) -> None:
    """Someone rewrote the file and its manifest entry: the hash matches, Parquet fails."""
    key, part = month_file(landing, "weather", "2013-01")
    part.write_bytes(part.read_bytes()[:200])
    data = json.loads((landing / MANIFEST).read_text())
    data["tables"]["weather"]["files"][key]["sha256"] = file_sha256(part)
    (landing / MANIFEST).write_text(json.dumps(data))

    with pytest.raises(VigieError) as refused:
        read_landed("weather", landing, None)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert str(part) in refused.value.message


def test_a_corrupt_manifest_is_refused(landing: Path) -> None:
    (landing / MANIFEST).write_text('{"version": 1, "tables": {')

    with pytest.raises(VigieError) as refused:
        read_landed("weather", landing, None)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert MANIFEST in refused.value.message


def test_a_table_never_landed_is_refused(landing: Path) -> None:
    with pytest.raises(VigieError) as refused:
        read_landed("flights", landing, None)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "flights" in refused.value.message
