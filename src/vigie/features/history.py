"""Stream features: what the flight and weather events had told at the instant ``t``.

Delays propagate through an airport's day (a storm, a ground stop, a congested evening) and
show in the events of the flights around it. Every feature here is a function of the
flight events that happened strictly before the prediction instant ``t`` (a flight's
scheduled departure); the same function (:func:`compute`) runs offline over the warehouse's
facts (training snapshots) and online over the events the feature processor stored
(serving), so a served request carries exactly what the model was trained on.

The families, each an average over a window ``[t - h, t)``:

* **origin arrivals** (3 h, 6 h): mean arrival delay and share > 15 min late of the flights
  from the same origin that arrived in the window, their number (6 h); the same mean and
  share for the same carrier at that origin (6 h);
* **origin departures** (1 h, 3 h, 6 h): mean departure delay of the flights that left the
  origin in the window, their number (1 h), and the carrier's mean (3 h);
* **backlog** (1 h, 3 h): flights scheduled to leave the origin in the window that had not
  left by ``t`` (a cancelled flight is known at its scheduled departure and never counts);
* **destination arrivals** (3 h): mean arrival delay and late share of the flights from
  New York that arrived at the same destination in the window.

A window with no event gives NaN for a mean or a share (the model imputes it and sees that
it is missing) and 0 for a count. An event at or after ``t`` never enters (strict cutoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: ``*_us`` of an instant that did not happen (no departure, no arrival).
NONE_US = np.iinfo(np.int64).min

HOUR_US = 3_600_000_000
_LATE_MIN = 15.0

#: The arrival features, as in the first release of the origin status.
ARRIVAL_NAMES = (
    "origin_arr_delay_3h",
    "origin_late_share_3h",
    "origin_arr_delay_6h",
    "origin_late_share_6h",
    "origin_arrivals_6h",
    "carrier_arr_delay_6h",
    "carrier_late_share_6h",
)
DEPARTURE_NAMES = (
    "origin_dep_delay_1h",
    "origin_dep_delay_3h",
    "origin_dep_delay_6h",
    "origin_departures_1h",
    "carrier_dep_delay_3h",
)
BACKLOG_NAMES = ("origin_backlog_1h", "origin_backlog_3h")
DEST_NAMES = ("dest_arr_delay_3h", "dest_late_share_3h")

#: Every feature this module computes, in catalogue order.
NAMES = ARRIVAL_NAMES + DEPARTURE_NAMES + BACKLOG_NAMES + DEST_NAMES

#: Features that count events (0, never NaN, when the window is empty).
COUNTS = frozenset({"origin_arrivals_6h", "origin_departures_1h", *BACKLOG_NAMES})

#: The longest window: an event older than this at ``t`` can never matter.
HORIZON_US = 6 * HOUR_US


@dataclass(frozen=True)
class FlightFacts:
    """What the events told of each flight, as columns (one row per flight).

    Attributes:
        flight_key: ``fact_flight.flight_key``.
        origin: Origin airport code.
        dest: Destination airport code.
        carrier: Carrier code.
        sched_us: Scheduled departure, UTC microseconds since the epoch.
        dep_us: Actual departure (:data:`NONE_US` when none, or not known yet).
        dep_delay: Departure delay, minutes (NaN when none).
        arr_us: Actual arrival (:data:`NONE_US` when none, or not known yet).
        arr_delay: Arrival delay, minutes (NaN when none).
        cancelled: The flight was cancelled (known at its scheduled departure).
    """

    flight_key: npt.NDArray[np.int64]
    origin: npt.NDArray[np.object_]
    dest: npt.NDArray[np.object_]
    carrier: npt.NDArray[np.object_]
    sched_us: npt.NDArray[np.int64]
    dep_us: npt.NDArray[np.int64]
    dep_delay: npt.NDArray[np.float64]
    arr_us: npt.NDArray[np.int64]
    arr_delay: npt.NDArray[np.float64]
    cancelled: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.flight_key.shape[0])


@dataclass(frozen=True)
class Targets:
    """The flights to compute the features for, each at its instant ``at_us``."""

    origin: npt.NDArray[np.object_]
    dest: npt.NDArray[np.object_]
    carrier: npt.NDArray[np.object_]
    at_us: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.at_us.shape[0])


def empty_facts() -> FlightFacts:
    """Facts of no flight."""
    none = np.empty(0, dtype=object)
    return FlightFacts(
        np.empty(0, np.int64), none, none, none, np.empty(0, np.int64), np.empty(0, np.int64),
        np.empty(0), np.empty(0, np.int64), np.empty(0), np.empty(0, np.bool_),
    )  # fmt: skip


def compute(facts: FlightFacts, targets: Targets) -> dict[str, npt.NDArray[np.float64]]:
    """Every stream feature of every target at its instant.

    Prefix sums over each group's events sorted by time: two binary searches per target
    and window, so a year of flights takes about a second.

    Returns:
        Feature name to a float64 column aligned with ``targets``.
    """
    out: dict[str, npt.NDArray[np.float64]] = {}
    arrived = (facts.arr_us != NONE_US) & np.isfinite(facts.arr_delay)
    left = (facts.dep_us != NONE_US) & np.isfinite(facts.dep_delay)
    arr = _Series(facts.arr_us[arrived], facts.arr_delay[arrived])
    dep = _Series(facts.dep_us[left], facts.dep_delay[left])
    origin_t, carrier_t = (targets.origin,), (targets.origin, targets.carrier)
    origin_arr, carrier_arr = (
        (facts.origin[arrived],),
        (
            facts.origin[arrived],
            facts.carrier[arrived],
        ),
    )
    _means(
        out,
        "origin",
        "arr",
        arr,
        event_keys=origin_arr,
        target_keys=origin_t,
        at_us=targets.at_us,
        hours=(3, 6),
    )
    out["origin_arrivals_6h"] = _windows(arr, origin_arr, origin_t, targets.at_us, (6,))[6][0]
    _means(
        out,
        "carrier",
        "arr",
        arr,
        event_keys=carrier_arr,
        target_keys=carrier_t,
        at_us=targets.at_us,
        hours=(6,),
    )
    origin_dep, carrier_dep = (facts.origin[left],), (facts.origin[left], facts.carrier[left])
    _means(
        out,
        "origin",
        "dep",
        dep,
        event_keys=origin_dep,
        target_keys=origin_t,
        at_us=targets.at_us,
        hours=(1, 3, 6),
    )
    out["origin_departures_1h"] = _windows(dep, origin_dep, origin_t, targets.at_us, (1,))[1][0]
    _means(
        out,
        "carrier",
        "dep",
        dep,
        event_keys=carrier_dep,
        target_keys=carrier_t,
        at_us=targets.at_us,
        hours=(3,),
    )
    for hours, count in _backlog(facts, targets, (1, 3)).items():
        out[f"origin_backlog_{hours}h"] = count
    dest_arr = (facts.dest[arrived],)
    _means(
        out,
        "dest",
        "arr",
        arr,
        event_keys=dest_arr,
        target_keys=(targets.dest,),
        at_us=targets.at_us,
        hours=(3,),
    )
    return {name: out[name] for name in NAMES}


@dataclass(frozen=True)
class _Series:
    """Events of one kind: when each happened and its delay."""

    at_us: npt.NDArray[np.int64]
    delay: npt.NDArray[np.float64]


_Sums = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _means(
    out: dict[str, npt.NDArray[np.float64]],
    scope: str,
    kind: str,
    series: _Series,
    *,
    event_keys: tuple[npt.NDArray[np.object_], ...],
    target_keys: tuple[npt.NDArray[np.object_], ...],
    at_us: npt.NDArray[np.int64],
    hours: tuple[int, ...],
) -> None:
    """Set ``<scope>_<kind>_delay_<h>h`` (and the late share, for arrivals) in ``out``."""
    for h, (count, total, late) in _windows(series, event_keys, target_keys, at_us, hours).items():
        has = count > 0
        mean = np.full(count.shape[0], np.nan)
        mean[has] = total[has] / count[has]
        out[f"{scope}_{kind}_delay_{h}h"] = mean
        if kind == "arr":
            share = np.full(count.shape[0], np.nan)
            share[has] = late[has] / count[has]
            out[f"{scope}_late_share_{h}h"] = share


def _groups(keys: tuple[npt.NDArray[np.object_], ...]) -> dict[tuple[object, ...], list[int]]:
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(zip(*keys, strict=True)):
        groups.setdefault(key, []).append(i)
    return groups


def _windows(
    series: _Series,
    event_keys: tuple[npt.NDArray[np.object_], ...],
    target_keys: tuple[npt.NDArray[np.object_], ...],
    at_us: npt.NDArray[np.int64],
    hours: tuple[int, ...],
) -> Mapping[int, _Sums]:
    """Per window: count, delay sum and late count of each target's group."""
    n = at_us.shape[0]
    sums = {h: (np.zeros(n), np.zeros(n), np.zeros(n)) for h in hours}
    groups = _groups(event_keys)
    for key, rows in _groups(target_keys).items():
        members = np.asarray(groups.get(key, []), dtype=np.intp)
        if members.size == 0:
            continue
        order = members[np.argsort(series.at_us[members], kind="stable")]
        times, delay = series.at_us[order], series.delay[order]
        cum_delay = np.concatenate(([0.0], np.cumsum(delay)))
        cum_late = np.concatenate(([0.0], np.cumsum(delay > _LATE_MIN)))
        at = at_us[rows]
        hi = np.searchsorted(times, at, side="left")
        for h, (count, total, late) in sums.items():
            lo = np.searchsorted(times, at - h * HOUR_US, side="left")
            count[rows] = hi - lo
            total[rows] = cum_delay[hi] - cum_delay[lo]
            late[rows] = cum_late[hi] - cum_late[lo]
    return sums


def _backlog(
    facts: FlightFacts, targets: Targets, hours: tuple[int, ...]
) -> dict[int, npt.NDArray[np.float64]]:
    """Flights scheduled from the target's origin in ``[t - h, t)``, not gone by ``t``."""
    out = {h: np.zeros(len(targets)) for h in hours}
    live = ~facts.cancelled
    groups = _groups((facts.origin[live],))
    sched_all, dep_all = facts.sched_us[live], facts.dep_us[live]
    # a departure not known (yet) leaves the flight waiting whatever t is
    dep_all = np.where(dep_all == NONE_US, np.iinfo(np.int64).max, dep_all)
    for key, rows in _groups((targets.origin,)).items():
        members = np.asarray(groups.get(key, []), dtype=np.intp)
        if members.size == 0:
            continue
        order = members[np.argsort(sched_all[members], kind="stable")]
        sched, dep = sched_all[order], dep_all[order]
        at = targets.at_us[rows]
        hi = np.searchsorted(sched, at, side="left")
        for h, count in out.items():
            lo = np.searchsorted(sched, at - h * HOUR_US, side="left")
            count[rows] = [
                np.count_nonzero(dep[a:b] >= t) for a, b, t in zip(lo, hi, at, strict=True)
            ]
    return out
