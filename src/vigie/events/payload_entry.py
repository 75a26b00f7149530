"""What the payload log stores: the entry as read back, its JSON encoding, the sink protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class PayloadEntry:
    """One logged prediction, as a reader gets it back.

    Attributes:
        offset: Where it is in the log; pass it as ``after`` to resume after it.
            Local segments: ``<segment>:<byte position>``; Redis: the stream entry id.
        seq: Its number among the entries its writer was given (dropped ones included,
            so a gap in ``seq`` for one ``writer`` is a drop).
        writer: The process that wrote it (``<host>-<pid>-<random>``).
        logged_at: When :meth:`PayloadLog.log` was called (UTC, ISO-8601).
        data: The whole entry as stored (the fields above included).
    """

    offset: str
    seq: int
    writer: str
    logged_at: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, offset: str, raw: bytes | str) -> PayloadEntry:
        """Decode one stored entry.

        Raises:
            ValueError: When ``raw`` is not a JSON object with the log's own fields.
        """
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a payload entry must be a JSON object")
        try:
            return cls(offset, int(data["seq"]), str(data["writer"]), str(data["logged_at"]), data)
        except (KeyError, TypeError) as err:
            raise ValueError(f"a payload entry lacks {err}") from err


class PayloadSink(Protocol):
    """Where batches of entries go. Called from one writer thread at a time."""

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Store the entries in order, durably, or raise (then nothing or all of them may
        have been stored: the writer retries the whole batch, so delivery is at least once).
        """

    def close(self) -> None:
        """Release connections and files."""


#: numpy arrays of numbers and booleans written natively; keys need not be strings.
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_entry(entry: Mapping[str, Any]) -> bytes:
    """The entry as one line of strict JSON (no NaN: non-finite numbers become null).

    numpy arrays become lists (numeric ones without a Python copy), dates ISO strings,
    anything else its ``str``: an entry is never refused for its content.
    """
    try:
        return orjson.dumps(entry, default=_plain, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the slow, sure way
        text = json.dumps(_finite(entry), separators=(",", ":"), allow_nan=False, default=str)
        return text.encode("utf-8")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays orjson does not write itself (objects)
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    """A copy with NaN and infinities replaced by None (only taken when there are some)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value
