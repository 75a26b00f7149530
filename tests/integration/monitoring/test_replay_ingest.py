"""A real replay against the real service, then the consumer, on DuckDB and PostgreSQL.

``vigie replay`` runs as a user runs it (a subprocess of the console script) against the
BentoML service of the serving tests, over OIP REST one flight per request and over OIP
gRPC up to 16 flights per request; the service writes the payload log, the replay writes
the outcome log, and the consumer loads both into the warehouse, twice.

The trained home (its payload log, its warehouse) may be shared with other modules of
the session, so counts are checked for this module's replays (their request ids, their
departure days), and the consumer's second pass must add nothing at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings, load_settings
from vigie.events.outcomes import OutcomeEvent, read_outcomes
from vigie.events.payload_log import read_entries
from vigie.monitoring.consumer import ingest
from vigie.monitoring.labels import labelled_predictions
from vigie.pipelines.run import run_pipeline
from vigie.registry import Registry
from vigie.warehouse.connection import connect

from ..serving.running import WINDOW, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VIGIE = Path(sys.executable).parent / "vigie"
REST_DAY, GRPC_DAY, STOPPED_DAY = date(2013, 1, 2), date(2013, 1, 3), date(2013, 1, 4)
TIMEOUT_S = 300


@dataclass(frozen=True)
class Replayed:
    """A finished replay: its audit entry's details and what it printed."""

    day: date
    run_id: str
    details: dict[str, Any]
    output: str
    code: int


