"""Enrichment: the model inputs an application does not know, filled from the online store.

An application knows its flight: carrier, origin, destination and scheduled departure
(``sched_dep``, ISO 8601; New York local time when it has no offset), and maybe the tail
number and the distance. :class:`Enricher` fills every other input a model takes, for all
rows of a request at once, as of each row's scheduled departure (the instant the training
snapshots compute them at):

* the calendar (hour, minute, day of week, day, month) from ``sched_dep``;
* the distance and aircraft from the flight's schedule event (or the route and the plane
  dimension), the tail number pseudonymised with the policy's key when sent in clear;
* the weather of the origin's hour, from the weather events;
* the stream features (:mod:`vigie.features.history`) from the flight events.

Inputs the caller sends are kept as sent. A value whose source is older than its bound
(:data:`MAX_AGE_S`) is served as missing (NaN) and counted: a processor that stopped must
not pass hours-old delays off as current.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.features import history
from vigie.features.history import HOUR_US, Targets
from vigie.features.store import PLANE, WEATHER, Found, Lookup, OnlineStore, PlanKey, us

#: Request inputs that are not model inputs: what an application knows of its flight.
SCHED_DEP = "sched_dep"
TAILNUM = "tailnum"
FLIGHT = "flight"
REQUEST_INPUTS = (SCHED_DEP, TAILNUM, FLIGHT)
#: The request inputs that are numbers (the others are strings).
NUMERIC_REQUEST_INPUTS = frozenset({FLIGHT})

#: What enrichment needs the caller to send.
KEYS = ("carrier", "origin", "dest", SCHED_DEP)

CALENDAR = ("hour", "minute", "day_of_week", "day", "month")
LOCAL = ZoneInfo("America/New_York")

#: Every model input enrichment can fill.
ENRICHABLE = frozenset({*CALENDAR, "distance", *PLANE, *WEATHER, *history.NAMES})

#: Oldest source behind a served value, seconds, per family: the newest flight event seen
#: (stream features) and the weather observation (its hour).
MAX_AGE_S = {"stream": 2 * 3600.0, "weather": 2 * 3600.0}


@dataclass
class Enrichment:
    """What enrichment did to one request (recorded in the payload log).

    Attributes:
        filled: The inputs filled by the platform.
        missing: Per input, the rows the store had no value for (NaN served).
        stale: Per family, the rows whose source was older than its bound (NaN served).
        age_s: Per family, the oldest source age among the rows, seconds.
    """

    filled: list[str] = field(default_factory=list)
    rows_missing: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    rows_stale: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    rows_age_s: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    @property
    def missing(self) -> dict[str, int]:
        """Per input, the rows served missing (only inputs with any)."""
        return {k: int(v.sum()) for k, v in self.rows_missing.items() if v.any()}

    @property
    def stale(self) -> dict[str, int]:
        """Per family, the rows served missing because too old (only families with any)."""
        return {k: int(v.sum()) for k, v in self.rows_stale.items() if v.any()}

    @property
    def age_s(self) -> dict[str, float]:
        """Per family, the oldest source age among the rows, seconds."""
        return {k: float(v.max()) for k, v in self.rows_age_s.items() if v.size}

    def part(self, start: int, stop: int) -> Enrichment:
        """The record of rows ``start:stop`` (one request of a coalesced lookup)."""
        return Enrichment(
            list(self.filled),
            {k: v[start:stop] for k, v in self.rows_missing.items()},
            {k: v[start:stop] for k, v in self.rows_stale.items()},
            {k: v[start:stop] for k, v in self.rows_age_s.items()},
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "filled": self.filled,
            "missing": self.missing,
            "stale": self.stale,
            "age_s": {k: round(v, 3) if math.isfinite(v) else None for k, v in self.age_s.items()},
        }


def parse_sched_dep(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Scheduled departures (ISO 8601 strings) as UTC microseconds.

    Raises:
        VigieError: INVALID_INPUT naming ``sched_dep`` and the row of a value that is
            missing or not an ISO 8601 date and time.
    """
    out = np.empty(values.shape[0], dtype=np.int64)
    for row, text in enumerate(values):
        try:
            when = datetime.fromisoformat(str(text)) if text is not None else None
        except ValueError:
            when = None
        if when is None:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"input {SCHED_DEP!r}: row {row} is {text!r}, not an ISO 8601 date and time "
                "(e.g. 2013-03-01T06:15, New York local time, or with its UTC offset)",
                input=SCHED_DEP,
                row=row,
            )
        out[row] = us(when if when.tzinfo is not None else when.replace(tzinfo=LOCAL))
    return out


