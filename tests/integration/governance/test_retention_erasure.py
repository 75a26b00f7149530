"""``vigie governance retain`` and ``erase`` on both configurations, store by store.

``embedded``: DuckDB, local log segments, the SQLite online store. ``services``: PostgreSQL,
Redis Streams and the Redis online store. Each test builds its own small installation
(:mod:`.home`), acts, checks every store, then acts again and sees nothing change.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import redis
from click.testing import Result

from vigie.config import Settings
from vigie.events.outcomes import read_outcomes
from vigie.events.payload_log import read_entries
from vigie.features.store import PLANE
from vigie.governance.audit import AuditEntry, verify
from vigie.governance.erasure import parse_subject
from vigie.pipelines.landing import load_manifest
from vigie.retention.erase import erase
from vigie.retention.retain import retain
from vigie.retention.snapshots import AIRCRAFT_COLUMNS, REWRITTEN

from .home import AS_OF, CLIENT, RECENT, TAIL, Home, build_home, flights_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_db(request: pytest.FixtureRequest) -> str:
    """One empty Redis database for this module's tests (emptied before each)."""
    admin: str = request.getfixturevalue("redis_admin_url")
    url: str = request.getfixturevalue("empty_redis_database")(admin)
    return url


@pytest.fixture(params=["embedded", "services"])
def home(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    broken_source: Any,
    make_settings: Callable[..., Settings],
) -> Home:
    folder = broken_source.folder.path
    if request.param == "embedded":
        return build_home(make_settings(tmp_path / "home", folder))
    database = request.getfixturevalue("fresh_database")(
        request.getfixturevalue("postgres_admin_url")
    )
    url = request.getfixturevalue("redis_db")
    with _redis(url) as client:
        client.flushdb()
    settings = make_settings(tmp_path / "home", folder, database, stream_url=url, features_url=url)
    return build_home(settings)


# -- what each store holds -------------------------------------------------------------------


def _redis(url: str) -> Any:
    return redis.Redis.from_url(url)


def raw_logs_and_features(settings: Settings) -> bytes:
    """Every byte the logs and the online store hold: files, or every Redis key's values."""
    if settings.stream_url is None:
        folders = [settings.payload_dir, settings.outcomes_dir, settings.home / "events"]
        folders.append(settings.home / "features")
        return b"".join(
            path.read_bytes() for f in folders for path in sorted(f.rglob("*")) if path.is_file()
        )
    chunks: list[bytes] = []
    with _redis(settings.stream_url) as client:
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"stream":
                chunks += [repr(e).encode() for e in client.xrange(key)]
            elif kind == b"zset":
                chunks += client.zrange(key, 0, -1)
            elif kind == b"hash":
                chunks += [k + v for k, v in client.hgetall(key).items()]
    return b"".join(chunks)


def landed(settings: Settings, table: str) -> list[dict[str, Any]]:
    manifest = load_manifest(settings.landing_dir)
    rows: list[dict[str, Any]] = []
    for part, info in manifest["tables"][table]["files"].items():
        if part != "malformed":
            rows += pq.read_table(settings.landing_dir / info["path"]).to_pylist()
    return rows


def audit_entries(settings: Settings, action: str) -> list[AuditEntry]:
    assert verify(settings.audit_log_path).ok
    lines = settings.audit_log_path.read_text().splitlines()
    return [e for e in map(AuditEntry.model_validate_json, lines) if e.action == action]


def fingerprint(home: Home) -> dict[str, Any]:
    """What a second run must leave exactly as it is."""
    settings = home.settings
    return {
        "logs": raw_logs_and_features(settings),
        "landing": json.dumps(load_manifest(settings.landing_dir), sort_keys=True),
        "snapshots": sorted(p.name for p in settings.snapshots_dir.iterdir()),
        "warehouse": [
            home.query(f"SELECT count(*) FROM {t}")
            for t in ("fact_prediction", "fact_outcome", "quarantine", "dim_plane")
        ],
        "features": home.query("SELECT prediction_id, features FROM fact_prediction ORDER BY 1"),
    }


# -- erasure ---------------------------------------------------------------------------------


def test_an_aircraft_is_erased_from_every_store_once(home: Home) -> None:
    settings, subject = home.settings, parse_subject(f"tailnum:{TAIL}")
    assert home.tail.encode() in raw_logs_and_features(settings)  # events, online store

    dry = erase(settings, subject, dry_run=True)
    assert flights_of(settings, home.tail) == home.aircraft_flights  # nothing changed
    report = erase(settings, subject)

    assert report.to_json()["stores"] == dry.to_json()["stores"]
    assert report.stores["dim_plane"]["deleted"] == 1
    assert report.stores["fact_flight"]["unlinked"] == len(home.aircraft_flights) > 0
    assert report.stores["online_store"]["deleted"] == 1
    assert report.stores["landing"]["deleted"] == 1  # its row of planes
    assert report.stores["quarantine"]["redacted"] > 0
    assert report.stores["snapshots"]["rewritten"] == 2
    _assert_aircraft_gone(home)
    _assert_lineage_kept(home, report.versions)
    dry_entry, entry = audit_entries(settings, "governance.erase")
    assert (dry_entry.details["dry_run"], entry.details["dry_run"]) == (True, False)
    assert entry.target == f"tailnum:{home.tail}" and entry.details["total"] == report.total
    assert TAIL not in settings.audit_log_path.read_text()

    before = fingerprint(home)
    again = erase(settings, subject)
    assert again.total == 0
    assert fingerprint(home) == before


