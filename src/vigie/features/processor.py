"""The feature processor: flight and weather events in, the online store kept current.

It consumes the ``flights`` event stream in its consumer group (at least once; a batch is
acked only after the store committed it, and applying an event twice changes nothing),
drops what can no longer matter to any prediction (:data:`KEEP_US` behind the newest
event), and loads the reference data the streams do not carry (aircraft and route
distances) from the warehouse's dimensions.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

import redis

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.consume import ConsumerMetrics, IdempotentConsumer
from vigie.events.stream import EventConsumer, open_event_stream
from vigie.features.history import HOUR_US
from vigie.features.store import OnlineStore, Plane, SqliteStore
from vigie.warehouse.connection import connect

#: The consumer group of the processor on the ``flights`` stream.
GROUP = "features"
#: How long after the newest event a flight or an hour of weather is kept: a day and a
#: half, beyond any window (6 h) plus the longest flight.
KEEP_US = 36 * HOUR_US

_log = logging.getLogger(__name__)

PLANES_SQL = """
SELECT tailnum_pseudonym, year_built, manufacturer, seats, engine_type
FROM dim_plane WHERE plane_key <> 0
"""
ROUTES_SQL = """
SELECT origin_code, dest_code, MIN(distance_mi) FROM fact_flight GROUP BY origin_code, dest_code
"""


def open_store(settings: Settings, *, read_only: bool = False) -> OnlineStore:
    """The online store ``VIGIE_FEATURES_URL`` names (embedded SQLite when unset).

    Raises:
        VigieError: CONFIGURATION for an unsupported URL.
    """
    url = settings.features_url
    if url is None:
        return SqliteStore(settings.home / "features" / "online.sqlite", read_only=read_only)
    if urlparse(url).scheme in {"redis", "rediss", "unix"}:
        from vigie.features.redis_store import RedisStore  # noqa: PLC0415 (redis client)

        return RedisStore(url)
    raise VigieError(
        ErrorCode.CONFIGURATION,
        f"VIGIE_FEATURES_URL {url!r} is not supported: use redis://... or leave it unset "
        "for the embedded store",
        field="features_url",
    )


def load_reference(settings: Settings, store: OnlineStore) -> tuple[int, int]:
    """Copy the aircraft (by pseudonymised tail number) and route distances from the
    warehouse into ``store``; how many of each."""
    warehouse = connect(settings.resolved_warehouse_url, read_only=True)
    try:
        planes = [
            Plane(
                str(row[0]),
                None if row[1] is None else float(row[1]),
                row[2],
                None if row[3] is None else float(row[3]),
                row[4],
            )
            for row in (list(r.values()) for r in warehouse.query_arrow(PLANES_SQL).to_pylist())
        ]
        routes = [
            (str(r[0]), str(r[1]), float(r[2]))
            for r in (list(x.values()) for x in warehouse.query_arrow(ROUTES_SQL).to_pylist())
        ]
    finally:
        warehouse.close()
    store.put_reference(planes, routes)
    return len(planes), len(routes)


@dataclass
class ProcessorStats:
    """What a processor did."""

    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    pruned: int = 0


class FeatureProcessor:
    """Applies the stream's events to the store until stopped.

    Args:
        store: The online store it writes.
        consumer: Its consumer of the ``flights`` stream.
        metrics: Consumer metrics (lag, applied, duplicates, quarantined).
    """

    def __init__(
        self,
        store: OnlineStore,
        consumer: EventConsumer,
        *,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or ConsumerMetrics.on()
        # no memory of applied ids: the store's upserts already make a copy harmless, and a
        # store emptied for a replay that rewinds the clock must take the events again
        self._consumer = IdempotentConsumer(
            consumer, store.apply, metrics=self.metrics, seen_limit=0
        )
        self._pruned_at: int | None = None
        self.stats = ProcessorStats()

    def drain(self, *, max_events: int = 2000) -> int:
        """Apply everything the stream holds now; how many deliveries were handled."""
        total = 0
        while handled := self.step(max_events=max_events):
            total += handled
        return total

    def step(self, *, max_events: int = 2000, block_ms: int = 0) -> int:
        """One batch: poll, apply, ack, prune when the newest event moved a day on."""
        handled = self._consumer.run_once(max_events, block_ms)
        self.stats.applied = self._consumer.applied
        self.stats.duplicates = self._consumer.duplicates
        self.stats.quarantined = self._consumer.quarantined
        if handled:
            self._prune()
        return handled

    def lag(self) -> int:
        """Events of the stream not yet applied."""
        return self._consumer.lag()

    def run(self, stop: threading.Event, *, block_ms: int = 500, retry_s: float = 1.0) -> None:
        """Apply batches until ``stop`` is set.

        An outage of the stream or of the store is waited out: the batch in hand was not
        acknowledged, so it is applied again once they are back (nothing lost, and applying
        it twice changes nothing).
        """
        while not stop.is_set():
            try:
                self.step(block_ms=block_ms)
            except VigieError as err:
                if err.code is not ErrorCode.UNAVAILABLE:
                    raise
                _log.warning("event stream unavailable, retrying: %s", err)
                stop.wait(retry_s)
            except (redis.RedisError, sqlite3.Error, OSError) as err:
                _log.warning("online store unavailable, retrying the batch: %s", err)
                stop.wait(retry_s)

    def _prune(self) -> None:
        newest = self.store.watermark_us()
        if newest is None:
            return
        if self._pruned_at is None or newest - self._pruned_at >= 24 * HOUR_US:
            self.stats.pruned += self.store.prune(newest - KEEP_US)
            self._pruned_at = newest


def open_processor(settings: Settings, *, name: str = "processor-1") -> FeatureProcessor:
    """A processor on the configured stream and store (group :data:`GROUP`)."""
    stream = open_event_stream(settings)
    return FeatureProcessor(
        open_store(settings), stream.consumer(GROUP, name), metrics=ConsumerMetrics.on()
    )
