"""Flight/weather events: the JSON round trip, deterministic ids, and every poison reason."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from vigie.events.flight_events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    FlightDeparted,
    PoisonEvent,
    decode,
    encode,
    event_id_for,
    to_record,
)

from . import T0, departed, every_kind


def test_every_kind_round_trips() -> None:
    events = every_kind()
    assert {e.kind for e in events} == set(EVENT_TYPES)
    for event in events:
        data = encode(event)
        assert b"\n" not in data and b" " not in data.replace(b"p-3f9a", b"")
        assert decode(data) == event
        assert type(decode(data)) is type(event)


def test_the_wire_form_names_version_kind_id_and_utc_time() -> None:
    record = json.loads(encode(departed(7)))
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["kind"] == "flight.departed"
    assert record["event_id"] == "flight.departed:7"
    assert record["occurred_at"] == "2013-01-01T05:09:00+00:00"
    assert record["dep_delay_min"] == 2.0


def test_datetimes_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = departed(1, at=datetime(2013, 1, 1, 7, 0, tzinfo=paris))
    assert event.occurred_at == datetime(2013, 1, 1, 6, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert decode(encode(event)).occurred_at.tzinfo == UTC


def test_events_are_frozen_and_refuse_naive_or_non_finite_values() -> None:
    event = departed(1)
    with pytest.raises(FrozenInstanceError):
        event.flight_key = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="occurred_at must be timezone-aware"):
        departed(1, at=datetime(2013, 1, 1, 6))
    with pytest.raises(ValueError, match="dep_delay_min must be a finite number"):
        FlightDeparted("x", T0, 1, "UA", "EWR", "IAH", T0, float("nan"))


def test_ids_are_deterministic() -> None:
    hour = datetime(2013, 1, 1, 5, tzinfo=UTC)
    assert event_id_for("flight.arrived", 42) == "flight.arrived:42"
    assert event_id_for("weather.observed", ("JFK", hour)) == (
        "weather.observed:JFK:2013-01-01T05:00:00+00:00"
    )
    other_zone = hour.astimezone(timezone(timedelta(hours=-5)))
    assert event_id_for("weather.observed", ("JFK", other_zone)) == event_id_for(
        "weather.observed", ("JFK", hour)
    )
    assert departed(9) == departed(9)
    with pytest.raises(ValueError, match="unknown event kind"):
        event_id_for("flight.teleported", 1)


def test_numpy_style_values_are_written_as_plain_numbers() -> None:
    class Int(int):
        pass

    event = FlightDeparted("x", T0, Int(5), "UA", "EWR", "IAH", T0, 3)  # type: ignore[arg-type]
    record = to_record(event)
    assert type(record["flight_key"]) is int
    assert type(record["dep_delay_min"]) is float


def _departed_record(**changes: Any) -> bytes:
    record = json.loads(encode(departed(1)))
    for name, value in changes.items():
        if value is _DROP:
            del record[name]
        else:
            record[name] = value
    return json.dumps(record).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_departed_record(kind="flight.teleported"), "unknown kind 'flight.teleported'"),
        (_departed_record(kind=_DROP), "unknown kind None"),
        (_departed_record(schema_version=2), "unsupported schema_version 2"),
        (_departed_record(schema_version=_DROP), "unsupported schema_version None"),
        (_departed_record(schema_version=True), "unsupported schema_version True"),
        (_departed_record(flight_key=_DROP), "missing field 'flight_key'"),
        (_departed_record(event_id=_DROP), "missing field 'event_id'"),
        (_departed_record(flight_key="42"), "field 'flight_key' must be an integer"),
        (_departed_record(flight_key=True), "field 'flight_key' must be an integer"),
        (_departed_record(dep_delay_min="late"), "field 'dep_delay_min' must be a number"),
        (_departed_record(dep_delay_min=None), "field 'dep_delay_min' must be a number"),
        (_departed_record(carrier=7), "field 'carrier' must be a string"),
        (_departed_record(sched_dep="yesterday"), "field 'sched_dep' is not an ISO-8601"),
        (_departed_record(sched_dep=5), "field 'sched_dep' must be an ISO-8601"),
        (
            _departed_record(occurred_at="2013-01-01T05:00:00"),
            "field 'occurred_at' is a naive datetime",
        ),
        (
            _departed_record(dep_delay_min=float("nan")),
            "field 'dep_delay_min' must be a finite number",
        ),
        (
            _departed_record(dep_delay_min=float("inf")),
            "field 'dep_delay_min' must be a finite number",
        ),
    ],
)
def test_poison_names_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PoisonEvent) as caught:
        decode(data)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_optional_fields_may_be_null_and_extra_fields_are_ignored() -> None:
    weather = every_kind()[-1]
    record = json.loads(encode(weather))
    record["temp"] = None
    record["added_later"] = "ignored"
    decoded = decode(json.dumps(record))
    assert decoded.temp is None  # type: ignore[union-attr]
    assert decoded.event_id == weather.event_id


def test_a_schedule_written_before_flight_numbers_reads_with_none() -> None:
    scheduled = every_kind()[0]
    record = json.loads(encode(scheduled))
    assert record["flight_number"] is None
    del record["flight_number"]  # as schema version 1 wrote it before the optional field
    decoded = decode(json.dumps(record))
    assert decoded == scheduled
    numbered = json.loads(encode(scheduled))
    numbered["flight_number"] = "1141"
    with pytest.raises(PoisonEvent, match="flight_number"):
        decode(json.dumps(numbered))
