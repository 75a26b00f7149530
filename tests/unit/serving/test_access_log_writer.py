"""The access logs' background writer: lines off the request's path, none lost, bounded."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from datetime import datetime

import pytest

from vigie.log import (
    ACCESS_LOGGERS,
    BackgroundHandler,
    JsonFormatter,
    access_line,
    background_access_logs,
)


def test_lines_are_written_by_the_writer_thread_in_order_and_flushed() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, interval_s=0.01)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("vigie.test.background")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for i in range(50):
            logger.info("line %d", i, extra={"request_id": f"r{i}", "duration_ms": 0.5})
        for _ in range(500):  # a guard against hanging, not a timing assertion
            if stream.getvalue().count("\n") == 50:
                break
            time.sleep(0.01)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["msg"] for line in lines] == [f"line {i}" for i in range(50)]
        assert lines[7]["request_id"] == "r7" and lines[7]["duration_ms"] == 0.5
        assert handler._thread is not None and handler._thread is not threading.current_thread()
        logger.info("last")
        handler.flush()  # what waits is written at once (also at exit)
        assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "last"
    finally:
        logger.handlers.clear()


def test_when_full_new_lines_are_counted_not_kept() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, capacity=3, interval_s=60.0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(5):
        handler.emit(logging.makeLogRecord({"msg": f"m{i}"}))
    handler.flush()
    assert stream.getvalue().splitlines() == ["m0", "m1", "m2"] and handler.dropped == 2


def test_the_access_loggers_get_one_writer_and_stop_propagating() -> None:
    stream = io.StringIO()
    handler = background_access_logs(logging.Formatter("%(name)s %(message)s"), stream)
    try:
        for name in ACCESS_LOGGERS:
            access = logging.getLogger(name)
            assert access.handlers == [handler] and not access.propagate
            access.setLevel(logging.INFO)
            access.info("hello")
        handler.flush()
        assert stream.getvalue().splitlines() == [f"{name} hello" for name in ACCESS_LOGGERS]
    finally:
        for name in ACCESS_LOGGERS:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_a_deferred_access_line_reads_as_a_logged_one() -> None:
    stream = io.StringIO()
    handler = background_access_logs(JsonFormatter(), stream)
    access = logging.getLogger(ACCESS_LOGGERS[1])
    access.setLevel(logging.INFO)
    fields = {"method": "POST", "status": 200, "duration_ms": 1.5, "request_id": "r1"}
    try:
        before = time.time()
        access_line(access, "POST /v2/models/m/infer 200", fields)  # built by the writer
        access.info("POST /v2/models/m/infer 200", extra=fields)  # built here, as before
        handler.flush()
        deferred, logged = (json.loads(line) for line in stream.getvalue().splitlines())
        assert datetime.fromisoformat(deferred.pop("ts")).timestamp() >= before - 0.001
        logged.pop("ts")
        assert deferred == logged
        assert deferred["msg"] == "POST /v2/models/m/infer 200" and deferred["request_id"] == "r1"
    finally:
        for name in ACCESS_LOGGERS:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_an_access_line_on_an_ordinary_logger_is_an_info_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("vigie.test.plain-access")
    with caplog.at_level(logging.INFO, logger=logger.name):
        access_line(logger, "GET /v2 200", {"status": 200})
    (record,) = caplog.records
    assert record.getMessage() == "GET /v2 200" and record.__dict__["status"] == 200
    logger.setLevel(logging.WARNING)
    access_line(logger, "not kept", {})
    assert len(caplog.records) == 1
    logger.setLevel(logging.NOTSET)


def test_deferred_lines_count_against_the_same_capacity() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, capacity=2, interval_s=60.0)
    handler.setFormatter(logging.Formatter("%(message)s %(status)s"))
    for i in range(3):
        handler.defer("vigie.test", f"m{i}", {"status": i})
    handler.flush()
    assert stream.getvalue().splitlines() == ["m0 0", "m1 1"] and handler.dropped == 1
