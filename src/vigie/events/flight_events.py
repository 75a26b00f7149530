"""Typed flight and weather events: what the real-time path carries, and their JSON form.

Every event is a frozen dataclass with an ``event_id``, the instant it happened in the
world (``occurred_at``, aware UTC) and a class-level ``kind``. Ids are deterministic
(:func:`event_id_for`): the same fact emitted twice, e.g. by a replayed range, has the
same id, so consumers drop the second copy.

On the wire an event is one compact JSON object (:func:`encode`)::

    {"schema_version": 1, "kind": "flight.departed", "event_id": "flight.departed:42",
     "occurred_at": "2013-01-01T10:02:00+00:00", "flight_key": 42, ..., "dep_delay_min": 2.0}

:func:`decode` refuses anything it cannot trust with :class:`PoisonEvent` and a reason
naming the problem (not JSON, unknown kind, unsupported schema version, a missing or
mistyped field, a naive datetime, a non-finite number); the streams quarantine those.
Unknown extra fields are ignored, so a producer may add optional fields without a new
schema version.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeAlias

import orjson

#: Version of the JSON form written by :func:`encode`; :func:`decode` reads only this one.
SCHEMA_VERSION = 1


class PoisonEvent(ValueError):
    """A stored event that cannot be decoded; ``reason`` says why, naming the field.

    Args:
        reason: What is wrong, for a person reading the quarantine.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _EventBase:
    """Checks shared by every event: aware datetimes (normalised to UTC), finite numbers."""

    kind: ClassVar[str]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                if value.tzinfo is None or value.utcoffset() is None:
                    raise ValueError(f"{self.kind}: {field.name} must be timezone-aware (UTC)")
                object.__setattr__(self, field.name, value.astimezone(UTC))
            elif isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{self.kind}: {field.name} must be a finite number")


@dataclass(frozen=True)
class _FlightEvent(_EventBase):
    """What every flight event carries: the flight as the schedule names it, so any of its
    events, whatever arrives first, can make the flight known."""

    kind: ClassVar[str]
    event_id: str
    occurred_at: datetime
    flight_key: int
    carrier: str
    origin: str
    dest: str
    sched_dep: datetime


@dataclass(frozen=True)
class FlightScheduled(_FlightEvent):
    """A flight's schedule became known (``occurred_at``: when it did).

    Attributes:
        tailnum: The plane's pseudonym, when known.
        distance: Miles between the airports, when known.
        flight_number: The carrier's flight number, when known (with the carrier, origin
            and scheduled departure it names the flight as an application knows it).
    """

    kind: ClassVar[str] = "flight.scheduled"
    tailnum: str | None
    distance: float | None
    flight_number: int | None = None


@dataclass(frozen=True)
class FlightDeparted(_FlightEvent):
    """A flight left (``occurred_at``: the actual departure); delay in minutes."""

    kind: ClassVar[str] = "flight.departed"
    dep_delay_min: float


@dataclass(frozen=True)
class FlightArrived(_FlightEvent):
    """A flight arrived (``occurred_at``: the actual arrival); delay in minutes."""

    kind: ClassVar[str] = "flight.arrived"
    arr_delay_min: float


@dataclass(frozen=True)
class FlightCancelled(_FlightEvent):
    """A flight was cancelled (``occurred_at``: when that became known)."""

    kind: ClassVar[str] = "flight.cancelled"


@dataclass(frozen=True)
class FlightDiverted(_FlightEvent):
    """A flight was diverted (``occurred_at``: when that became known)."""

    kind: ClassVar[str] = "flight.diverted"


@dataclass(frozen=True)
class WeatherObserved(_EventBase):
    """One hour of weather at an origin airport (``occurred_at`` = ``hour``, UTC top of the
    hour); every measure may be missing (None)."""

    kind: ClassVar[str] = "weather.observed"
    event_id: str
    occurred_at: datetime
    origin: str
    hour: datetime
    temp: float | None
    dewp: float | None
    humid: float | None
    wind_dir: float | None
    wind_speed: float | None
    wind_gust: float | None
    precip: float | None
    pressure: float | None
    visib: float | None


