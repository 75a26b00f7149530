"""Latency measurements of a predictor: one row and a 256-row batch, median of repeats.

These are measurements recorded with a candidate (and checked by the registry's latency
gates), never pass/fail assertions of a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

BATCH_ROWS = 256


def measure(
    predict: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    *,
    repeats: int = 100,
    warmup: int = 10,
) -> dict[str, float]:
    """Median and p95 milliseconds of ``predict`` on 1 row and on a 256-row batch."""
    single = rows.iloc[:1]
    batch = rows.iloc[: min(BATCH_ROWS, len(rows))]
    result: dict[str, float] = {"batch_rows": float(len(batch)), "repeats": float(repeats)}
    for label, frame in (("single_row", single), ("batch_256", batch)):
        for _ in range(warmup):
            predict(frame)
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            predict(frame)
            times.append((time.perf_counter() - tick) * 1000)
        result[f"{label}_p50_ms"] = float(np.percentile(times, 50))
        result[f"{label}_p95_ms"] = float(np.percentile(times, 95))
    return result
