"""Evaluate declared expectations on a raw table: type, correct, check, split.

Input is a table of raw strings as landed. Output is the typed records that pass (corrected
ones flagged with what was corrected) and the records that fail, each with every reason it
failed, so nothing is lost: ``rows in = rows accepted + rows quarantined``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vigie.pipelines.expectations import ColumnExpectation, TableExpectation

ROW = "_row"
PARTITION = "_partition"
CORRECTIONS = "_corrections"
META = (ROW, PARTITION)


@dataclass
class Finding:
    """Rows that failed (or were corrected by) one check on one column."""

    check: str
    column: str
    mask: pd.Series
    messages: pd.Series  # indexed like the failing rows only


@dataclass
class Outcome:
    """The split of one table."""

    table: str
    accepted: pd.DataFrame
    quarantined: pd.DataFrame  # raw values, plus ``reasons`` (list of dicts)
    failures: dict[str, int] = field(default_factory=dict)  # check -> rows failing
    corrections: dict[str, int] = field(default_factory=dict)  # correction -> rows corrected

    @property
    def rows_in(self) -> int:
        """Rows that entered validation."""
        return len(self.accepted) + len(self.quarantined)

    @property
    def rows_corrected(self) -> int:
        """Accepted rows that carry at least one correction."""
        return int(self.accepted[CORRECTIONS].notna().sum()) if len(self.accepted) else 0


TableCheck = Callable[[pd.DataFrame], list[Finding]]


def finding(
    check: str,
    column: str,
    mask: pd.Series,
    message: Callable[[pd.DataFrame], pd.Series | str],
    frame: pd.DataFrame,
) -> Finding:
    """A finding whose messages are built for the failing rows only."""
    mask = mask.fillna(False).astype(bool)
    messages = pd.Series(dtype=object)
    if mask.any():
        failing = frame[mask]
        built = message(failing)
        messages = built if isinstance(built, pd.Series) else pd.Series(built, index=failing.index)
    return Finding(check, column, mask, messages)


_INTEGER = r"^[+-]?\d{1,18}(\.0*)?$"
_FLOAT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
_NUMBER_TYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
}


_NONE = pd.Series(dtype=object)


def _strings(array: pa.Array, index: pd.Index) -> pd.Series:
    """Arrow strings as a pandas string column (Arrow-backed: no copy to Python objects)."""
    return pd.Series(array.cast(pa.string()), index=index, dtype=pd.StringDtype("pyarrow"))


def _flags(array: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, nulls as False."""
    filled: pa.Array = pc.fill_null(array, False)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