#: Any event of the flight/weather streams.
Event: TypeAlias = (
    FlightScheduled
    | FlightDeparted
    | FlightArrived
    | FlightCancelled
    | FlightDiverted
    | WeatherObserved
)

#: Event class of each ``kind``.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        FlightScheduled,
        FlightDeparted,
        FlightArrived,
        FlightCancelled,
        FlightDiverted,
        WeatherObserved,
    )
}

#: A part of an event key: a flight key, an airport code, an hour.
KeyPart = int | str | datetime


def event_id_for(kind: str, key: KeyPart | tuple[KeyPart, ...]) -> str:
    """The deterministic id of the fact ``kind`` about ``key``.

    ``event_id_for("flight.departed", 42)`` is ``"flight.departed:42"``;
    ``event_id_for("weather.observed", ("JFK", hour))`` is
    ``"weather.observed:JFK:2013-01-01T05:00:00+00:00"`` (datetimes in UTC ISO form).

    Raises:
        ValueError: For an unknown kind or a naive datetime.
    """
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event kind {kind!r}; known: {sorted(EVENT_TYPES)}")
    parts = key if isinstance(key, tuple) else (key,)
    return ":".join([kind, *(_key_text(part) for part in parts)])


def _key_text(part: KeyPart) -> str:
    if isinstance(part, datetime):
        if part.tzinfo is None:
            raise ValueError("an event key's datetime must be timezone-aware")
        return part.astimezone(UTC).isoformat()
    return str(part)


def to_record(event: Event) -> dict[str, Any]:
    """The event as the JSON object :func:`encode` writes (plain Python values)."""
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "kind": event.kind}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        elif field.type == "int":
            value = int(value)  # numpy integers from a data frame
        elif isinstance(value, float) or field.type in ("float", "float | None"):
            value = None if value is None else float(value)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{event.kind}: {field.name} must be a finite number")
        record[field.name] = value
    return record


def encode(event: Event) -> bytes:
    """The event as one line of compact JSON (no end of line).

    Raises:
        ValueError: When a number is not finite (one built around the dataclass checks).
    """
    return orjson.dumps(to_record(event))


def decode(data: bytes | str) -> Event:
    """The event stored as ``data``.

    Raises:
        PoisonEvent: When ``data`` is not a supported event; the reason names the problem.
    """
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise PoisonEvent(f"not JSON: {err}") from err
    if not isinstance(record, dict):
        raise PoisonEvent(f"not a JSON object but {type(record).__name__}")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise PoisonEvent(f"unsupported schema_version {version!r} (expected {SCHEMA_VERSION})")
    kind = record.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        raise PoisonEvent(f"unknown kind {kind!r}; known: {sorted(EVENT_TYPES)}")
    values = {
        f.name: _field(record, kind, f.name, str(f.type))
        for f in dataclasses.fields(cls)
        if f.name in record or f.default is dataclasses.MISSING  # a newer optional field
    }
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise PoisonEvent(str(err)) from err


def _field(record: Mapping[str, Any], kind: str, name: str, annotation: str) -> Any:
    if name not in record:
        raise PoisonEvent(f"{kind}: missing field {name!r}")
    value = record[name]
    optional = annotation.endswith(" | None")
    if value is None and optional:
        return None
    check = _CHECKS[annotation.removesuffix(" | None")]
    try:
        return check(value)
    except (TypeError, ValueError) as err:
        raise PoisonEvent(f"{kind}: field {name!r} {err}, got {value!r}") from err


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("must be an integer")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


def _as_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("must be an ISO-8601 datetime string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError("is not an ISO-8601 datetime") from err
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("is a naive datetime (no UTC offset)")
    return parsed.astimezone(UTC)


#: Decoder of each field annotation (without ``| None``) that events use.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "int": _as_int,
    "float": _as_float,
    "str": _as_str,
    "datetime": _as_datetime,
}
