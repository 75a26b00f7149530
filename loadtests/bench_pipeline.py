"""Benchmark: the full-year batch pipeline against the bare bulk-load floor.

For each warehouse (embedded DuckDB, and PostgreSQL when reachable), in one process and
side by side, it times:

* ``pipeline``: ``run_pipeline`` over all of 2013 into a fresh warehouse, with the landing
  zone already in place (validation, correction, pseudonymisation, star-schema shaping,
  idempotent load, lineage, report, metrics and audit included);
* ``floor``: a bare bulk load of the same landed raw Parquet into the same kind of
  database (DuckDB: ``CREATE TABLE AS SELECT * FROM read_parquet``; PostgreSQL: ``COPY``
  of the same rows), nothing else.

Each is repeated (``--repeat``, default 3) and the median is reported with the ratio.
The landing time (CSV in the package to Parquet) is reported on its own line.
Results are printed and written to ``VIGIE_HOME/bench/pipeline.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vigie.config import load_settings, test_setting
from vigie.pipelines.run import run_pipeline

TABLES = ("airlines", "airports", "planes", "weather", "flights")


def landed_files(landing: Path, table: str) -> list[str]:
    """The landed Parquet files of one table."""
    return sorted(str(p) for p in (landing / table).glob("*/part.parquet"))


def floor_duckdb(landing: Path, folder: Path) -> float:
    """Seconds for a bare load of the landed Parquet into a fresh DuckDB file."""
    con = duckdb.connect(str(folder / f"floor-{uuid.uuid4().hex}.duckdb"))
    start = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    for table in TABLES:
        con.execute(
            f"CREATE TABLE raw_{table} AS SELECT * FROM read_parquet(?, hive_partitioning = false)",
            [landed_files(landing, table)],
        )
    con.execute("COMMIT")
    con.close()
    return time.perf_counter() - start


def floor_postgres(landing: Path, url: str) -> float:
    """Seconds for a bare COPY of the landed Parquet into a fresh PostgreSQL database."""
    with psycopg.connect(url) as con:
        start = time.perf_counter()
        for table in TABLES:
            data = pa.concat_tables(
                [pq.ParquetFile(f).read() for f in landed_files(landing, table)]
            )
            columns = ", ".join(f'"{c}" text' for c in data.column_names)
            con.execute(f"CREATE TABLE raw_{table} ({columns})")
            buffer = io.BytesIO()
            pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
            with con.cursor().copy(f"COPY raw_{table} FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())
        con.commit()
        return time.perf_counter() - start


def pipeline_seconds(home: Path, url: str) -> float:
    """Seconds for a full-year pipeline run into the warehouse at ``url``."""
    settings = load_settings(home=home, warehouse_url=url, log_format="json")
    start = time.perf_counter()
    run_pipeline(settings)
    return time.perf_counter() - start


class PostgresDatabases:
    """Creates fresh databases on a PostgreSQL server and drops them afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def fresh(self) -> str:
        """A URL of a new, empty database."""
        name = f"vigie_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        self.created.append(name)
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        """Drop every database this object created."""
        with psycopg.connect(self.admin_url, autocommit=True) as con:
            for name in self.created:
                con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def median_of(repeat: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Median and all samples of ``repeat`` measurements."""
    samples = [measure() for _ in range(repeat)]
    return statistics.median(samples), samples


def main() -> None:
    """Run the benchmark and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-url",
        default=test_setting("postgres_url") or "postgresql://postgres@127.0.0.1/postgres",
    )
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="vigie-bench-") as tmp:
        home = Path(tmp)
        start = time.perf_counter()
        pipeline_seconds(home, f"duckdb:///{home}/first.duckdb")
        results["first run (landing + pipeline, DuckDB)"] = {
            "seconds": round(time.perf_counter() - start, 3)
        }
        landing = home / "landing"
        pipe, pipe_s = median_of(
            args.repeat,
            lambda: pipeline_seconds(home, f"duckdb:///{home}/{uuid.uuid4().hex}.duckdb"),
        )
        floor, floor_s = median_of(args.repeat, lambda: floor_duckdb(landing, home))
        results["duckdb"] = _row(pipe, floor, pipe_s, floor_s)
        try:
            databases = PostgresDatabases(args.postgres_url)
            try:
                pipe, pipe_s = median_of(
                    args.repeat, lambda: pipeline_seconds(home, databases.fresh())
                )
                floor, floor_s = median_of(
                    args.repeat, lambda: floor_postgres(landing, databases.fresh())
                )
                results["postgresql"] = _row(pipe, floor, pipe_s, floor_s)
            finally:
                databases.drop_all()
        except psycopg.OperationalError as err:
            results["postgresql"] = {"skipped": f"PostgreSQL unreachable: {err}"}
    _print(results)
    out = load_settings().home / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))


def _row(pipe: float, floor: float, pipe_s: list[float], floor_s: list[float]) -> dict[str, object]:
    return {
        "pipeline_s": round(pipe, 3),
        "floor_s": round(floor, 3),
        "ratio": round(pipe / floor, 2),
        "pipeline_samples": [round(s, 3) for s in pipe_s],
        "floor_samples": [round(s, 3) for s in floor_s],
    }


def _print(results: dict[str, dict[str, object]]) -> None:
    print(f"{'warehouse':<12} {'pipeline s':>11} {'floor s':>9} {'ratio':>7}")
    for name, row in results.items():
        if "ratio" in row:
            print(f"{name:<12} {row['pipeline_s']:>11} {row['floor_s']:>9} {row['ratio']:>6}x")
        elif "seconds" in row:
            print(f"{name}: {row['seconds']} s")
        else:
            print(f"{name:<12} {row['skipped']}")


if __name__ == "__main__":
    main()
