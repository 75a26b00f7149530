"""Warehouse connections: URLs, redaction, and the idempotent bulk insert (DuckDB)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import connect, redact


def test_redact_hides_the_password_only() -> None:
    url = "postgresql://loader:s3cret@db.example:5432/vigie"

    assert redact(url) == "postgresql://loader:***@db.example:5432/vigie"
    assert (
        redact("postgresql://postgres@127.0.0.1/vigie") == "postgresql://postgres@127.0.0.1/vigie"
    )


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(VigieError) as refused:
        connect("mysql://root:pw@localhost/db")

    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert "'mysql'" in refused.value.message
    assert "pw" not in str(refused.value.details)


def test_a_duckdb_path_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(VigieError) as refused:
        connect(f"duckdb:///{blocker / 'warehouse.duckdb'}")

    assert refused.value.code is ErrorCode.WAREHOUSE_UNAVAILABLE


def test_insert_new_skips_rows_whose_key_exists(tmp_path: Path) -> None:
    warehouse = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        warehouse.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v VARCHAR)")
        first = pa.table({"k": [1, 2], "v": ["a", "b"]})
        second = pa.table({"k": [2, 3], "v": ["changed", "c"]})

        assert warehouse.insert_new("t", first, ["k"]) == 2
        assert warehouse.insert_new("t", second, ["k"]) == 1
        assert warehouse.insert_new("t", second, ["k"]) == 0
        assert warehouse.query("SELECT k, v FROM t ORDER BY k") == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        warehouse.close()


def test_a_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    warehouse = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        warehouse.execute("CREATE TABLE t (k BIGINT PRIMARY KEY)")
        with pytest.raises(RuntimeError), warehouse.transaction():
            warehouse.insert_new("t", pa.table({"k": [1, 2]}), ["k"])
            raise RuntimeError("boom")

        assert warehouse.query("SELECT count(*) FROM t") == [(0,)]
    finally:
        warehouse.close()


def test_a_statement_the_engine_refuses_is_one_error_naming_engine_and_statement(
    tmp_path: Path,
) -> None:
    warehouse = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        with pytest.raises(VigieError) as refused:
            warehouse.query("SELECT CAST(NULL AS NO_SUCH_TYPE) AS x")

        assert refused.value.code is ErrorCode.INTERNAL
        message = str(refused.value)
        assert message.startswith("[INTERNAL] the DuckDB warehouse refused a statement: ")
        assert "NO_SUCH_TYPE" in message
        assert "(statement: SELECT CAST(NULL AS NO_SUCH_TYPE) AS x)" in message
        assert isinstance(refused.value.__cause__, Exception)
    finally:
        warehouse.close()


def test_a_refused_insert_leaves_the_table_as_it_was(tmp_path: Path) -> None:
    warehouse = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        warehouse.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v VARCHAR NOT NULL)")
        with pytest.raises(VigieError, match="refused a statement"):
            warehouse.insert_new(
                "t", pa.table({"k": [1], "v": pa.array([None], pa.string())}), ["k"]
            )

        assert warehouse.query("SELECT count(*) FROM t") == [(0,)]
    finally:
        warehouse.close()
