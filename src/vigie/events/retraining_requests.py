"""The retraining-request log: the drift sidecar's requests to retrain a model, append-only.

One typed entry per request (:class:`RetrainingRequest`), in local segments
(:mod:`vigie.events.segments`) under ``<home>/monitoring/retraining``: the sidecar appends
(:class:`RequestLog`), the retraining job and ``vigie up`` read after their checkpoint
(:func:`read_requests`). Monitoring and retraining both go through this module, so neither
knows the other's code nor a copy of the format.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigie.config import Settings
from vigie.events.segments import SegmentSink, parse_offset, read_lines


@dataclass(frozen=True)
class RetrainingRequest:
    """One request of the drift sidecar, with its offset in the request log."""

    offset: str
    request_id: str
    model: str
    version: str
    requested_at: str
    windows: tuple[str, ...]
    features: tuple[str, ...]
    data: dict[str, Any]

    @classmethod
    def from_line(cls, offset: str, line: bytes) -> RetrainingRequest:
        """Decode one request line.

        Raises:
            ValueError: Not a JSON object with the request's fields.
        """
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a retraining request must be a JSON object")
        try:
            return cls(
                offset=offset,
                request_id=str(data["request_id"]),
                model=str(data["model"]),
                version=str(data["version"]),
                requested_at=str(data["requested_at"]),
                windows=tuple(str(w) for w in data.get("windows", [])),
                features=tuple(
                    str(f["name"] if isinstance(f, dict) else f) for f in data.get("features", [])
                ),
                data=data,
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"a retraining request lacks {err}") from err


class RequestLog:
    """Appends retraining requests to the log under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self._sink = SegmentSink(folder)

    def append(self, request: Mapping[str, Any]) -> None:
        """Write one request (a JSON object with at least request_id, model, version,
        requested_at) and fsync it.

        Raises:
            ValueError: When it lacks a field a reader needs.
            OSError: When the disk refuses.
        """
        RetrainingRequest.from_line("", json.dumps(dict(request)).encode())  # refuse early
        self._sink.write([request])


def read_all(settings: Settings) -> list[RetrainingRequest]:
    """Every request of the log, in order."""
    return read_requests(requests_dir(settings), None)[0]


def requests_dir(settings: Settings) -> Path:
    """Where the drift sidecar writes its retraining requests."""
    return settings.monitoring_dir / "retraining"


def read_requests(folder: Path, after: str | None) -> tuple[list[RetrainingRequest], str | None]:
    """Every request (all models) after offset ``after``, and the furthest offset read.

    The log is the sidecar's segments (:mod:`vigie.events.segments`, read by the same
    reader as the payload log): a last line without its end of line is being written and
    left for the next read; a line that does not decode is passed over (its offset still
    counts as read).
    """
    passed: list[str] = []
    found = read_lines(
        folder,
        RetrainingRequest.from_line,
        after=after,
        limit=sys.maxsize,
        on_skip=lambda offset, _reason: passed.append(offset),
    )
    offsets = [r.offset for r in found] + passed + ([after] if after is not None else [])
    furthest = max(offsets, key=parse_offset, default=None)
    return found, furthest


__all__: Sequence[str] = (
    "RequestLog",
    "RetrainingRequest",
    "read_all",
    "read_requests",
    "requests_dir",
)