class _Typer:
    """Types one column and records what failed or was corrected.

    Parsing runs on Arrow compute kernels (vectorised, no Python per value); only the
    failing rows ever reach Python, to build their messages.
    """

    def __init__(self, raw: pd.DataFrame, withheld: frozenset[str]) -> None:
        self.raw = raw
        self.withheld = withheld
        self._spec = ColumnExpectation(type="text")
        self.failures: list[Finding] = []
        self.corrections: list[Finding] = []

    def column(self, name: str, spec: ColumnExpectation) -> pd.Series:
        original = pa.array(self.raw[name], type=pa.large_string(), from_pandas=True)
        text = pc.utf8_trim_whitespace(original)
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)
        present = _flags(pc.is_valid(text))
        self._spec = spec
        value = getattr(self, f"_{spec.type}")(name, text, original, present)
        if spec.required:
            self._fail("missing_value", name, self._series(~present), "is required")
        return self._bounds(name, spec, value)

    def _series(self, flags: np.ndarray) -> pd.Series:
        return pd.Series(flags, index=self.raw.index)

    def _fail(self, check: str, name: str, mask: pd.Series, what: str) -> None:
        if name in self.withheld:  # an identifier's raw value must not leak into a reason
            self.failures.append(
                finding(check, name, mask, lambda f: f"{name}: value {what}", self.raw)
            )
            return
        self.failures.append(
            finding(
                check,
                name,
                mask,
                lambda f: name + ": " + f[name].astype("string").map(repr) + " " + what,
                self.raw,
            )
        )

    def _numeric(self, name: str, text: pa.Array, present: np.ndarray, integral: bool) -> pd.Series:
        target = pa.int64() if integral else pa.float64()
        number = self._cast_all(text, target)
        if number is None:  # some value does not parse: find which, by pattern
            matches = pc.match_substring_regex(text, _INTEGER if integral else _FLOAT)
            valid = _flags(matches)
            clean = pc.if_else(pa.array(valid), text, pa.scalar(None, pa.large_string()))
            if integral:
                clean = pc.replace_substring_regex(clean, r"\.0*$", "")
            number = self._cast_all(clean, target)
        if number is None:  # e.g. a float literal beyond float64: let pandas decide
            fallback = pd.to_numeric(pd.Series(text.to_pylist()), errors="coerce")
            result = fallback.astype(_NUMBER_TYPES[target]).set_axis(self.raw.index)
        else:
            result = number.to_pandas(types_mapper=_NUMBER_TYPES.get).set_axis(self.raw.index)
        if not integral:  # "nan" and "inf" parse, but are not measurements
            finite = np.isfinite(result.to_numpy(dtype="float64", na_value=np.nan))
            result = result.mask(~finite & result.notna().to_numpy())
        bad = present & result.isna().to_numpy()
        kind = "an integer" if integral else "a number"
        self._fail("type_mismatch", name, self._series(bad), f"is not {kind}")
        return result

    @staticmethod
    def _cast_all(text: pa.Array, target: pa.DataType) -> pa.Array | None:
        try:
            cast: pa.Array = pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return cast

    def _integer(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        return self._numeric(name, text, present, integral=True)

    def _float(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        return self._numeric(name, text, present, integral=False)

    def _text(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        return _strings(text, self.raw.index)

    def _code(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        value = pc.utf8_upper(text) if self._spec.normalize == "upper" else text
        changed = present & _flags(pc.not_equal(value, original))
        self.corrections.append(Finding("normalized_code", name, self._series(changed), _NONE))
        pattern = self._spec.pattern
        if pattern:
            bad = present & ~_flags(pc.match_substring_regex(value, pattern))
            self._fail("malformed_code", name, self._series(bad), f"does not match {pattern}")
            value = pc.if_else(pa.array(bad), pa.scalar(None, pa.large_string()), value)
        return _strings(value, self.raw.index)

    def _clock(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        value = self._numeric(name, text, present, integral=True)
        midnight = (value == 2400).fillna(False).astype(bool)
        self.corrections.append(Finding("clock_2400", name, midnight, _NONE))
        value = value.mask(midnight, 0)
        bad = value.notna() & ((value < 0) | (value > 2359) | (value % 100 >= 60))
        self._fail(
            "invalid_clock", name, bad.fillna(False).astype(bool), "is not a clock time hhmm"
        )
        return value.mask(bad.fillna(False).astype(bool))

    def _timestamp(
        self,
        name: str,
        text: pa.Array,
        original: pa.Array,
        present: np.ndarray,
    ) -> pd.Series:
        try:
            stamps = pc.cast(text, pa.timestamp("s", tz="UTC")).to_pandas()
        except pa.ArrowInvalid:  # some value is not ISO-8601 with a zone: parse leniently
            stamps = pd.to_datetime(
                pd.Series(text.to_pylist()), utc=True, errors="coerce", format="ISO8601"
            )
        value: pd.Series = stamps.astype("datetime64[ns, UTC]").set_axis(self.raw.index)
        bad = present & value.isna().to_numpy()
        self._fail("type_mismatch", name, self._series(bad), "is not an ISO-8601 time")
        return value

    def _bounds(self, name: str, spec: ColumnExpectation, value: pd.Series) -> pd.Series:
        if spec.min is None and spec.max is None:
            return value
        low = -np.inf if spec.min is None else spec.min
        high = np.inf if spec.max is None else spec.max
        out = (value.notna() & ((value < low) | (value > high))).fillna(False).astype(bool)
        if spec.on_out_of_range == "set_null":
            self.corrections.append(Finding("out_of_range_set_null", name, out, pd.Series()))
            return value.mask(out)
        self._fail("out_of_range", name, out, f"is outside [{spec.min}, {spec.max}]")
        return value


def validate(
    table: str,
    raw: pd.DataFrame,
    spec: TableExpectation,
    checks: dict[str, TableCheck],
    withheld: frozenset[str] = frozenset(),
) -> Outcome:
    """Type, correct and check every record of ``raw`` against ``spec``.

    Args:
        table: Source table name.
        raw: Raw string columns, plus ``_row`` and ``_partition``.
        spec: The table's declared expectations.
        checks: Table-level checks by name (see :mod:`vigie.pipelines.checks`).
        withheld: Columns whose raw values never appear in a reason (identifiers).
    """
    raw = raw.reset_index(drop=True)
    typer = _Typer(raw, withheld)
    typed = pd.DataFrame({name: typer.column(name, col) for name, col in spec.columns.items()})
    for meta in META:
        typed[meta] = raw[meta]
    failures = list(typer.failures)
    for check_name in spec.checks:
        failures.extend(checks[check_name](typed))
    bad = _any(failures, len(raw))
    # Duplicates are judged among sound records only: a valid copy whose twin was rejected
    # is loaded, not quarantined with it.
    sound = ~bad.to_numpy(dtype=bool)
    repeated = np.zeros(len(raw), dtype=bool)
    repeated[sound] = typed[sound].duplicated(subset=spec.natural_key, keep="first").to_numpy()
    dup = pd.Series(repeated)
    failures.append(
        finding(
            "duplicate_key",
            "+".join(spec.natural_key),
            dup,
            lambda f: "natural key (" + ", ".join(spec.natural_key) + ") already seen in this run",
            raw,
        )
    )
    bad |= dup
    typed[CORRECTIONS] = _labels(typer.corrections, len(raw))
    accepted = typed[~bad].reset_index(drop=True)
    quarantined = raw[bad].copy()
    quarantined["reasons"] = pd.Series(
        _reasons(failures, bad), index=quarantined.index, dtype=object
    )
    return Outcome(
        table=table,
        accepted=accepted,
        quarantined=quarantined.reset_index(drop=True),
        failures=_counts(failures),
        corrections=_counts(typer.corrections, within=~bad),
    )


def _any(findings: list[Finding], rows: int) -> pd.Series:
    bad = pd.Series(np.zeros(rows, dtype=bool))
    for item in findings:
        bad |= item.mask.to_numpy()
    return bad


def _labels(corrections: list[Finding], rows: int) -> pd.Series:
    labels: dict[int, list[str]] = defaultdict(list)
    for item in corrections:
        for idx in np.flatnonzero(item.mask.to_numpy()):
            labels[int(idx)].append(f"{item.check}:{item.column}")
    values: list[str | None] = [None] * rows
    for position, names in labels.items():
        values[position] = ",".join(names)
    return pd.Series(values, dtype=object)


def _reasons(findings: list[Finding], bad: pd.Series) -> list[list[dict[str, str]]]:
    per_row: dict[int, list[dict[str, str]]] = defaultdict(list)
    for item in findings:
        for idx in np.flatnonzero(item.mask.to_numpy()):
            message = item.messages.get(idx) if len(item.messages) else None
            per_row[int(idx)].append(
                {"check": item.check, "column": item.column, "message": str(message or item.check)}
            )
    return [per_row[int(i)] for i in np.flatnonzero(bad.to_numpy())]


def _counts(findings: list[Finding], within: pd.Series | None = None) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in findings:
        mask = item.mask if within is None else item.mask & within
        hits = int(mask.sum())
        if hits:
            counts[item.check] += hits
    return dict(counts)
