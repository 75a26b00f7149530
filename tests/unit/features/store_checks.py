"""Checks every online store must pass (SQLite here, Redis in the integration tests).

A random day of flight and weather events is applied to the store; the features the
enricher serves for schedule-only rows must equal, value for value, the ones
:func:`vigie.features.history.compute` gives offline over the same facts.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np

from vigie.events.flight_events import (
    Event,
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightScheduled,
    WeatherObserved,
    event_id_for,
)
from vigie.features import history
from vigie.features.history import NONE_US, FlightFacts, Targets
from vigie.features.online import Enricher
from vigie.features.store import OnlineStore, Plane, us

T0 = datetime(2013, 3, 1, 5, tzinfo=UTC)
ORIGINS, DESTS, CARRIERS = ("JFK", "LGA", "EWR"), ("BOS", "ORD", "MIA", "ATL"), ("AA", "B6", "UA")
PLANES = [Plane(f"p_{i:024x}", 1990.0 + i, "BOEING", 150.0 + i, "Turbo-fan") for i in range(5)]


def day_of_events(seed: int = 7, flights: int = 300) -> tuple[list[Event], FlightFacts]:
    """Events of ``flights`` random flights over a day (and the facts they tell)."""
    rng = random.Random(seed)
    events: list[Event] = []
    rows = []
    for key in range(1, flights + 1):
        origin, dest, carrier = rng.choice(ORIGINS), rng.choice(DESTS), rng.choice(CARRIERS)
        sched = T0 + timedelta(minutes=5 * rng.randrange(0, 24 * 12))
        head = {"flight_key": key, "carrier": carrier, "origin": origin, "dest": dest}
        tail = rng.choice(PLANES).tail
        events.append(
            FlightScheduled(event_id_for("flight.scheduled", key), sched, **head, sched_dep=sched,
                            tailnum=tail, distance=float(100 + key % 7 * 100))
        )  # fmt: skip
        cancelled = rng.random() < 0.05
        dep_us = arr_us = NONE_US
        dep_delay = arr_delay = math.nan
        if cancelled:
            events.append(FlightCancelled(event_id_for("flight.cancelled", key), sched, **head,
                                          sched_dep=sched))  # fmt: skip
        else:
            dep_delay = float(rng.randrange(-10, 120))
            dep = sched + timedelta(minutes=dep_delay)
            arr_delay = dep_delay + rng.randrange(-20, 20)
            arr = dep + timedelta(minutes=rng.randrange(60, 300))
            events.append(FlightDeparted(event_id_for("flight.departed", key), dep, **head,
                                         sched_dep=sched, dep_delay_min=dep_delay))  # fmt: skip
            events.append(FlightArrived(event_id_for("flight.arrived", key), arr, **head,
                                        sched_dep=sched, arr_delay_min=arr_delay))  # fmt: skip
            dep_us, arr_us = us(dep), us(arr)
        rows.append((key, origin, dest, carrier, us(sched), dep_us, dep_delay, arr_us, arr_delay,
                     cancelled))  # fmt: skip
    for origin in ORIGINS:
        for hour in range(30):
            at = T0 + timedelta(hours=hour)
            events.append(
                WeatherObserved(event_id_for("weather.observed", (origin, at)), at, origin, at,
                                temp=40.0 + hour, dewp=30.0, humid=None, wind_dir=180.0,
                                wind_speed=5.0, wind_gust=None, precip=0.0, pressure=1010.0,
                                visib=10.0)
            )  # fmt: skip
    cols = list(zip(*rows, strict=True))
    facts = FlightFacts(
        np.asarray(cols[0], np.int64), np.asarray(cols[1], object), np.asarray(cols[2], object),
        np.asarray(cols[3], object), np.asarray(cols[4], np.int64), np.asarray(cols[5], np.int64),
        np.asarray(cols[6], float), np.asarray(cols[7], np.int64), np.asarray(cols[8], float),
        np.asarray(cols[9], bool),
    )  # fmt: skip
    return events, facts


def schedule_rows(facts: FlightFacts, count: int = 40) -> dict[str, np.ndarray]:
    """Schedule-only request columns for ``count`` of the flights (those after 10:00)."""
    later = np.flatnonzero(facts.sched_us >= us(T0 + timedelta(hours=5)))[:count]
    stamps = [
        datetime.fromtimestamp(v / 1e6, UTC).isoformat() for v in facts.sched_us[later].tolist()
    ]
    return {
        "carrier": facts.carrier[later],
        "origin": facts.origin[later],
        "dest": facts.dest[later],
        "sched_dep": np.asarray(stamps, dtype=object),
        "_index": later,
    }


WANTED = ("carrier", "origin", "dest", "distance", "hour", "temp", "plane_year", "seats",
          *history.NAMES)  # fmt: skip


def check_served_equals_offline(
    store: OnlineStore, events: list[Event], facts: FlightFacts
) -> None:
    """The enricher's values equal the offline computation for the same flights."""
    store.put_reference(PLANES, [])
    store.apply(events)
    request = schedule_rows(facts)
    index = request.pop("_index")
    enricher = Enricher(store, lambda tail: "p_" + tail)
    columns, done = enricher.fill(dict(request), len(index), WANTED)
    assert done.filled == [n for n in WANTED if n not in request]
    assert done.stale == {}
    offline = history.compute(
        facts,
        Targets(
            facts.origin[index], facts.dest[index], facts.carrier[index], facts.sched_us[index]
        ),
    )
    for name in history.NAMES:
        np.testing.assert_allclose(columns[name], offline[name], rtol=1e-6, err_msg=name)
    assert np.all(columns["distance"] == [100 + k % 7 * 100 for k in facts.flight_key[index]])
    hours = [datetime.fromtimestamp(v / 1e6, UTC) for v in facts.sched_us[index].tolist()]
    assert columns["temp"].tolist() == [40.0 + (h - T0).total_seconds() // 3600 for h in hours]
    assert not np.isnan(columns["plane_year"]).any()


def check_idempotent_in_any_order(
    store: OnlineStore, events: list[Event], facts: FlightFacts
) -> None:
    """Applying every event twice, shuffled, serves what one ordered pass serves."""
    store.put_reference(PLANES, [])
    doubled = events + events
    random.Random(3).shuffle(doubled)
    for start in range(0, len(doubled), 97):
        store.apply(doubled[start : start + 97])
    request = schedule_rows(facts)
    index = request.pop("_index")
    columns, _ = Enricher(store, str).fill(dict(request), len(index), WANTED)
    offline = history.compute(
        facts,
        Targets(
            facts.origin[index], facts.dest[index], facts.carrier[index], facts.sched_us[index]
        ),
    )
    for name in history.NAMES:
        np.testing.assert_allclose(columns[name], offline[name], rtol=1e-6, err_msg=name)
    assert store.watermark_us() == max(us(e.occurred_at) for e in events)


def check_the_flight_number_picks_the_flight(store: OnlineStore) -> None:
    """Two flights of one carrier on one route at one minute (it happens: 94 times in 2013):
    the flight number sent picks the right aircraft; without it, the first by key."""
    store.put_reference(PLANES, [])
    sched = T0 + timedelta(hours=6)
    head = {"carrier": "AA", "origin": "JFK", "dest": "MIA", "sched_dep": sched}
    store.apply(
        [
            FlightScheduled(event_id_for("flight.scheduled", key), sched, key, **head,
                            tailnum=PLANES[key].tail, distance=1089.0, flight_number=number)
            for key, number in ((1, 1141), (2, 2300))
        ]
    )  # fmt: skip
    request = {
        "carrier": np.asarray(["AA"] * 3, dtype=object),
        "origin": np.asarray(["JFK"] * 3, dtype=object),
        "dest": np.asarray(["MIA"] * 3, dtype=object),
        "sched_dep": np.asarray([sched.isoformat()] * 3, dtype=object),
        "flight": np.asarray([2300, 1141, np.nan], dtype=np.float32),
    }
    columns, _ = Enricher(store, str).fill(request, 3, ("carrier", "plane_year", "seats"))
    assert columns["plane_year"].tolist() == [PLANES[2].plane_year, PLANES[1].plane_year,
                                              PLANES[1].plane_year]  # fmt: skip
