"""Training snapshots are the same data on DuckDB and PostgreSQL (the same content hash).

The small source set (January 1-3 and the days around the November daylight-saving change)
is loaded into both engines with one pseudonymisation key; a snapshot of each model's spec
over each window must then hash the same and hold equal rows, origin-status features
included. It is the query that once spelt a type only DuckDB knows.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from vigie.config import Settings
from vigie.pipelines.run import run_pipeline
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
WINDOWS = ((date(2013, 1, 1), date(2013, 1, 3)), (date(2013, 11, 2), date(2013, 11, 4)))


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory,
    small_source: Path,
    postgres_admin_url: str,
    make_settings: Callable[..., Settings],
    fresh_database: Callable[[str], str],
) -> tuple[Settings, Settings]:
    """The small set loaded into a DuckDB home and a PostgreSQL home (same key)."""
    key = SecretStr("snapshot-parity-key-" + "k" * 24)
    duck = make_settings(
        tmp_path_factory.mktemp("duck"), small_source, models_dir=REPO / "models", pseudonym_key=key
    )
    postgres = make_settings(
        tmp_path_factory.mktemp("pg"),
        small_source,
        fresh_database(postgres_admin_url),
        models_dir=REPO / "models",
        pseudonym_key=key,
    )
    for settings in (duck, postgres):
        assert run_pipeline(settings).record.status == "success"
    return duck, postgres


@pytest.mark.parametrize("model", ["flight_delay", "arrival_delay"])
@pytest.mark.parametrize("window", WINDOWS, ids=["january", "dst-change"])
def test_a_snapshot_is_the_same_data_on_both_engines(
    engines: tuple[Settings, Settings], model: str, window: tuple[date, date]
) -> None:
    duck, postgres = engines
    spec = load_spec(duck.models_dir, model)

    on_duck = build_snapshot(duck, spec, *window)
    on_postgres = build_snapshot(postgres, spec, *window)

    assert on_postgres.rows == on_duck.rows > 500
    assert on_postgres.content_hash == on_duck.content_hash
    duck_table, postgres_table = pq.read_table(on_duck.path), pq.read_table(on_postgres.path)
    assert postgres_table.schema == duck_table.schema
    assert postgres_table.equals(duck_table)
    history = [f.name for f in spec.feature_defs() if f.history]
    for name in history:  # filled from the outcomes, not left at the query's NULL
        assert duck_table.column(name).null_count < duck_table.num_rows, name


def test_two_runs_building_the_same_snapshot_at_once_both_get_it(
    engines: tuple[Settings, Settings],
) -> None:
    """Two retrainings (two models with the same inputs, or two jobs) may build the same
    snapshot at once: each writes its own file and renames it over the shared path."""
    duck, _ = engines
    spec = load_spec(duck.models_dir, "flight_delay")
    window = WINDOWS[0]
    build_snapshot(duck, spec, *window).path.unlink()  # so that all four write it
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = list(pool.map(lambda _: build_snapshot(duck, spec, *window), range(4)))
    assert len({snapshot.content_hash for snapshot in built}) == 1
    assert built[0].path.exists()
    assert not list(duck.snapshots_dir.glob("*.tmp")), "a partial file was left behind"
