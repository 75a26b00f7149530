"""Latency measurements of a predictor: one row and a 256-row batch.

These are measurements recorded with a candidate (and checked by the registry's latency
gates), never pass/fail assertions of a test. The gates judge what the model costs, not how
busy the machine was while it was measured (a retraining runs beside the service, the
replay and the sidecar): the repeats are timed in blocks and ``*_p50_ms`` is the lowest
block median, since other work on the machine can only slow a block down. ``*_p95_ms``
is over all repeats, load included.
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
    blocks: int = 5,
) -> dict[str, float]:
    """Milliseconds of ``predict`` on 1 row and on a 256-row batch.

    Returns:
        ``{label}_p50_ms`` (lowest median of ``blocks`` blocks of repeats) and
        ``{label}_p95_ms`` (all repeats) for ``single_row`` and ``batch_256``.
    """
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
        per_block = max(1, repeats // blocks)
        medians = [float(np.median(times[i : i + per_block])) for i in range(0, repeats, per_block)]
        result[f"{label}_p50_ms"] = min(medians)
        result[f"{label}_p95_ms"] = float(np.percentile(times, 95))
    return result
