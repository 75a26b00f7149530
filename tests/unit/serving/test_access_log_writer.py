"""The access logs' background writer: lines off the request's path, none lost, bounded."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

from vigie.log import ACCESS_LOGGERS, BackgroundHandler, JsonFormatter, background_access_logs


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
