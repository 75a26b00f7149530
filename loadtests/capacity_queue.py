"""The latency and the traffic of the capacity model (``capacity.py``).

Latency is an M/M/c queue per pod (c busy workers of the measured CPU time per request);
the traffic is one day of the 2013 schedule, flights per minute smoothed and scaled so that
its busiest minute is the peak asked.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vigie.pipelines.sources import package_data_dir

FloatArray = npt.NDArray[np.float64]

# --- queueing: M/M/c ------------------------------------------------------------------


def erlang_c(servers: int, offered: FloatArray | float) -> FloatArray:
    """Probability that a request waits in an M/M/c queue (``offered`` = lambda/mu < c)."""
    a = np.asarray(offered, dtype=np.float64)
    blocking = np.ones_like(a)
    for k in range(1, servers + 1):  # Erlang B by its recurrence, then C from B
        blocking = a * blocking / (k + a * blocking)
    return np.asarray(servers * blocking / (servers - a * (1.0 - blocking)), dtype=np.float64)


def sojourn_survival(t: FloatArray, lam: FloatArray, mu: float, servers: int) -> FloatArray:
    """P(wait + service > t) in an M/M/c queue: an Exp(c*mu - lam) wait with probability
    Erlang C, then an Exp(mu) service."""
    waits = erlang_c(servers, lam / mu)
    theta = servers * mu - lam
    gap = np.where(np.abs(mu - theta) < 1e-9 * mu, 1e-9 * mu, mu - theta)
    both = (mu * np.exp(-theta * t) - theta * np.exp(-mu * t)) / gap
    return np.asarray((1.0 - waits) * np.exp(-mu * t) + waits * both, dtype=np.float64)


def mmc_quantile(
    lam: FloatArray | float, mu: float, servers: int, q: float = 0.99, shift: Any = 0.0
) -> FloatArray:
    """The ``q`` quantile of the sojourn time (seconds), for each arrival rate ``lam``; a
    ``shift`` (backlog drain time) is added to every request of its row."""
    rates = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    low = np.zeros_like(rates)
    high = 2.0 * math.log(1.0 / (1.0 - q)) * (1.0 / (servers * mu - rates) + 1.0 / mu)
    for _ in range(60):  # bisection: the survival is decreasing in t
        mid = (low + high) / 2.0
        above = sojourn_survival(mid, rates, mu, servers) > 1.0 - q
        low, high = np.where(above, mid, low), np.where(above, high, mid)
    return np.asarray(high + shift, dtype=np.float64)


# --- traffic: one day of the 2013 schedule ---------------------------------------------


def read_flights() -> pd.DataFrame:
    """year, month, day and sched_dep_time (local HHMM) of every flight of the package."""
    columns = ["year", "month", "day", "sched_dep_time"]
    return pd.read_csv(package_data_dir() / "flights.csv.zip", usecols=columns)


def busiest_weekday(flights: pd.DataFrame, year: int, month: int) -> date:
    """The Monday-to-Friday day of ``month`` with the most scheduled flights."""
    days = flights[(flights["year"] == year) & (flights["month"] == month)]
    counts = days.groupby("day").size()
    weekdays = [d for d in counts.index if date(year, month, int(d)).weekday() < 5]
    return date(year, month, int(counts.loc[weekdays].idxmax()))


def flights_per_minute(flights: pd.DataFrame, day: date) -> npt.NDArray[np.int64]:
    """Flights of ``day`` per minute of scheduled departure (1,440 counts, local time)."""
    on = flights[
        (flights["year"] == day.year)
        & (flights["month"] == day.month)
        & (flights["day"] == day.day)
    ]
    hhmm = on["sched_dep_time"].to_numpy(dtype=np.int64)
    return np.bincount(hhmm // 100 * 60 + hhmm % 100, minlength=1440).astype(np.int64)


def load_curve(per_minute: npt.NDArray[np.int64], peak: float, smooth_min: int) -> FloatArray:
    """Predictions per second, minute by minute: the flights per minute averaged over a
    centred ``smooth_min`` window, scaled so that the busiest minute is ``peak``."""
    kernel = np.ones(smooth_min) / smooth_min
    smooth = np.convolve(per_minute.astype(np.float64), kernel, mode="same")
    return np.asarray(smooth * (peak / smooth.max()), dtype=np.float64)
