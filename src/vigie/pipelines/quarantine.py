"""Quarantine rows: every rejected record kept whole, with a machine-readable reason."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd

from vigie.pipelines.transform import surrogate
from vigie.pipelines.validate import PARTITION, ROW

MALFORMED_CHECK = "malformed_row"


def quarantine_rows(
    table: str,
    rejected: pd.DataFrame,
    *,
    natural_key: list[str],
    columns: list[str],
    run_id: str,
    at: datetime,
) -> pd.DataFrame:
    """Warehouse quarantine rows for records that failed validation.

    Args:
        table: Source table.
        rejected: Raw records (identifiers already pseudonymised) with ``reasons``.
        natural_key: Columns naming the record for people.
        columns: The source columns to keep in the stored record.
        run_id: The pipeline run.
        at: Quarantine time.
    """
    if rejected.empty:
        return _empty()
    checks = rejected["reasons"].map(lambda rs: ",".join(sorted({r["check"] for r in rs})))
    record_key = rejected[natural_key[0]].astype("string").fillna("")
    for column in natural_key[1:]:
        record_key = record_key + "|" + rejected[column].astype("string").fillna("")
    records = rejected[columns].astype(object).where(rejected[columns].notna(), other=None)  # type: ignore[call-overload]
    return pd.DataFrame(
        {
            "quarantine_id": surrogate(
                pd.Series(table, index=rejected.index), rejected[PARTITION], rejected[ROW], checks
            ),
            "source_table": table,
            "record_key": record_key,
            "source_partition": rejected[PARTITION],
            "checks": checks,
            "reasons": rejected["reasons"].map(json.dumps),
            "record": [json.dumps(r) for r in records.to_dict("records")],
            "run_id": run_id,
            "quarantined_at": pd.Timestamp(at),
        }
    )


def malformed_rows(
    table: str, malformed: pd.DataFrame, partition: str, run_id: str, at: datetime
) -> pd.DataFrame:
    """Quarantine rows for source lines that were not CSV rows at all."""
    if malformed.empty:
        return _empty()
    line = malformed["line"].astype("int64")
    reason = [
        [
            {
                "check": MALFORMED_CHECK,
                "column": "*",
                "message": f"line {n} is not a well-formed CSV row",
            }
        ]
        for n in line
    ]
    return pd.DataFrame(
        {
            "quarantine_id": surrogate(
                pd.Series(table, index=malformed.index),
                pd.Series(partition, index=malformed.index),
                line,
                pd.Series(MALFORMED_CHECK, index=malformed.index),
            ),
            "source_table": table,
            "record_key": "line:" + line.astype(str),
            "source_partition": partition,
            "checks": MALFORMED_CHECK,
            "reasons": [json.dumps(r) for r in reason],
            "record": [json.dumps({"text": t}) for t in malformed["text"]],
            "run_id": run_id,
            "quarantined_at": pd.Timestamp(at),
        }
    )


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        columns=[
            "quarantine_id",
            "source_table",
            "record_key",
            "source_partition",
            "checks",
            "reasons",
            "record",
            "run_id",
            "quarantined_at",
        ]
    )