def _assert_aircraft_gone(home: Home) -> None:
    settings, tail = home.settings, home.tail
    assert tail.encode() not in raw_logs_and_features(settings)
    assert home.query("SELECT count(*) FROM dim_plane WHERE tailnum_pseudonym = ?", (tail,)) == [
        (0,)
    ]
    keys = ", ".join(str(k) for k in home.aircraft_flights)
    planes = home.query(f"SELECT DISTINCT plane_key FROM fact_flight WHERE flight_key IN ({keys})")
    assert planes == [(0,)]  # the unknown aircraft; the flights themselves stay
    for record_key, record, reasons in home.query(
        "SELECT record_key, record, reasons FROM quarantine"
    ):
        assert tail not in record_key + record + reasons and TAIL not in record + reasons
    for (features,) in home.query(
        f"SELECT features FROM fact_prediction WHERE flight_key IN ({keys})"
    ):
        values = json.loads(features)
        assert tail not in features and all(values.get(n) is None for n in PLANE)
    assert all(
        r["tailnum"] != TAIL for r in landed(settings, "flights") + landed(settings, "planes")
    )
    assert any(r["tailnum"] is None for r in landed(settings, "flights"))
    for path in settings.reports_dir.rglob("*.json"):
        assert tail not in path.read_text()


def _assert_lineage_kept(home: Home, versions: list[dict[str, Any]]) -> None:
    """The staging version's snapshot was rewritten, and the record and a marker say so."""
    (version,) = versions
    assert (version["model"], version["version"], version["snapshot_hash"]) == (
        "flight_delay",
        "1",
        home.live_snapshot,
    )
    folder = home.settings.snapshots_dir
    marker = json.loads((folder / f"{home.live_snapshot}{REWRITTEN}").read_text())
    assert marker["rewritten_as"] == version["rewritten_as"]
    assert not (folder / f"{home.live_snapshot}.parquet").exists()
    rows = pq.read_table(folder / f"{version['rewritten_as']}.parquet").to_pylist()
    mine = [r for r in rows if r["flight_key"] in home.aircraft_flights]
    assert mine and all(r[c] is None for r in mine for c in AIRCRAFT_COLUMNS)
    assert any(r[c] is not None for r in rows for c in AIRCRAFT_COLUMNS)  # other aircraft


def test_a_client_is_erased_from_the_logs_and_the_predictions(home: Home) -> None:
    settings = home.settings
    others = home.query(
        "SELECT count(*) FROM fact_prediction WHERE client_pseudonym <> ?", (home.client,)
    )

    assert home.client.encode() in raw_logs_and_features(settings)

    report = erase(settings, parse_subject(f"client:{CLIENT}"))

    assert report.stores["fact_prediction"]["redacted"] == 3  # two rows, then one
    logged = report.stores["payload_log"]
    assert logged == ({"redacted": 2} if settings.stream_url is None else {"deleted": 2})
    assert home.client.encode() not in raw_logs_and_features(settings)
    callers = [e.data["caller"] for e in read_entries(settings, limit=99)]
    assert callers.count(None) == (2 if settings.stream_url is None else 0)
    assert home.query(
        "SELECT count(*) FROM fact_prediction WHERE client_pseudonym = ?", (home.client,)
    ) == [(0,)]
    assert (
        home.query(
            "SELECT count(*) FROM fact_prediction WHERE client_pseudonym <> ?", (home.client,)
        )
        == others
    )
    assert CLIENT not in settings.audit_log_path.read_text()
    assert erase(settings, parse_subject(f"client:{CLIENT}")).total == 0


# -- retention -------------------------------------------------------------------------------


def test_retention_deletes_what_has_outlived_its_store_once(home: Home) -> None:
    settings = home.settings

    dry = retain(settings, as_of=AS_OF, dry_run=True)
    assert home.query("SELECT count(*) FROM fact_outcome")[0][0] > 0
    report = retain(settings, as_of=AS_OF)

    stores = report.to_json()["stores"]
    assert stores == dry.to_json()["stores"]
    assert stores["payload_log"]["deleted"] == 2  # the two entries of 400 days ago
    assert stores["fact_prediction"]["deleted"] == 3
    assert stores["fact_outcome"]["deleted"] == len(home.aircraft_flights) + 1
    assert stores["flight_events"]["deleted"] > 0
    _assert_old_data_gone(home)
    _assert_recent_and_live_data_kept(home, stores)
    (entry,) = [e for e in audit_entries(settings, "governance.retain") if not e.details["dry_run"]]
    assert entry.details["as_of"] == AS_OF.isoformat()
    assert entry.details["stores"]["snapshots"]["deleted"] == 1

    before = fingerprint(home)
    assert retain(settings, as_of=AS_OF).deleted == 0
    assert fingerprint(home) == before


