"""Warehouse connections: one small interface over embedded DuckDB and PostgreSQL.

SQL is written once with ``?`` placeholders; the PostgreSQL backend translates them.
Bulk loads go through each engine's fast path (DuckDB: Arrow scan; PostgreSQL: COPY),
never row by row.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from vigie.errors import ErrorCode, VigieError

Dialect = Literal["duckdb", "postgresql"]
_PLACEHOLDER = re.compile(r"\?")
#: How long opening a DuckDB file waits while another process holds its lock (seconds).
#: A DuckDB file is opened by one process at a time when one of them writes: ``vigie ingest
#: --follow`` holds it for each pass, a retraining run while it reads its snapshot, the
#: registry while it records a version. Each waits a little for the others.
LOCK_WAIT_S = 120.0
_LOCK_RETRY_S = 0.2


class Warehouse(Protocol):
    """What the rest of vigie needs from a warehouse connection."""

    dialect: Dialect
    url: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count (or -1)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run a query and return an Arrow table."""

    def transaction(self) -> Any:
        """Context manager: commit on success, roll back on any exception."""

    def insert_new(self, table: str, data: pa.Table, key: Sequence[str]) -> int:
        """Bulk-insert rows whose ``key`` is not present yet; returns rows inserted."""

    def close(self) -> None:
        """Close the connection."""


def connect(url: str, *, read_only: bool = False, lock_wait_s: float = LOCK_WAIT_S) -> Warehouse:
    """Open a warehouse from its URL (``duckdb:///path`` or ``postgresql://...``).

    A DuckDB file whose lock another process holds is retried for ``lock_wait_s`` seconds.

    Raises:
        VigieError: INVALID_INPUT for an unknown scheme, WAREHOUSE_UNAVAILABLE when the
            database cannot be reached.
    """
    scheme = urlparse(url).scheme
    if scheme == "duckdb":
        return DuckDBWarehouse(url, read_only=read_only, lock_wait_s=lock_wait_s)
    if scheme in {"postgresql", "postgres"}:
        return PostgresWarehouse(url)
    raise VigieError(
        ErrorCode.INVALID_INPUT,
        f"unsupported warehouse URL scheme {scheme!r}: use duckdb:///path or postgresql://...",
        url=redact(url),
    )


@contextmanager
def refused_statement(dialect: Dialect, sql: str) -> Iterator[None]:
    """Turn the engine's own error for one statement into a :class:`VigieError` that names
    the engine, its message and the statement's start, so a command says it in one line.

    A lost or refused connection is WAREHOUSE_UNAVAILABLE; a statement the engine refuses
    (a syntax the dialect lacks, a constraint, a permission) is INTERNAL: the product built
    it, so it is a defect to report, not the user's input.
    """
    try:
        yield
    except (psycopg.Error, duckdb.Error) as err:
        unavailable = isinstance(err, psycopg.OperationalError | duckdb.ConnectionException)
        first_line = next((line for line in str(err).splitlines() if line.strip()), "")
        statement = " ".join(sql.split())
        raise VigieError(
            ErrorCode.WAREHOUSE_UNAVAILABLE if unavailable else ErrorCode.INTERNAL,
            f"the {_ENGINE_NAMES[dialect]} warehouse refused a statement: "
            f"{first_line or type(err).__name__} (statement: {statement[:120]})",
            dialect=dialect,
            engine_error=type(err).__name__,
        ) from err


_ENGINE_NAMES: dict[Dialect, str] = {"duckdb": "DuckDB", "postgresql": "PostgreSQL"}


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and errors."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


class DuckDBWarehouse:
    """The embedded default: one DuckDB file."""

    dialect: Dialect = "duckdb"

    def __init__(self, url: str, *, read_only: bool = False, lock_wait_s: float = 0.0) -> None:
        self.url = url
        raw = url.removeprefix("duckdb://")
        path = raw[1:] if raw.startswith("/") and raw != "/:memory:" else raw
        path = ":memory:" if path in {"", ":memory:", "/:memory:"} else "/" + path.lstrip("/")
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._con = duckdb.connect(path, read_only=read_only)
                break
            except (duckdb.Error, OSError) as err:
                held = isinstance(err, duckdb.IOException) and "Could not set lock" in str(err)
                if held and time.monotonic() < deadline:
                    time.sleep(_LOCK_RETRY_S)
                    continue
                raise VigieError(
                    ErrorCode.WAREHOUSE_UNAVAILABLE,
                    f"cannot open the DuckDB warehouse at {path}: {err}",
                    url=url,
                ) from err
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with refused_statement(self.dialect, sql):
            cur = self._con.execute(sql, list(params) if params else None)
        try:
            rows = cur.fetchall()
        except duckdb.Error:
            return -1
        if rows and len(rows[0]) == 1 and isinstance(rows[0][0], int):
            return int(rows[0][0])
        return -1

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with refused_statement(self.dialect, sql):
            return self._con.execute(sql, list(params)).fetchall()

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with refused_statement(self.dialect, sql):
            return self._con.execute(sql, list(params)).to_arrow_table()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def insert_new(self, table: str, data: pa.Table, key: Sequence[str]) -> int:
        if data.num_rows == 0:
            return 0
        columns = ", ".join(data.column_names)
        self._con.register("_vigie_stage", data)
        cond = " AND ".join(f"t.{k} = s.{k}" for k in key)
        statement = (
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _vigie_stage s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {cond})"
        )
        try:
            with refused_statement(self.dialect, statement):
                result = self._con.execute(statement).fetchone()
        finally:
            self._con.unregister("_vigie_stage")
        return int(result[0]) if result else 0

    def close(self) -> None:
        self._con.close()


class PostgresWarehouse:
    """PostgreSQL, for production; bulk loads use COPY into a temporary stage."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._con = psycopg.connect(
                url.replace("postgres://", "postgresql://", 1), connect_timeout=5, autocommit=True
            )
        except psycopg.Error as err:
            raise VigieError(
                ErrorCode.WAREHOUSE_UNAVAILABLE,
                f"cannot reach the PostgreSQL warehouse at {redact(url)}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
                url=redact(url),
            ) from err

    @staticmethod
    def _sql(sql: str) -> str:
        return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with refused_statement(self.dialect, sql), self._con.cursor() as cur:
            cur.execute(self._sql(sql) if params else sql, list(params) or None)
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with refused_statement(self.dialect, sql), self._con.cursor() as cur:
            cur.execute(self._sql(sql) if params else sql, list(params) or None)
            return list(cur.fetchall())

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with refused_statement(self.dialect, sql), self._con.cursor() as cur:
            cur.execute(self._sql(sql) if params else sql, list(params) or None)
            names = [d.name for d in cur.description or []]
            rows = cur.fetchall()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._con.transaction():
            yield

    def insert_new(self, table: str, data: pa.Table, key: Sequence[str]) -> int:
        if data.num_rows == 0:
            return 0
        columns = ", ".join(data.column_names)
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
        with refused_statement(self.dialect, f"COPY into {table}"), self._con.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS _vigie_stage_{table} "
                f"(LIKE {table} INCLUDING DEFAULTS)"
            )
            cur.execute(f"TRUNCATE _vigie_stage_{table}")
            with cur.copy(f"COPY _vigie_stage_{table} ({columns}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buffer.getvalue())
            cur.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _vigie_stage_{table} "
                f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
            )
            inserted = cur.rowcount
            cur.execute(f"TRUNCATE _vigie_stage_{table}")
        return inserted

    def close(self) -> None:
        self._con.close()
