"""Typed flight/weather events and their streams; shared sample events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigie.events.flight_events import (
    Event,
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightDiverted,
    FlightScheduled,
    WeatherObserved,
    event_id_for,
)

T0 = datetime(2013, 1, 1, 5, tzinfo=UTC)


def departed(key: int, *, delay: float = 2.0, at: datetime | None = None) -> FlightDeparted:
    """A departure of flight ``key`` (ids follow :func:`event_id_for`)."""
    sched = T0 + timedelta(minutes=key)
    return FlightDeparted(
        event_id=event_id_for("flight.departed", key),
        occurred_at=at or sched + timedelta(minutes=delay),
        flight_key=key,
        carrier="UA",
        origin="EWR",
        dest="IAH",
        sched_dep=sched,
        dep_delay_min=delay,
    )


def every_kind() -> list[Event]:
    """One event of each kind, optional fields both given and missing."""
    common = {"carrier": "AA", "origin": "JFK", "dest": "MIA", "sched_dep": T0}
    hour = T0.replace(minute=0)
    return [
        FlightScheduled(
            event_id_for("flight.scheduled", 1),
            T0 - timedelta(days=30),
            1,
            **common,
            tailnum="p-3f9a",
            distance=1089.0,
        ),
        FlightScheduled(
            event_id_for("flight.scheduled", 2), T0, 2, **common, tailnum=None, distance=None
        ),
        departed(3, delay=-4.0),
        FlightArrived(
            event_id_for("flight.arrived", 4),
            T0 + timedelta(hours=3),
            4,
            **common,
            arr_delay_min=33.5,
        ),
        FlightCancelled(event_id_for("flight.cancelled", 5), T0, 5, **common),
        FlightDiverted(event_id_for("flight.diverted", 6), T0, 6, **common),
        WeatherObserved(
            event_id_for("weather.observed", ("JFK", hour)),
            hour,
            "JFK",
            hour,
            temp=39.02,
            dewp=26.06,
            humid=59.37,
            wind_dir=270.0,
            wind_speed=10.36,
            wind_gust=None,
            precip=0.0,
            pressure=1012.0,
            visib=10.0,
        ),
    ]
