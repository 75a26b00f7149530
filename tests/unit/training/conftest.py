"""Synthetic snapshots and specs for fast training tests (no warehouse)."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vigie.config import Settings, load_settings
from vigie.features import history
from vigie.training.snapshot import Snapshot
from vigie.training.spec import ModelSpec, load_spec

REPO = Path(__file__).resolve().parents[3]
SHIPPED_MODELS = REPO / "models"


def synthetic_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Flights with a learnable signal: late evenings, rain and carrier 'BAD' are late."""
    rng = np.random.default_rng(seed)
    start = datetime(2013, 1, 1, 5)
    times = sorted(start + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 50, rows))
    hour = np.array([t.hour for t in times], dtype=float)
    precip = np.where(rng.random(rows) < 0.2, rng.uniform(0, 0.05, rows), 0.0)
    carrier = rng.choice(["AA", "BAD", "UA", "DL"], rows)
    logit = -2.0 + 0.15 * (hour - 12) + 40 * precip + 1.5 * (carrier == "BAD")
    late = rng.random(rows) < 1 / (1 + np.exp(-logit))
    temp = rng.normal(35, 10, rows)
    temp[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "flight_key": rng.permutation(rows).astype(np.int64) + 1,
            "sched_dep_utc": pd.to_datetime(times),
            "carrier": carrier,
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "dest": rng.choice(["ATL", "ORD", "LAX", "MIA", None], rows),
            "distance": rng.uniform(200, 2500, rows),
            "hour": hour,
            "minute": rng.integers(0, 60, rows).astype(float),
            "day_of_week": np.array([t.isoweekday() for t in times], dtype=float),
            "day": np.array([t.day for t in times], dtype=float),
            "month": np.array([t.month for t in times], dtype=float),
            "plane_year": np.where(rng.random(rows) < 0.2, np.nan, rng.integers(1990, 2013, rows)),
            "manufacturer": rng.choice(["AIRBUS", "BOEING", None], rows),
            "seats": rng.integers(50, 300, rows).astype(float),
            "engine": rng.choice(["Turbo-fan", "Turbo-jet"], rows),
            "temp": temp,
            "dewp": temp - 10,
            "humid": rng.uniform(20, 100, rows),
            "wind_dir": rng.integers(0, 360, rows).astype(float),
            "wind_speed": rng.uniform(0, 30, rows),
            "wind_gust": np.where(rng.random(rows) < 0.7, np.nan, rng.uniform(20, 40, rows)),
            "precip": precip,
            "pressure": rng.normal(1015, 8, rows),
            "visib": np.where(precip > 0, rng.uniform(1, 10, rows), 10.0),
            "arr_delay": np.where(late, rng.uniform(16, 120, rows), rng.uniform(-30, 15, rows)),
            **_origin_status(rng, rows, late),
        }
    )


def _origin_status(rng: np.random.Generator, rows: int, late: np.ndarray) -> dict[str, np.ndarray]:
    """Origin-status columns: recent delays at the origin, higher before a late flight."""
    recent = rng.normal(5, 15, rows) + 20 * late
    missing = rng.random(rows) < 0.1
    columns: dict[str, np.ndarray] = {}
    for hours in (3, 6):
        columns[f"origin_arr_delay_{hours}h"] = np.where(missing, np.nan, recent)
        columns[f"origin_late_share_{hours}h"] = np.where(
            missing, np.nan, np.clip(recent / 60 + 0.2, 0, 1)
        )
    columns["origin_arrivals_6h"] = rng.integers(0, 120, rows).astype(float)
    columns["carrier_arr_delay_6h"] = np.where(missing, np.nan, recent + rng.normal(0, 5, rows))
    columns["carrier_late_share_6h"] = columns["origin_late_share_6h"]
    for name in history.NAMES:  # the other stream features: noisy, higher before a late one
        if name not in columns:
            noisy = recent / 2 + rng.normal(0, 5, rows)
            columns[name] = np.abs(noisy) if name in history.COUNTS else noisy
    return columns


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A copy of the shipped model folders with few epochs, for speed."""
    target = tmp_path / "models"
    shutil.copytree(SHIPPED_MODELS, target)
    for name in ("flight_delay", "arrival_delay"):
        path = target / name / "spec.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["hyperparameters"].update(max_epochs=4, batch_size=256, learning_rate=0.003)
        path.write_text(yaml.safe_dump(raw))
    return target


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    """CPU settings over a temporary home."""
    return load_settings(home=tmp_path / "home", models_dir=models_dir, device="cpu")


@pytest.fixture
def classifier_spec(models_dir: Path) -> ModelSpec:
    """The flight_delay spec with few epochs."""
    return load_spec(models_dir, "flight_delay")


@pytest.fixture
def regressor_spec(models_dir: Path) -> ModelSpec:
    """The arrival_delay spec with few epochs."""
    return load_spec(models_dir, "arrival_delay")


@pytest.fixture
def synthetic_snapshot(tmp_path: Path) -> Snapshot:
    """A 3,000-row synthetic snapshot written as Parquet."""
    path = tmp_path / "synthetic.parquet"
    frame = synthetic_frame(3000)
    frame.to_parquet(path, index=False)
    features = tuple(
        c for c in frame.columns if c not in {"flight_key", "sched_dep_utc", "arr_delay"}
    )
    return Snapshot(path, "synthetic", len(frame), date(2013, 1, 1), date(2013, 2, 19), features)
