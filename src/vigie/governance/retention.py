"""Retention decisions: how long a store keeps a record, and what a sweep did.

Pure functions over the data policy's ``stores`` section (:mod:`vigie.governance.store_policy`)
and a clock: ``as_of``, the day a sweep runs as (``vigie governance retain --as-of``; default
today). A record has outlived its retention when its event time is before the cutoff,
midnight UTC of ``as_of`` minus the retention in nominal days (a year counts 365 days, a
month 30, as :attr:`ColumnPolicy.retention_days`). The sweeps themselves, which read and
delete, are in :mod:`vigie.retention`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import ColumnPolicy, DataPolicy, duration_days
from vigie.governance.store_policy import StorePolicy


@dataclass(frozen=True)
class Retention:
    """How long one store (or the records of one source table in it) is kept.

    Attributes:
        store: The store's name in the policy's ``stores`` section.
        table: The source table the records belong to, where the store holds several.
        duration: The retention, ISO-8601 (``P7Y``).
        days: The same in nominal days.
        basis: Why: ``declared`` (the store's own retention) or the held column that sets
            it (the longest-lived one, e.g. ``planes.year``).
    """

    store: str
    table: str | None
    duration: str
    days: int
    basis: str

    def cutoff(self, as_of: date) -> datetime:
        """The first instant still kept: midnight UTC, ``days`` before ``as_of``."""
        return datetime.combine(as_of - timedelta(days=self.days), time(), tzinfo=UTC)

    def expired(self, event_time: datetime, as_of: date) -> bool:
        """Whether a record of that event time has outlived the retention on ``as_of``."""
        return as_utc(event_time) < self.cutoff(as_of)


def store_retention(policy: DataPolicy, store: str, table: str | None = None) -> Retention:
    """The retention of ``store`` (of its records from source table ``table``, if given).

    A store that declares its own retention has it. A store that names the columns it
    holds keeps a record as long as the longest retention among them, counting only the
    columns of ``table`` when the store holds some of that table's columns.

    Raises:
        VigieError: POLICY_VIOLATION when the policy has no entry for the store.
    """
    policy_of = _store(policy, store)
    if policy_of.retention is not None:
        return Retention(
            store, table, policy_of.retention, duration_days(policy_of.retention), "declared"
        )
    held = held_columns(policy, policy_of.holds)
    own = [item for item in held if item[0].split(".", 1)[0] == table]
    name, column = max(own or held, key=lambda item: item[1].retention_days)
    return Retention(store, table, column.retention, column.retention_days, name)


def held_tables(policy: DataPolicy, store: str) -> list[str]:
    """The source tables whose columns ``store`` holds (none when it declares its own).

    Raises:
        VigieError: POLICY_VIOLATION when the policy has no entry for the store.
    """
    return sorted({held.partition(".")[0] for held in _store(policy, store).holds})


def _store(policy: DataPolicy, store: str) -> StorePolicy:
    policy_of = policy.stores.get(store)
    if policy_of is None:
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            f"store {store!r} has no retention in the data policy's stores section "
            f"({policy.source or 'in memory'}); declare it before sweeping it",
            field=f"stores.{store}",
        )
    return policy_of


def held_columns(policy: DataPolicy, holds: tuple[str, ...]) -> list[tuple[str, ColumnPolicy]]:
    """``table.column`` and the policy of every column named by ``holds`` (``table.*``
    standing for every column of the table), in policy order."""
    found: dict[str, ColumnPolicy] = {}
    for held in holds:
        table, _, column = held.partition(".")
        columns = policy.tables[table].columns
        for name, column_policy in columns.items():
            if column in {"*", name}:
                found[f"{table}.{name}"] = column_policy
    return list(found.items())


def as_utc(instant: datetime) -> datetime:
    """An aware instant in UTC; a naive one is taken as UTC (how the warehouse stores it)."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def parse_instant(value: Any) -> datetime | None:
    """An ISO-8601 text (or a datetime) as a UTC instant; None when it is neither."""
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def month_after(year_month: str) -> datetime | None:
    """The first instant after the month ``YYYY-MM`` (a monthly partition's end); None when
    ``year_month`` is not such a month."""
    try:
        first = datetime.strptime(year_month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (first + timedelta(days=32)).replace(day=1)


@dataclass
class Sweep:
    """What retention did (or, in a dry run, would do) to one store, or one part of it.

    Attributes:
        retention: The retention applied.
        cutoff: The first instant kept.
        unit: What a record of this store is (entry, row, partition, snapshot, report).
        where: Which part of the store was swept (a log's folder or stream), if several.
        deleted: Records deleted.
        by_month: Records deleted by the month (``YYYY-MM``, UTC) of their event time.
        kept: Records past their retention that were kept, each with why.
    """

    retention: Retention
    cutoff: datetime
    unit: str
    where: str = ""
    deleted: int = 0
    by_month: collections.Counter[str] = field(default_factory=collections.Counter)
    kept: list[dict[str, Any]] = field(default_factory=list)

    def count(self, event_time: datetime, records: int = 1) -> None:
        """Count ``records`` deleted, of that event time."""
        self.count_month(f"{as_utc(event_time):%Y-%m}", records)

    def count_month(self, month: str, records: int) -> None:
        """Count ``records`` deleted, of that month (``YYYY-MM``)."""
        self.deleted += records
        self.by_month[month] += records

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, ``--json``)."""
        return {
            "where": self.where,
            "table": self.retention.table,
            "retention": self.retention.duration,
            "basis": self.retention.basis,
            "cutoff": self.cutoff.isoformat(),
            "unit": self.unit,
            "deleted": self.deleted,
            "by_month": dict(sorted(self.by_month.items())),
            "kept": self.kept,
        }


@dataclass
class RetentionReport:
    """Every sweep of one ``vigie governance retain`` run."""

    as_of: date
    dry_run: bool
    sweeps: dict[str, list[Sweep]] = field(default_factory=dict)

    def start(
        self,
        policy: DataPolicy,
        store: str,
        unit: str,
        *,
        table: str | None = None,
        where: str = "",
    ) -> Sweep:
        """A new sweep of ``store`` (of its ``table`` records, in ``where``), recorded in the
        report."""
        retention = store_retention(policy, store, table)
        sweep = Sweep(retention, retention.cutoff(self.as_of), unit, where)
        self.sweeps.setdefault(store, []).append(sweep)
        return sweep

    @property
    def deleted(self) -> int:
        """Records deleted over every store."""
        return sum(s.deleted for sweeps in self.sweeps.values() for s in sweeps)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: per store, its total and each period applied (audit log, ``--json``)."""
        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "stores": {
                store: {
                    "deleted": sum(s.deleted for s in sweeps),
                    "periods": [s.to_json() for s in sweeps],
                }
                for store, sweeps in self.sweeps.items()
            },
        }
