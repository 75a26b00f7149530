"""Structured logging: JSON lines when not on a terminal, readable lines on one."""

from __future__ import annotations

import atexit
import collections
import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra=`` fields kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
            return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """``level logger: message key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED)
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        return f"{line} {extras}".rstrip()


class BackgroundHandler(logging.Handler):
    """Formats and writes records in a daemon thread, many lines per write.

    For loggers with a line per request (the access logs): the request pays for creating
    the record, not for formatting it or for the write. Records wait at most
    ``interval_s``; :meth:`flush` (also run at exit) writes what waits. Bounded: when
    ``capacity`` records wait, further ones are dropped and counted in :attr:`dropped`.
    A record's message and ``extra`` fields are read when it is written, so they must be
    values nobody changes afterwards (strings and numbers, as access lines are).
    """

    def __init__(self, stream: TextIO, *, capacity: int = 10_000, interval_s: float = 0.05):
        super().__init__()
        self.stream = stream
        self.dropped = 0
        self._capacity = capacity
        self._interval_s = interval_s
        self._records: collections.deque[
            logging.LogRecord | tuple[str, str, dict[str, Any], float]
        ] = collections.deque()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record (never blocks on the stream)."""
        self._queue(record)

    def defer(self, name: str, message: str, fields: dict[str, Any]) -> None:
        """Queue an INFO line of logger ``name`` whose record this handler's thread builds.

        What :func:`access_line` uses: the request pays for a tuple, not for a
        ``LogRecord`` (about 15 µs through ``Logger.info``). The record gets the time of
        this call; it has no caller location, thread or process of the request.
        """
        self._queue((name, message, fields, time.time()))

    def _queue(self, item: logging.LogRecord | tuple[str, str, dict[str, Any], float]) -> None:
        if len(self._records) >= self._capacity:
            self.dropped += 1
            return
        self._records.append(item)
        if self._thread is None:
            self._start()

    def flush(self) -> None:
        """Write every waiting record now."""
        lines = []
        while self._records:
            item = self._records.popleft()
            record = item if isinstance(item, logging.LogRecord) else _deferred_record(*item)
            try:
                lines.append(self.format(record))
            except Exception:  # a bad record must not stop the others
                self.handleError(record)
        if not lines:
            return
        lock = self.lock
        assert lock is not None  # made by Handler.__init__
        with lock:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream at exit: nothing to write to
                pass

    def close(self) -> None:
        """Write what waits, then close."""
        self.flush()
        super().close()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="vigie-log-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_s)
            self.flush()


def _deferred_record(
    name: str, message: str, fields: dict[str, Any], created: float
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, "", 0, message, None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000.0
    record.__dict__.update(fields)
    return record


#: Loggers with one line per request, written by a :class:`BackgroundHandler`.
ACCESS_LOGGERS = ("vigie.serving.grpc.access", "vigie.serving.rest.access")


def access_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """``logger.info(message, extra=fields)``, cheaper on the request's path.

    When ``logger``'s only handler is a :class:`BackgroundHandler` and it neither filters
    nor propagates (the access loggers under :func:`background_access_logs`), the
    handler's thread builds the record; else it is an ordinary ``info`` call. ``message``
    is final (no ``%`` arguments); ``fields`` must not be changed afterwards.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    alone = len(handlers) == 1 and not logger.propagate and not logger.filters
    if alone and isinstance(handlers[0], BackgroundHandler):
        handlers[0].defer(logger.name, message, fields)
    else:
        logger.info("%s", message, extra=fields)


def background_access_logs(formatter: logging.Formatter, stream: TextIO) -> BackgroundHandler:
    """Send the access loggers' lines to ``stream`` through one background writer."""
    handler = BackgroundHandler(stream)
    handler.setFormatter(formatter)
    for name in ACCESS_LOGGERS:
        access = logging.getLogger(name)
        access.handlers[:] = [handler]
        access.propagate = False
    return handler


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once, at start-up.

    Args:
        level: A logging level name.
        fmt: ``json``, ``console`` or ``auto`` (JSON unless stderr is a terminal).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # the HTTP client logs every request at INFO: a replay or a health poll would drown the rest
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
