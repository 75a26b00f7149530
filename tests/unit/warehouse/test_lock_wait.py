"""Waiting for a DuckDB file that another process holds for a moment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import connect

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the file read-write; returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_held_file_is_opened_once_released(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder = hold(path, 1.0)
    try:
        warehouse = connect(f"duckdb:///{path}", read_only=True, lock_wait_s=30)
        warehouse.close()
    finally:
        holder.wait(30)


def test_without_waiting_a_held_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder = hold(path, 30.0)
    try:
        with pytest.raises(VigieError) as caught:
            connect(f"duckdb:///{path}", lock_wait_s=0.0)
        assert caught.value.code is ErrorCode.WAREHOUSE_UNAVAILABLE
    finally:
        holder.kill()
        holder.wait(30)
