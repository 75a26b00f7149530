"""At-least-once delivery made effectively once: the idempotent consumer loop.

:class:`IdempotentConsumer` polls an :class:`~vigie.events.stream.EventConsumer`, drops
events whose ``event_id`` it already applied, hands the rest to the handler, and acks the
batch only once the handler returned (the handler's commit comes first). A handler that
raises leaves the batch unacked: the same consumer retries it on its next
:meth:`IdempotentConsumer.run_once`, and if the process dies the transport gives it to
the group again.

The ids already applied are remembered in a bounded set of the most recent
``seen_limit`` ids (default 100,000, a few MB), so a copy that arrives later than that
gets through: the handler must be idempotent itself (e.g. an upsert by ``event_id`` or by
the flight's key), and this set only spares it the work.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigie.events.flight_events import Event
from vigie.events.stream import Delivery, EventConsumer

#: How many recent event ids are remembered to drop copies.
DEFAULT_SEEN_LIMIT = 100_000

#: Least time between two refreshes of the lag gauge by :meth:`IdempotentConsumer.run_once`.
LAG_REFRESH_S = 5.0

_LABELS = ("stream", "group")
_log = logging.getLogger(__name__)
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, ConsumerMetrics] = (
    weakref.WeakKeyDictionary()
)


class ConsumerMetrics:
    """The event consumers' Prometheus metrics on one registry, labelled by stream and group.

    Use :meth:`on` to get them: a registry holds each metric name once, so every consumer
    of a process shares the one set made for its registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lag = Gauge(
            "vigie_events_consumer_lag",
            "Entries not yet delivered to the consumer group plus its pending ones",
            _LABELS,
            registry=registry,
        )
        self.applied = Counter(
            "vigie_events_applied_total",
            "Events handed to the handler and acked",
            _LABELS,
            registry=registry,
        )
        self.duplicates = Counter(
            "vigie_events_duplicates_total",
            "Events dropped because their event_id was already applied",
            _LABELS,
            registry=registry,
        )
        self.quarantined = Counter(
            "vigie_events_quarantined_total",
            "Poison entries sent to the quarantine by the consumer",
            _LABELS,
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry | None = None) -> ConsumerMetrics:
        """The metrics on ``registry`` (made on first use), or on a new registry when None."""
        if registry is None:
            return cls(CollectorRegistry(auto_describe=True))
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = cls(registry)
        return metrics


class IdempotentConsumer:
    """Applies each event of a stream once, as far as this process can tell.

    Args:
        consumer: Where deliveries come from.
        apply: The handler: stores the events (idempotently) or raises.
        seen_limit: How many recent event ids are remembered to drop copies.
        metrics: Where to count; none when None.

    Attributes:
        applied: Events given to the handler (and acked) so far.
        duplicates: Events dropped as copies of ones already applied.
        quarantined: Poison entries the consumer quarantined so far.
    """

    def __init__(
        self,
        consumer: EventConsumer,
        apply: Callable[[list[Event]], None],
        *,
        seen_limit: int = DEFAULT_SEEN_LIMIT,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.consumer = consumer
        self._apply = apply
        self.seen_limit = seen_limit
        self.applied = 0
        self.duplicates = 0
        self.quarantined = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._retry: list[Delivery] = []
        self._quarantined_seen = consumer.quarantined
        self._metrics = metrics
        self._lag_refreshed = float("-inf")

    def run_once(self, max_events: int = 500, block_ms: int = 0) -> int:
        """Poll one batch (or retry the one the handler last refused), apply the events not
        seen before, then ack the whole batch.

        Returns:
            How many deliveries were handled (applied plus dropped as copies); 0 when the
            stream had nothing new.

        Raises:
            Exception: Whatever the handler raised; the batch stays unacked and is retried
                by the next call.
            VigieError: UNAVAILABLE when the transport is unreachable.
        """
        batch = self._retry or self.consumer.poll(max_events, block_ms)
        self._count_quarantined()
        if batch:
            self._retry = batch
            fresh, duplicates = self._split(batch)
            if fresh:
                self._apply([delivery.event for delivery in fresh])
            self.consumer.ack(batch)
            self._retry = []
            self._remember(fresh)
            self._count(applied=len(fresh), duplicates=duplicates)
        if time.monotonic() - self._lag_refreshed >= LAG_REFRESH_S:
            self.lag()
        return len(batch)

    def lag(self) -> int:
        """The consumer group's lag (see :meth:`EventConsumer.lag`), also set on the gauge."""
        lag = self.consumer.lag()
        self._lag_refreshed = time.monotonic()
        if self._metrics is not None:
            self._metrics.lag.labels(*self._labels()).set(lag)
        return lag

    def _split(self, batch: list[Delivery]) -> tuple[list[Delivery], int]:
        """The deliveries to apply (first copy of each new id, in order) and the copies."""
        fresh: list[Delivery] = []
        ids: set[str] = set()
        for delivery in batch:
            event_id = delivery.event.event_id
            if event_id in self._seen or event_id in ids:
                continue
            ids.add(event_id)
            fresh.append(delivery)
        return fresh, len(batch) - len(fresh)

    def _remember(self, applied: list[Delivery]) -> None:
        for delivery in applied:
            self._seen[delivery.event.event_id] = None
            self._seen.move_to_end(delivery.event.event_id)
        while len(self._seen) > self.seen_limit:
            self._seen.popitem(last=False)

    def _count(self, *, applied: int, duplicates: int) -> None:
        self.applied += applied
        self.duplicates += duplicates
        if duplicates:
            _log.debug("dropped %d duplicate events of %s", duplicates, self.consumer.stream)
        if self._metrics is not None:
            self._metrics.applied.labels(*self._labels()).inc(applied)
            self._metrics.duplicates.labels(*self._labels()).inc(duplicates)

    def _count_quarantined(self) -> None:
        new = self.consumer.quarantined - self._quarantined_seen
        self._quarantined_seen = self.consumer.quarantined
        if new <= 0:
            return
        self.quarantined += new
        if self._metrics is not None:
            self._metrics.quarantined.labels(*self._labels()).inc(new)

    def _labels(self) -> tuple[str, str]:
        return self.consumer.stream, self.consumer.group