def calendar(sched_us: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.float32]]:
    """Hour, minute, ISO day of week, day and month of each departure, New York time."""
    local = [datetime.fromtimestamp(v / 1e6, LOCAL) for v in sched_us.tolist()]
    return {
        "hour": np.asarray([t.hour for t in local], dtype=np.float32),
        "minute": np.asarray([t.minute for t in local], dtype=np.float32),
        "day_of_week": np.asarray([t.isoweekday() for t in local], dtype=np.float32),
        "day": np.asarray([t.day for t in local], dtype=np.float32),
        "month": np.asarray([t.month for t in local], dtype=np.float32),
    }


class Enricher:
    """Fills the inputs a request lacks from an online store.

    Args:
        store: The online store.
        pseudonymize: Turns a tail number sent in clear into its pseudonym.
        max_age_s: Bound per family (default :data:`MAX_AGE_S`).
    """

    def __init__(
        self,
        store: OnlineStore,
        pseudonymize: Callable[[str], str],
        *,
        max_age_s: Mapping[str, float] | None = None,
    ) -> None:
        self._store = store
        self._pseudonymize = pseudonymize
        self._max_age_us = {k: v * 1e6 for k, v in (max_age_s or MAX_AGE_S).items()}

    def close(self) -> None:
        """Close the store."""
        self._store.close()

    def check(
        self, columns: dict[str, npt.NDArray[Any]], rows: int, wanted: tuple[str, ...]
    ) -> list[str]:
        """The inputs of ``wanted`` the request left out, once its keys are checked (no
        store read: a request refused here is refused alone, before any shared lookup).

        Raises:
            VigieError: INVALID_INPUT naming what enrichment needs and was not sent, or a
                malformed ``sched_dep`` or ``flight``.
        """
        lacking = [name for name in wanted if name not in columns]
        if not lacking:
            return lacking
        absent = [k for k in KEYS if k not in columns]
        if absent or not ENRICHABLE.issuperset(lacking):
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"missing input(s): {', '.join(lacking)}; send them, or send "
                f"{', '.join(KEYS)} (and optionally {TAILNUM}, {FLIGHT}) and the service "
                f"fills {', '.join(sorted(ENRICHABLE & set(lacking)))} itself"
                + (f" (not sent: {', '.join(absent)})" if absent else ""),
                input=(absent or lacking)[0],
            )
        parse_sched_dep(columns[SCHED_DEP])
        _flight_numbers(columns.get(FLIGHT), rows)
        return lacking

    def fill(
        self, columns: dict[str, npt.NDArray[Any]], rows: int, wanted: tuple[str, ...]
    ) -> tuple[dict[str, npt.NDArray[Any]], Enrichment]:
        """The model's columns ``wanted``: those sent, and the others filled.

        Raises:
            VigieError: INVALID_INPUT naming the inputs enrichment needs and were not sent,
                or a malformed ``sched_dep``.
        """
        lacking = self.check(columns, rows, wanted)
        out = {name: columns[name] for name in wanted if name in columns}
        done = Enrichment(filled=lacking)
        if not lacking:
            return out, done
        request = _Request.of(columns, rows, self._pseudonymize)
        found = self._store.lookup(request.lookup(lacking))
        values = {**calendar(request.sched_us), **request.reference(found)}
        values.update(request.weather(found, self._max_age_us["weather"], done))
        if any(name in history.NAMES for name in lacking):
            values.update(request.stream(found, self._max_age_us["stream"], done))
        for name in lacking:
            out[name] = values[name]
            done.rows_missing[name] = _missing_rows(values[name])
        return out, done


