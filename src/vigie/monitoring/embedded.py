"""Opening a warehouse that another process may hold for a moment (embedded DuckDB).

A DuckDB file is opened by one process at a time when one of them writes: ``vigie ingest
--follow`` holds it for each pass, ``vigie replay`` while it reads its window. Each waits
a little for the other instead of failing at once; PostgreSQL never needs to.
"""

from __future__ import annotations

import time

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import Warehouse, connect

#: How long to wait for a DuckDB file another process holds (seconds), and between tries.
LOCK_WAIT_S = 15.0
_RETRY_S = 0.2


def connect_waiting(url: str, *, read_only: bool = False, wait_s: float = LOCK_WAIT_S) -> Warehouse:
    """:func:`vigie.warehouse.connection.connect`, retried for ``wait_s`` on a DuckDB file.

    Raises:
        VigieError: WAREHOUSE_UNAVAILABLE when it still cannot be opened.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return connect(url, read_only=read_only)
        except VigieError as err:
            busy = err.code is ErrorCode.WAREHOUSE_UNAVAILABLE and url.startswith("duckdb:")
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(_RETRY_S)
