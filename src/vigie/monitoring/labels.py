"""The label join: predictions of a model with the true outcome of their flight.

A prediction is asked at scheduled departure and its label arrives hours later (or never:
cancelled and diverted flights have none). Once :mod:`vigie.monitoring.consumer` has
loaded both logs, ``fact_prediction`` joins ``fact_outcome`` on ``flight_key``; only
predictions whose flight is labelled come back.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

from vigie.config import Settings
from vigie.warehouse.connection import connect

_SELECT = """
SELECT p.prediction_id, v.model_name AS model, v.version, p.route, p.protocol,
       p.flight_key, f.flight_date, f.sched_dep_utc, p.predicted_at, p.prediction,
       o.arr_delay_min, o.is_delayed_15, o.observed_at, o.source AS label_source
FROM fact_prediction p
JOIN dim_model_version v ON v.model_version_key = p.model_version_key
JOIN fact_outcome o ON o.flight_key = p.flight_key
JOIN fact_flight f ON f.flight_key = p.flight_key
WHERE v.model_name = ?
"""


def labelled_predictions(
    settings: Settings,
    model: str,
    version: str | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
) -> pd.DataFrame:
    """Every labelled prediction of ``model`` (of one ``version``, or all), in departure order.

    Args:
        settings: The warehouse.
        model: The model, e.g. ``flight_delay``.
        version: One registry version id; None: every version.
        start: First flight: a date is a local departure date (inclusive), a datetime a
            scheduled departure instant, UTC (inclusive).
        end: Last flight: a date is inclusive, a datetime exclusive.

    Returns:
        One row per prediction: ``prediction_id``, ``model``, ``version``, ``route``,
        ``protocol``, ``flight_key``, ``flight_date``, ``sched_dep_utc``, ``predicted_at``,
        ``prediction``, and the label: ``arr_delay_min``, ``is_delayed_15``,
        ``observed_at``, ``label_source``. Shadow predictions are included (``route``).
    """
    sql = _SELECT
    params: list[Any] = [model]
    if version is not None:
        sql += " AND v.version = ?"
        params.append(version)
    for bound, operator in ((start, ">="), (end, "<")):
        if bound is None:
            continue
        if isinstance(bound, datetime):
            sql += f" AND f.sched_dep_utc {operator} ?"
        else:
            sql += f" AND f.flight_date {'<=' if operator == '<' else operator} ?"
        params.append(bound)
    sql += " ORDER BY f.sched_dep_utc, p.flight_key, p.prediction_id"
    warehouse = connect(settings.resolved_warehouse_url, read_only=True)
    try:
        frame: pd.DataFrame = warehouse.query_arrow(sql, params).to_pandas()
    finally:
        warehouse.close()
    for column in ("sched_dep_utc", "predicted_at", "observed_at"):
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):  # DuckDB: the session's zone
            frame[column] = frame[column].dt.tz_convert("UTC")
    return frame
