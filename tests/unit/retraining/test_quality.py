"""Data expectations on a retraining snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vigie.pipelines.expectations import load_expectations
from vigie.retraining.quality import check_snapshot, snapshot_expectations
from vigie.training.spec import ModelSpec, load_spec

MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec(MODELS, "flight_delay")


def _frame(spec: ModelSpec, rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data: dict[str, object] = {"flight_key": np.arange(rows, dtype=np.int64)}
    categorical = {
        "carrier": "UA",
        "origin": "EWR",
        "dest": "ORD",
        "manufacturer": "BOEING",
        "engine": "Turbo-fan",
    }
    numeric = {
        "distance": 700.0,
        "hour": 9.0,
        "minute": 30.0,
        "day_of_week": 3.0,
        "day": 5.0,
        "month": 1.0,
        "plane_year": 2004.0,
        "seats": 180.0,
        "temp": 40.0,
        "dewp": 20.0,
        "humid": 50.0,
        "wind_dir": 270.0,
        "wind_speed": 10.0,
        "wind_gust": np.nan,
        "precip": 0.0,
        "pressure": 1012.0,
        "visib": 10.0,
        "origin_arr_delay_3h": 4.0,
        "origin_late_share_3h": 0.2,
        "origin_arr_delay_6h": 6.0,
        "origin_late_share_6h": 0.25,
        "origin_arrivals_6h": 80.0,
        "carrier_arr_delay_6h": 3.0,
        "carrier_late_share_6h": 0.2,
        "origin_dep_delay_1h": 8.0,
        "origin_dep_delay_3h": 7.0,
        "origin_dep_delay_6h": 6.0,
        "origin_departures_1h": 18.0,
        "carrier_dep_delay_3h": 7.0,
        "origin_backlog_1h": 3.0,
        "origin_backlog_3h": 4.0,
        "dest_arr_delay_3h": 2.0,
        "dest_late_share_3h": 0.2,
    }
    for name in spec.features:
        data[name] = [categorical[name]] * rows if name in categorical else numeric[name]
    data["wind_gust"] = np.where(np.arange(rows) % 4 == 0, 25.0, np.nan)
    data["arr_delay"] = rng.normal(5, 30, rows)
    return pd.DataFrame(data)


def test_expectations_come_from_the_pipeline(spec: ModelSpec) -> None:
    table = snapshot_expectations(spec, load_expectations())
    assert table.columns["hour"].max == 23
    assert table.columns["carrier"].pattern == "^[A-Z0-9]{2}$"
    assert table.columns["arr_delay"].required
    assert table.columns["wind_speed"].on_out_of_range == "quarantine"


def test_a_sound_snapshot_passes(spec: ModelSpec) -> None:
    report = check_snapshot(_frame(spec), spec, min_rows=100)
    assert report.passed, report.problems
    assert report.null_shares["wind_gust"] == pytest.approx(0.75)


def test_ranges_nulls_keys_rows_and_label_fail(spec: ModelSpec) -> None:
    frame = _frame(spec)
    frame.loc[3, "hour"] = 31
    frame.loc[4, "carrier"] = "united"
    frame.loc[5, "arr_delay"] = np.nan
    frame.loc[6, "flight_key"] = 7
    frame["temp"] = np.nan
    report = check_snapshot(frame, spec, min_rows=500)
    assert not report.passed
    assert report.failures["out_of_range:hour"] == 1
    assert report.failures["malformed_code:carrier"] == 1
    assert report.failures["missing_value:arr_delay"] == 1
    assert report.failures["duplicate_key:flight_key"] == 1
    text = " ".join(report.problems)
    assert "fewer than the 500" in text and "temp is 100.0% missing" in text
    constant = _frame(spec)
    constant["arr_delay"] = -5.0
    assert "constant" in " ".join(check_snapshot(constant, spec, min_rows=1).problems)
