"""What starts a retraining: a schedule, the drift sidecar's requests, or a person.

- Schedule (``--if-due``): a run is due when the champion's training window ended at
  least ``max_age_days`` days before the latest labelled day (or ``--as-of``).
- Drift (``--from-requests``): the sidecar appends requests to the retraining-request log
  (:mod:`vigie.events.retraining_requests`, segments under ``<home>/monitoring/retraining``).
  The job reads those after its checkpoint (warehouse table ``consumer_checkpoint``, consumer
  ``retrain-<model>``), coalesces the pending ones of its model into one run, and appends
  the new checkpoint only once the run succeeded.
- One run per model at a time: an exclusive, non-blocking ``flock`` on
  ``<home>/retraining/<model>.lock``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.retraining_requests import RetrainingRequest
from vigie.warehouse.connection import Warehouse

#: Default age (days) of the champion's training data after which a scheduled run is due:
#: monthly, like the one-month evaluation window and the sliding windows of the specs.
DEFAULT_MAX_AGE_DAYS = 30
#: Checkpoint source of the drift sidecar's local request log.
REQUESTS_SOURCE = "retraining-requests@segments"


class AlreadyRunning(VigieError):
    """Another retraining of the model holds its lock."""

    def __init__(self, model: str, lock: Path) -> None:
        super().__init__(
            ErrorCode.CONFLICT,
            f"a retraining of {model} is already running (lock {lock})",
            model=model,
            lock=str(lock),
        )


def lock_path(settings: Settings, model: str) -> Path:
    """The lock file of the retraining of ``model``."""
    return settings.home / "retraining" / f"{model}.lock"


@contextmanager
def exclusive_run(settings: Settings, model: str) -> Iterator[None]:
    """Hold the model's retraining lock for the block, or fail at once.

    The lock is a ``flock``: the kernel releases it when the holder dies, so a killed run
    never blocks the next one.

    Raises:
        AlreadyRunning: Another process (or thread) holds it.
    """
    path = lock_path(settings, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(model, path) from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ScheduleDecision:
    """Whether a scheduled run is due, and why."""

    due: bool
    reason: str
    age_days: int | None
    max_age_days: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log)."""
        return {
            "due": self.due,
            "reason": self.reason,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
        }


def schedule_due(
    champion_data_end: date | None, reference: date, max_age_days: int
) -> ScheduleDecision:
    """Due when the champion's training data ended ``max_age_days`` or more before
    ``reference`` (the latest labelled day), or when there is no champion."""
    if max_age_days < 0:
        raise VigieError(
            ErrorCode.INVALID_INPUT, "max age days must not be negative", field="max_age_days"
        )
    if champion_data_end is None:
        return ScheduleDecision(True, "no production version to compare with", None, max_age_days)
    age = (reference - champion_data_end).days
    due = age >= max_age_days
    reason = (
        f"the champion's training data ended {champion_data_end}, {age} days before "
        f"{reference} ({'>=' if due else '<'} {max_age_days})"
    )
    return ScheduleDecision(due, reason, age, max_age_days)


def coalesce(requests: list[RetrainingRequest]) -> dict[str, Any]:
    """The trigger evidence of one run serving every request in ``requests``."""
    return {
        "requests": len(requests),
        "request_ids": [r.request_id for r in requests],
        "versions": sorted({r.version for r in requests}),
        "requested_from": min((r.requested_at for r in requests), default=None),
        "requested_to": max((r.requested_at for r in requests), default=None),
        "windows": list(dict.fromkeys(w for r in requests for w in r.windows)),
        "features": list(dict.fromkeys(f for r in requests for f in r.features)),
        "offsets": [r.offset for r in requests],
    }


def consumer_name(model: str) -> str:
    """The checkpoint consumer name of the retraining of ``model``."""
    return f"retrain-{model}"


def last_checkpoint(warehouse: Warehouse, model: str) -> str | None:
    """The offset of the last request log line consumed by ``model``'s retraining."""
    rows = warehouse.query(
        "SELECT position FROM consumer_checkpoint WHERE consumer = ? AND source = ? "
        "ORDER BY checkpoint_seq DESC LIMIT 1",
        (consumer_name(model), REQUESTS_SOURCE),
    )
    return str(rows[0][0]) if rows else None


def commit_checkpoint(
    warehouse: Warehouse, model: str, position: str, entries: int, run_id: str
) -> None:
    """Append the new position (append-only; the latest row is the checkpoint).

    A concurrent writer of the same checkpoint collides on the primary key and fails.
    """
    consumer = consumer_name(model)
    with warehouse.transaction():
        last = warehouse.query(
            "SELECT max(checkpoint_seq) FROM consumer_checkpoint WHERE consumer = ? AND source = ?",
            (consumer, REQUESTS_SOURCE),
        )
        warehouse.execute(
            "INSERT INTO consumer_checkpoint (consumer, source, checkpoint_seq, position, "
            "entries, run_id, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                consumer,
                REQUESTS_SOURCE,
                int(last[0][0] or 0) + 1,
                position,
                entries,
                run_id,
                datetime.now(UTC),
            ),
        )