def environment(server: Server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    settings = server.settings
    return env | {
        "DO_NOT_TRACK": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        "VIGIE_HOME": str(settings.home),
        "VIGIE_MODELS_DIR": str(settings.models_dir),
        "VIGIE_MODE": "local",
        "VIGIE_LOG_FORMAT": "json",
        "VIGIE_ACTOR": "replay-test",
        **extra,
    }


def replay_args(server: Server, day: date, *options: str) -> list[str]:
    return [
        str(VIGIE),
        "replay",
        "--from",
        day.isoformat(),
        "--to",
        day.isoformat(),
        "--url",
        server.rest,
        "--grpc-target",
        f"127.0.0.1:{server.grpc_port}",
        *options,
    ]


def last_replay(settings: Settings) -> dict[str, Any]:
    lines = settings.audit_log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    return next(e for e in reversed(entries) if e["action"] == "monitoring.replay")


def finished(server: Server, day: date, process: subprocess.CompletedProcess[str]) -> Replayed:
    entry = last_replay(server.settings)
    assert entry["inputs"]["window_from"] == day.isoformat()
    return Replayed(day, entry["target"], entry["details"], process.stdout, process.returncode)


def wait_for_payload(settings: Settings, run_id: str, requests: int) -> None:
    """Until the service's payload log holds every answered request of a run (it writes
    in the background); a guard against hanging, not a timing assertion."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entries = read_entries(settings, limit=1_000_000)
        if sum(e.data.get("request_id", "").startswith(run_id) for e in entries) >= requests:
            return
        time.sleep(0.2)
    raise AssertionError(f"the payload log never held the {requests} requests of {run_id}")


@pytest.fixture(scope="module")
def replays(server: Server) -> list[Replayed]:
    """One day over REST (no key given: the local key file), one over gRPC (key from env)."""
    rest = subprocess.run(
        replay_args(server, REST_DAY, "--limit", "60"),
        env=environment(server),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    done = [finished(server, REST_DAY, rest)]
    grpc = subprocess.run(
        replay_args(server, GRPC_DAY, "--protocol", "grpc", "--max-rows", "16", "--limit", "300"),
        env=environment(server, VIGIE_PREDICT_KEY=server.key),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    done.append(finished(server, GRPC_DAY, grpc))
    for replayed in done:
        assert replayed.code == 0, replayed.output
        wait_for_payload(server.settings, replayed.run_id, replayed.details["requests"])
    return done


def count(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> int:
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        return int(warehouse.query(sql, params)[0][0])


def counts(settings: Settings) -> tuple[int, int, int]:
    return (
        count(settings, "SELECT count(*) FROM fact_prediction"),
        count(settings, "SELECT count(*) FROM fact_outcome"),
        count(settings, "SELECT count(*) FROM quarantine WHERE source_table = 'outcome_events'"),
    )


def first_flights(settings: Settings, day: date, limit: int) -> list[tuple[Any, bool]]:
    """(departure, labelled) of the first ``limit`` flights of the day, in departure order."""
    with closing(connect(settings.resolved_warehouse_url, read_only=True)) as warehouse:
        found = warehouse.query(
            "SELECT sched_dep_utc, flight_status = 'arrived' AND arr_utc IS NOT NULL AND "
            "arr_delay_min IS NOT NULL FROM fact_flight WHERE flight_date = ? "
            "ORDER BY sched_dep_utc, flight_key",
            (day,),
        )
    return [(r[0], bool(r[1])) for r in found[:limit]]


def labelled_flights(settings: Settings, day: date, limit: int) -> int:
    """Flights among the first ``limit`` of the day that arrived (each gets one label)."""
    return sum(labelled for _, labelled in first_flights(settings, day, limit))


def test_the_replays_send_every_flight_and_label_the_arrived_ones(
    server: Server, replays: list[Replayed]
) -> None:
    rest, grpc = replays
    assert rest.details["flights"] == rest.details["flights_sent"] == 60
    assert (rest.details["requests"], rest.details["rows"]) == (120, 120)  # 2 models x 60
    assert grpc.details["flights_sent"] == 300 and grpc.details["rows"] == 600
    # as fast as possible, requests are filled with the next departures (up to 16 flights;
    # fewer where the flights of one departure instant go to the next request together)
    assert 2 * -(-300 // 16) <= grpc.details["requests"] <= 2 * 300 // 8
    for replayed, limit in ((rest, 60), (grpc, 300)):
        assert replayed.details["failures"] == 0 and not replayed.details["interrupted"]
        assert replayed.details["outcomes"] == labelled_flights(
            server.settings, replayed.day, limit
        )
        assert replayed.details["outcomes_unwritten"] == 0
        assert "requests answered" in replayed.output and "complete" in replayed.output
    logged = [
        e.data
        for e in read_entries(server.settings, limit=1_000_000)
        if e.data.get("request_id", "").startswith(grpc.run_id)
    ]
    assert {e["protocol"] for e in logged} == {"v2-grpc"}
    assert all(len(e["row_ids"]) == e["rows"] <= 16 for e in logged)
    assert sum(e["rows"] for e in logged) == 600
    events = read_outcomes(server.settings, limit=1_000_000)
    assert len(events) >= rest.details["outcomes"] + grpc.details["outcomes"]


def test_ingest_twice_adds_nothing_the_second_time_and_labels_join(
    server: Server, replays: list[Replayed]
) -> None:
    settings = load_settings(
        home=server.settings.home, models_dir=server.settings.models_dir, mode="local"
    )
    first = ingest(settings)
    assert first.problems == 0 and not first.unregistered_versions
    after_first = counts(settings)
    for replayed in replays:
        rows = count(
            settings,
            "SELECT count(*) FROM fact_prediction p JOIN fact_flight f USING (flight_key) "
            "WHERE p.prediction_id LIKE ?",
            (f"{replayed.run_id}-%",),
        )
        assert rows == replayed.details["rows"]  # every answered row, once, with its flight
    assert ingest(settings).batches == 0
    again = ingest(settings, from_start=True)
    assert again.predictions_inserted == again.outcomes_inserted == 0
    assert counts(settings) == after_first

    for replayed in replays:
        for model in ("flight_delay", "arrival_delay"):
            labels = labelled_predictions(settings, model, start=replayed.day, end=replayed.day)
            mine = labels[labels["prediction_id"].str.startswith(replayed.run_id)]
            assert len(mine) == replayed.details["outcomes"]
            assert mine["flight_date"].astype(str).eq(replayed.day.isoformat()).all()
    probabilities = labelled_predictions(settings, "flight_delay", start=REST_DAY, end=GRPC_DAY)
    assert probabilities["prediction"].between(0.0, 1.0).all()
    assert (probabilities["is_delayed_15"] == (probabilities["arr_delay_min"] > 15)).all()


def test_ingest_into_postgresql_is_idempotent_too(
    server: Server,
    replays: list[Replayed],
    postgres_url: str,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    loader = make_settings(tmp_path / "pg-home", None, warehouse_url=postgres_url)
    assert run_pipeline(loader, *WINDOW).record.status == "success"
    settings = load_settings(
        home=server.settings.home,
        models_dir=server.settings.models_dir,
        mode="local",
        warehouse_url=postgres_url,
    )
    assert Registry(settings).sync_warehouse()  # the versions' rows, for the label join
    first = ingest(settings)
    assert first.predictions_inserted > 0 and first.outcomes_inserted > 0
    assert first.problems == 0 and not first.unregistered_versions
    after_first = counts(settings)
    assert ingest(settings).batches == 0
    assert ingest(settings, from_start=True).predictions_inserted == 0
    assert counts(settings) == after_first
    checkpoints = count(settings, "SELECT count(DISTINCT source) FROM consumer_checkpoint")
    assert checkpoints == 2
    # the consumer needs no more than the loader role: it selects and inserts, never updates
    as_loader = settings.model_copy(
        update={"warehouse_url": f"{postgres_url}?options=-c%20role%3Dvigie_loader"}
    )
    loaded = ingest(as_loader, name="as-loader")
    assert loaded.batches > 0 and loaded.predictions_inserted == 0
    assert counts(settings) == after_first
    for replayed in replays:
        labels = labelled_predictions(
            settings, "flight_delay", start=replayed.day, end=replayed.day
        )
        mine = labels[labels["prediction_id"].str.startswith(replayed.run_id)]
        assert len(mine) == replayed.details["outcomes"]


def new_outcomes(settings: Settings, before: set[str]) -> list[OutcomeEvent]:
    return [e for e in read_outcomes(settings, limit=1_000_000) if e.event_id not in before]


def test_ctrl_c_stops_cleanly_and_keeps_what_was_sent(server: Server) -> None:
    before = {e.event_id for e in read_outcomes(server.settings, limit=1_000_000)}
    process = subprocess.Popen(
        replay_args(server, STOPPED_DAY, "--speed", "3600"),  # an hour a second
        env=environment(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # once the first labels are out (about 3 simulated hours after the first departure),
        # well before the end of the day (about 20 s at this speed)
        deadline = time.monotonic() + 120
        while len(new_outcomes(server.settings, before)) < 10 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, output
    assert "interrupted" in output and "stopping" in output
    entry = last_replay(server.settings)
    details = entry["details"]
    assert entry["outcome"] == "partial" and details["interrupted"]
    assert 0 < details["flights_sent"] < details["flights"]
    assert details["failures"] == 0 and details["outcomes_unwritten"] == 0
    assert len(new_outcomes(server.settings, before)) == details["outcomes"] > 0
    wait_for_payload(server.settings, entry["target"], details["requests"])
