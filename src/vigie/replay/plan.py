"""What a replay is asked to do (:class:`ReplayPlan`), what it sends (:class:`ReplayRequest`)
through what (:data:`Send`, :class:`OutcomeWriter`, :class:`Clock`) and what it did
(:class:`ReplayStats`); the schedule itself is :mod:`vigie.replay.player`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent


@dataclass(frozen=True)
class ReplayRequest:
    """One prediction request of the replay.

    Attributes:
        model: The served model asked.
        request_id: A unique id (the payload log's ``request_id``).
        columns: Input name to its column of ``rows`` values (numpy slices of the window).
        row_ids: The flights' keys, one per row (sent as the ``row_ids`` parameter).
    """

    model: str
    request_id: str
    columns: dict[str, npt.NDArray[Any]]
    row_ids: list[str]

    @property
    def rows(self) -> int:
        """Number of rows (flights) in the request."""
        return len(self.row_ids)


#: Sends one request and returns once answered; raises VigieError when it failed
#: (code UNAVAILABLE for what is worth retrying).
Send = Callable[[ReplayRequest], object]


class OutcomeWriter(Protocol):
    """Where outcome events go (:class:`vigie.events.outcomes.OutcomeLog`)."""

    @property
    def pending(self) -> int:
        """Events emitted and not written yet."""

    def emit(self, events: list[OutcomeEvent]) -> None:
        """Queue events."""

    def flush(self) -> bool:
        """Write the queued events; True when none is left pending."""


class Clock(Protocol):
    """Real time, as the replay reads and spends it."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going back."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""


class SystemClock:
    """The real clock (``time.monotonic``, ``time.sleep``)."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)``."""
        time.sleep(seconds)


#: What a replayed request may carry (see :attr:`ReplayPlan.client_fields`).
CLIENT_FIELDS = ("full", "schedule")

#: The inputs of a schedule-only request.
SCHEDULE_FIELDS = ("carrier", "origin", "dest", "sched_dep")


@dataclass(frozen=True)
class ReplayPlan:
    """How to replay.

    Attributes:
        models: Each served model asked and its input names (one request per model).
        speed: Simulated seconds per real second; 0: as fast as possible.
        max_rows: Most flights per request.
        limit: Most flights replayed (the first ones of the window); None: all.
        concurrency: Requests in flight at once.
        retries: Tries after the first for a request answered UNAVAILABLE.
        retry_wait_s: First wait before a retry; doubles each time.
        source: The outcome events' ``source``.
        run_id: Prefix of every request id (unique per run).
        client_fields: What a request carries: ``full`` (every model input, computed from
            the warehouse as the training snapshots are) or ``schedule`` (what an
            application knows: carrier, flight number, origin, dest and ``sched_dep``; the
            service fills the rest from its online store).
        events: Publish the window's flight and weather events at their instants.
    """

    models: dict[str, tuple[str, ...]]
    speed: float = 0.0
    max_rows: int = 1
    limit: int | None = None
    concurrency: int = 4
    retries: int = 3
    retry_wait_s: float = 0.2
    source: str = "replay"
    run_id: str = "replay"
    client_fields: str = "full"
    events: bool = False

    def check(self) -> None:
        """Raises VigieError INVALID_INPUT naming the first option out of range."""
        problems = {
            "models": not self.models,
            "speed": self.speed < 0 or not np.isfinite(self.speed),
            "max_rows": self.max_rows < 1,
            "limit": self.limit is not None and self.limit < 1,
            "concurrency": self.concurrency < 1,
            "retries": self.retries < 0,
            "client_fields": self.client_fields not in CLIENT_FIELDS,
        }
        for name, bad in problems.items():
            if bad:
                raise VigieError(
                    ErrorCode.INVALID_INPUT,
                    f"replay option {name} is out of range: {getattr(self, name)!r} "
                    "(models: at least one; speed >= 0; max_rows, limit, concurrency >= 1; "
                    f"retries >= 0; client_fields: {' or '.join(CLIENT_FIELDS)})",
                    field=name,
                )


@dataclass
class ReplayStats:
    """What a replay did (also its progress while it runs).

    Attributes:
        flights: Flights in the replay (the window, or ``limit`` of it).
        flights_sent: Flights whose requests were sent (every model's).
        requests: Requests answered.
        rows: Rows answered (a row per flight per model).
        failures: Requests that failed after their retries.
        failed_rows: Rows of those requests.
        failure_codes: Failed requests by error code.
        retries: Retries made.
        outcomes: Outcome events emitted.
        outcomes_unwritten: Emitted events the outcome log could not write.
        simulated_start: Where the simulated clock started (first departure).
        simulated_until: How far the simulated clock got.
        elapsed_s: Real time the replay took.
        interrupted: It was stopped before its end.
        events_published: Flight and weather events published.
        feature_waits_timed_out: Times the feature processor had not applied the events
            published when the requests that follow them were due.
    """

    flights: int = 0
    flights_sent: int = 0
    requests: int = 0
    rows: int = 0
    failures: int = 0
    failed_rows: int = 0
    failure_codes: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    outcomes: int = 0
    outcomes_unwritten: int = 0
    simulated_start: datetime | None = None
    simulated_until: datetime | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False
    events_published: int = 0
    feature_waits_timed_out: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, summaries)."""
        return {
            "flights": self.flights,
            "flights_sent": self.flights_sent,
            "requests": self.requests,
            "rows": self.rows,
            "failures": self.failures,
            "failed_rows": self.failed_rows,
            "failure_codes": dict(self.failure_codes),
            "retries": self.retries,
            "outcomes": self.outcomes,
            "outcomes_unwritten": self.outcomes_unwritten,
            "simulated_start": _iso(self.simulated_start),
            "simulated_until": _iso(self.simulated_until),
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
            "events_published": self.events_published,
            "feature_waits_timed_out": self.feature_waits_timed_out,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
