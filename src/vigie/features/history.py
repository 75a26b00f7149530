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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

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

    Events are sorted once by (group, instant) into one composite key; each window of each
    target is then two binary searches and a difference of prefix sums, whatever the number
    of groups or targets (a year of flights offline, one request's rows online).

    Returns:
        Feature name to a float64 column aligned with ``targets``.
    """
    keys = _Keys(facts, targets)
    arrived = (facts.arr_us != NONE_US) & np.isfinite(facts.arr_delay)
    left = (facts.dep_us != NONE_US) & np.isfinite(facts.dep_delay)
    out: dict[str, npt.NDArray[np.float64]] = {}
    arr_origin = keys.index(
        keys.origin[0][arrived], facts.arr_us[arrived], facts.arr_delay[arrived]
    )
    arr_carrier = keys.index(
        keys.carrier[0][arrived], facts.arr_us[arrived], facts.arr_delay[arrived]
    )
    arr_dest = keys.index(keys.dest[0][arrived], facts.arr_us[arrived], facts.arr_delay[arrived])
    dep_origin = keys.index(keys.origin[0][left], facts.dep_us[left], facts.dep_delay[left])
    dep_carrier = keys.index(keys.carrier[0][left], facts.dep_us[left], facts.dep_delay[left])
    at = targets.at_us
    _means(out, "origin_arr", arr_origin.windows(keys.origin[1], at, (3, 6)), late=True)
    out["origin_arrivals_6h"] = arr_origin.windows(keys.origin[1], at, (6,))[6][0]
    _means(out, "carrier_arr", arr_carrier.windows(keys.carrier[1], at, (6,)), late=True)
    _means(out, "origin_dep", dep_origin.windows(keys.origin[1], at, (1, 3, 6)), late=False)
    out["origin_departures_1h"] = dep_origin.windows(keys.origin[1], at, (1,))[1][0]
    _means(out, "carrier_dep", dep_carrier.windows(keys.carrier[1], at, (3,)), late=False)
    for hours, count in _backlog(facts, keys, at, (1, 3)).items():
        out[f"origin_backlog_{hours}h"] = count
    _means(out, "dest_arr", arr_dest.windows(keys.dest[1], at, (3,)), late=True)
    return {name: out[name] for name in NAMES}


_Sums = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
_Codes = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


class _Keys:
    """Integer codes of the groups (origin, origin and carrier, destination) of the events
    and of the targets, from one vocabulary, and the span that keeps (group, instant) pairs
    apart in one int64."""

    def __init__(self, facts: FlightFacts, targets: Targets) -> None:
        columns = (
            facts.origin, targets.origin, facts.carrier, targets.carrier, facts.dest, targets.dest,
        )  # fmt: skip
        # one vocabulary for every column: pandas hashes the strings in C
        codes, vocabulary = pd.factorize(np.concatenate(columns), use_na_sentinel=False)
        ends = np.cumsum([c.shape[0] for c in columns])[:-1]
        parts = [np.asarray(p, dtype=np.int64) for p in np.split(codes, ends)]
        origin, carrier, dest = (parts[0], parts[1]), (parts[2], parts[3]), (parts[4], parts[5])
        size = max(len(vocabulary), 1)
        self.origin: _Codes = origin
        self.carrier: _Codes = (origin[0] * size + carrier[0], origin[1] * size + carrier[1])
        self.dest: _Codes = dest
        instants = [a[a != NONE_US] for a in (facts.sched_us, facts.dep_us, facts.arr_us)]
        instants.append(targets.at_us)
        known = np.concatenate(instants)
        self.origin_us = int(known.min()) - HORIZON_US if known.size else 0
        self.span = (int(known.max()) - self.origin_us + 1) if known.size else 1
        if (size * size + 1) * self.span >= 2**62:
            raise ValueError("too many groups over too long a time for one composite key")

    def index(
        self,
        groups: npt.NDArray[np.int64],
        at_us: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> _Index:
        """The events of one kind, sorted by group then instant, with prefix sums."""
        composite = groups * self.span + (at_us - self.origin_us)
        order = np.argsort(composite, kind="stable")
        return _Index(self, composite[order], values[order], order)


class _Index:
    """Events sorted by (group, instant) with the prefix sums of their delays."""

    def __init__(
        self,
        keys: _Keys,
        composite: npt.NDArray[np.int64],
        delay: npt.NDArray[np.float64],
        order: npt.NDArray[np.intp],
    ) -> None:
        self.order = order  # position in the sorted events of each event given
        self._keys = keys
        self._composite = composite
        self._cum_delay = np.concatenate(([0.0], np.cumsum(delay)))
        self._cum_late = np.concatenate(([0.0], np.cumsum(delay > _LATE_MIN)))

    def bounds(
        self,
        groups: npt.NDArray[np.int64],
        first_us: npt.NDArray[np.int64],
        end_us: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Positions of each target group's events in ``[first_us, end_us)``."""
        base = groups * self._keys.span - self._keys.origin_us
        lo = np.searchsorted(self._composite, base + first_us, side="left")
        hi = np.searchsorted(self._composite, base + end_us, side="left")
        return lo, hi

    def windows(
        self, groups: npt.NDArray[np.int64], at_us: npt.NDArray[np.int64], hours: tuple[int, ...]
    ) -> dict[int, _Sums]:
        """Per window ``[t - h, t)``: count, delay sum and late count of each target."""
        out = {}
        for h in hours:
            lo, hi = self.bounds(groups, at_us - h * HOUR_US, at_us)
            out[h] = (
                (hi - lo).astype(np.float64),
                self._cum_delay[hi] - self._cum_delay[lo],
                self._cum_late[hi] - self._cum_late[lo],
            )
        return out


def _means(
    out: dict[str, npt.NDArray[np.float64]], prefix: str, sums: dict[int, _Sums], *, late: bool
) -> None:
    """Set ``<prefix>_delay_<h>h`` (and ``<scope>_late_share_<h>h``) from window sums."""
    scope = prefix.split("_", maxsplit=1)[0]
    for h, (count, total, late_count) in sums.items():
        has = count > 0
        mean = np.full(count.shape[0], np.nan)
        mean[has] = total[has] / count[has]
        out[f"{prefix}_delay_{h}h"] = mean
        if late:
            share = np.full(count.shape[0], np.nan)
            share[has] = late_count[has] / count[has]
            out[f"{scope}_late_share_{h}h"] = share


def _backlog(
    facts: FlightFacts, keys: _Keys, at_us: npt.NDArray[np.int64], hours: tuple[int, ...]
) -> dict[int, npt.NDArray[np.float64]]:
    """Flights scheduled from the target's origin in ``[t - h, t)``, not gone by ``t``."""
    live = ~facts.cancelled
    # a departure not known (yet) leaves the flight waiting whatever t is
    gone = np.where(facts.dep_us == NONE_US, np.iinfo(np.int64).max, facts.dep_us)[live]
    index = keys.index(keys.origin[0][live], facts.sched_us[live], np.zeros(int(live.sum())))
    gone = gone[index.order]
    out = {}
    for h in hours:
        lo, hi = index.bounds(keys.origin[1], at_us - h * HOUR_US, at_us)
        out[h] = _count_at_or_after(gone, lo, hi, at_us)
    return out


def _count_at_or_after(
    values: npt.NDArray[np.int64],
    lo: npt.NDArray[np.intp],
    hi: npt.NDArray[np.intp],
    at_us: npt.NDArray[np.int64],
    *,
    chunk: int = 8192,
) -> npt.NDArray[np.float64]:
    """For each target ``i``: how many of ``values[lo[i]:hi[i]]`` are ``>= at_us[i]``.

    The slices are short (the flights of a few hours at one airport), so each chunk of
    targets gathers its slices into one padded block and counts in one pass.
    """
    out = np.zeros(lo.shape[0])
    if values.size == 0:
        return out
    for start in range(0, lo.shape[0], chunk):
        a, b = lo[start : start + chunk], hi[start : start + chunk]
        width = int((b - a).max(initial=0))
        if width == 0:
            continue
        idx = a[:, None] + np.arange(width)[None, :]
        inside = idx < b[:, None]
        picked = values[np.minimum(idx, values.size - 1)]
        waiting = inside & (picked >= at_us[start : start + chunk, None])
        out[start : start + chunk] = waiting.sum(axis=1)
    return out