def _missing_rows(column: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if column.dtype == object:
        return np.asarray([v is None for v in column.tolist()], dtype=np.bool_)
    return np.asarray(np.isnan(column), dtype=np.bool_)


@dataclass
class _Request:
    """The keys of a request's rows, as enrichment reads them."""

    carrier: list[str]
    origin: list[str]
    dest: list[str]
    sched_us: npt.NDArray[np.int64]
    tail: list[str | None]
    distance: npt.NDArray[np.float32] | None
    flight: list[int]

    @classmethod
    def of(
        cls, columns: dict[str, npt.NDArray[Any]], rows: int, pseudonymize: Callable[[str], str]
    ) -> _Request:
        tails = columns.get(TAILNUM)
        tail: list[str | None] = (
            [None] * rows if tails is None else [_pseudonym(t, pseudonymize) for t in tails]
        )
        return cls(
            carrier=[str(v) for v in columns["carrier"]],
            origin=[str(v) for v in columns["origin"]],
            dest=[str(v) for v in columns["dest"]],
            sched_us=parse_sched_dep(columns[SCHED_DEP]),
            tail=tail,
            distance=columns.get("distance"),
            flight=_flight_numbers(columns.get(FLIGHT), rows),
        )

    def hours(self) -> list[int]:
        return [int(v) - int(v) % HOUR_US for v in self.sched_us.tolist()]

    def plan_keys(self) -> list[PlanKey]:
        return list(
            zip(
                self.carrier, self.origin, self.dest, self.sched_us.tolist(), self.flight,
                strict=True,
            )
        )  # fmt: skip

    def lookup(self, lacking: list[str]) -> Lookup:
        streams = any(name in history.NAMES for name in lacking)
        return Lookup(
            origins=frozenset(self.origin) if streams else frozenset(),
            dests=frozenset(self.dest) if streams else frozenset(),
            first_us=int(self.sched_us.min()),
            last_us=int(self.sched_us.max()),
            weather=frozenset(zip(self.origin, self.hours(), strict=True)),
            tails=frozenset(t for t in self.tail if t),
            schedules=frozenset(self.plan_keys()),
            routes=frozenset(zip(self.origin, self.dest, strict=True)),
        )

    def reference(self, found: Found) -> dict[str, npt.NDArray[Any]]:
        """Distance and aircraft: sent, else from the schedule, else route and plane."""
        plans = [found.schedules.get(k, (None, None)) for k in self.plan_keys()]
        tails = [t or plan[0] for t, plan in zip(self.tail, plans, strict=True)]
        if self.distance is not None:
            distance = self.distance
        else:
            distance = np.asarray(
                [
                    plan[1] if plan[1] is not None else found.routes.get((o, d), np.nan)
                    for plan, o, d in zip(plans, self.origin, self.dest, strict=True)
                ],
                dtype=np.float32,
            )
        planes = [found.planes.get(t) if t else None for t in tails]
        out: dict[str, npt.NDArray[Any]] = {"distance": distance}
        for i, name in enumerate(PLANE):
            column = [None if p is None else p[i] for p in planes]
            out[name] = _column(name, column)
        return out

    def weather(
        self, found: Found, max_age_us: float, done: Enrichment
    ) -> dict[str, npt.NDArray[Any]]:
        """The origin's weather of each departure's hour (NaN when older than the bound)."""
        keys = list(zip(self.origin, self.hours(), strict=True))
        observed = [found.weather.get(k) for k in keys]
        ages = [(t - hour) for t, (_, hour) in zip(self.sched_us.tolist(), keys, strict=True)]
        stale = [age > max_age_us for age in ages]
        done.rows_stale["weather"] = np.asarray(stale, dtype=np.bool_)
        done.rows_age_s["weather"] = np.asarray(ages, dtype=np.float64) / 1e6
        return {
            name: _column(
                name,
                [None if o is None or s else o[i] for o, s in zip(observed, stale, strict=True)],
            )
            for i, name in enumerate(WEATHER)
        }

    def stream(
        self, found: Found, max_age_us: float, done: Enrichment
    ) -> dict[str, npt.NDArray[Any]]:
        """The stream features at each departure (NaN where the events are too old)."""
        values = history.compute(
            found.facts,
            Targets(
                origin=np.asarray(self.origin, dtype=object),
                dest=np.asarray(self.dest, dtype=object),
                carrier=np.asarray(self.carrier, dtype=object),
                at_us=self.sched_us,
            ),
        )
        watermark = found.watermark_us
        if watermark is None:
            ages = np.full(self.sched_us.shape[0], np.inf)
        else:
            ages = np.maximum(self.sched_us - watermark, 0).astype(np.float64)
        stale = ages > max_age_us
        done.rows_stale["stream"] = stale
        done.rows_age_s["stream"] = ages / 1e6
        return {
            name: np.where(stale, np.nan, column).astype(np.float32)
            for name, column in values.items()
        }


def _flight_numbers(values: npt.NDArray[Any] | None, rows: int) -> list[int]:
    """The flight numbers sent (-1 where none: NaN, or no ``flight`` input).

    Raises:
        VigieError: INVALID_INPUT naming ``flight`` and the row of a value that is not a
            whole, non-negative number.
    """
    if values is None:
        return [-1] * rows
    out = []
    for row, value in enumerate(np.asarray(values, dtype=np.float64).tolist()):
        if math.isnan(value):
            out.append(-1)
        elif value < 0 or value != int(value):
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"input {FLIGHT!r}: row {row} is {value!r}, not a flight number (a whole "
                "number from 0)",
                input=FLIGHT,
                row=row,
            )
        else:
            out.append(int(value))
    return out


def _pseudonym(value: Any, pseudonymize: Callable[[str], str]) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text if text.startswith("p_") else pseudonymize(text)


_STRINGS = frozenset({"manufacturer", "engine"})


def _column(name: str, values: list[Any]) -> npt.NDArray[Any]:
    if name in _STRINGS:
        return np.asarray([None if v is None else str(v) for v in values], dtype=object)
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float32)