def _assert_old_data_gone(home: Home) -> None:
    settings = home.settings
    assert {e.data["logged_at"] for e in read_entries(settings, limit=99)} == {RECENT.isoformat()}
    assert read_outcomes(settings, limit=99) == []  # 2013 labels, past seven years
    assert home.query("SELECT count(*) FROM fact_outcome") == [(0,)]
    predicted = home.query("SELECT min(predicted_at) FROM fact_prediction")[0][0]
    assert predicted.date() == RECENT.date()
    # a source line that was not a row has no flight date: it is dated by its quarantine
    flights = "SELECT checks FROM quarantine WHERE source_table = 'flights'"
    assert home.query(flights) == [("malformed_row",)]
    monthly = [
        p
        for t in ("flights", "weather")
        for p in load_manifest(settings.landing_dir)["tables"][t]["files"]
    ]
    assert monthly == ["malformed"] * 2  # no month is left; lines without a date stay
    assert not (settings.landing_dir / "flights" / "year_month=2013-01").exists()
    assert not (settings.snapshots_dir / f"{home.spare_snapshot}.parquet").exists()


def _assert_recent_and_live_data_kept(home: Home, stores: dict[str, Any]) -> None:
    settings = home.settings
    assert home.query("SELECT count(*) FROM quarantine WHERE source_table = 'planes'")[0][0] > 0
    assert landed(settings, "planes")  # reference data: no event time, not swept
    assert (settings.snapshots_dir / f"{home.live_snapshot}.parquet").exists()
    (kept,) = stores["snapshots"]["periods"][0]["kept"]
    assert kept["what"] == f"{home.live_snapshot}.parquet" and "flight_delay/1" in kept["why"]
    assert stores["pipeline_reports"]["deleted"] == 0
    assert list((settings.reports_dir / "pipeline").iterdir())
    assert home.query("SELECT count(*) FROM fact_flight")[0][0] > 0  # reference data


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path, broken_source: Any, make_settings: Callable[..., Settings]) -> Home:
    return build_home(make_settings(tmp_path / "home", broken_source.folder.path))


def run(cli: Callable[..., Result], home: Home, *args: str) -> Result:
    return cli(["governance", *args], home=home.settings.home, actor="vigie-tests")


def test_the_command_answers_clearly(embedded: Home, cli: Callable[..., Result]) -> None:
    unknown = run(cli, embedded, "erase", "--subject", "tailnum:N000XX")
    assert unknown.exit_code == 0, unknown.output
    assert "no data found for tailnum:N000XX" in unknown.output

    malformed = run(cli, embedded, "erase", "--subject", "plane:N14228")
    assert malformed.exit_code == 2
    assert "accepted kinds: tailnum (" in malformed.output and "client (" in malformed.output

    dry = run(cli, embedded, "retain", "--dry-run", "--as-of", AS_OF.isoformat(), "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["dry_run"] is True
    assert run(cli, embedded, "retain", "--as-of", "last week").exit_code == 2

    erased = run(cli, embedded, "erase", "--subject", f"tailnum:{TAIL}")
    assert erased.exit_code == 0, erased.output
    assert "dim_plane" in erased.output and "flight_delay/1 was trained on" in erased.output
    later = AS_OF + timedelta(days=1)
    assert run(cli, embedded, "retain", "--as-of", later.isoformat()).exit_code == 0


# -- the monthly workflow --------------------------------------------------------------------


@pytest.mark.slow
def test_the_monthly_workflow_runs_retain(
    embedded: Home, tmp_path: Path, act_dispatch: Callable[..., Any]
) -> None:
    def dispatch(inputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return act_dispatch(".github/workflows/governance.yml", inputs, tmp_path)

    home = str(embedded.settings.home)
    refused = dispatch({"as_of": "last week", "vigie_home": home})
    assert refused.returncode != 0
    assert "as_of 'last week' is not a date YYYY-MM-DD" in refused.stdout + refused.stderr

    done = dispatch({"dry_run": "true", "as_of": AS_OF.isoformat(), "vigie_home": home})

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"Retention as of {AS_OF.isoformat()}: would delete" in output
    assert "### Compliance audit since" in output  # the report job after the retention job
    assert output.count("Job succeeded") == 2
    (entry,) = audit_entries(embedded.settings, "governance.retain")
    assert entry.details["dry_run"] is True and entry.details["deleted"] > 0
    assert embedded.query("SELECT count(*) FROM fact_outcome")[0][0] > 0
