"""Evaluate declared expectations on a raw table: type, correct, check, split.

Input is a table of raw strings as landed. Output is the typed records that pass (corrected
ones flagged with what was corrected) and the records that fail, each with every reason it
failed, so nothing is lost: ``rows in = rows accepted + rows quarantined``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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


class _Typer:
    """Types one column and records what failed or was corrected."""

    def __init__(self, raw: pd.DataFrame) -> None:
        self.raw = raw
        self.failures: list[Finding] = []
        self.corrections: list[Finding] = []

    def column(self, name: str, spec: ColumnExpectation) -> pd.Series:
        text = self.raw[name].astype("string").str.strip()
        text = text.mask(text == "")
        value = getattr(self, f"_{spec.type}")(name, text, spec)
        self._required(name, spec, value)
        return self._bounds(name, spec, value)

    def _fail(self, check: str, name: str, mask: pd.Series, what: str) -> None:
        self.failures.append(
            finding(
                check,
                name,
                mask,
                lambda f: name + ": " + f[name].astype("string").map(repr) + " " + what,
                self.raw,
            )
        )

    def _numeric(self, name: str, text: pd.Series, integral: bool) -> pd.Series:
        number = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & number.isna()
        if integral:
            bad |= number.notna() & (number % 1 != 0)
        kind = "an integer" if integral else "a number"
        self._fail("type_mismatch", name, bad, f"is not {kind}")
        number = number.mask(bad)
        return number.astype("Int64") if integral else number.astype("Float64")

    def _integer(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        return self._numeric(name, text, integral=True)

    def _float(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        return self._numeric(name, text, integral=False)

    def _text(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        return text

    def _code(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        value = text.str.upper() if spec.normalize == "upper" else text
        changed = value.notna() & (value != self.raw[name].astype("string"))
        self.corrections.append(
            Finding("normalized_code", name, changed.fillna(False), pd.Series())
        )
        if spec.pattern:
            bad = value.notna() & ~value.str.fullmatch(spec.pattern).fillna(False)
            self._fail("malformed_code", name, bad, f"does not match {spec.pattern}")
            value = value.mask(bad)
        return value

    def _clock(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        value = self._numeric(name, text, integral=True)
        midnight = (value == 2400).fillna(False)
        self.corrections.append(Finding("clock_2400", name, midnight.fillna(False), pd.Series()))
        value = value.mask(midnight, 0)
        bad = value.notna() & ((value < 0) | (value > 2359) | (value % 100 >= 60))
        self._fail("invalid_clock", name, bad, "is not a clock time hhmm")
        return value.mask(bad)

    def _timestamp(self, name: str, text: pd.Series, spec: ColumnExpectation) -> pd.Series:
        value = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        self._fail("type_mismatch", name, text.notna() & value.isna(), "is not an ISO-8601 time")
        return value

    def _required(self, name: str, spec: ColumnExpectation, value: pd.Series) -> None:
        if spec.required:
            raw_missing = self.raw[name].isna() | (
                self.raw[name].astype("string").str.strip() == ""
            )
            self._fail("missing_value", name, raw_missing & value.isna(), "is required")

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
    table: str, raw: pd.DataFrame, spec: TableExpectation, checks: dict[str, TableCheck]
) -> Outcome:
    """Type, correct and check every record of ``raw`` against ``spec``.

    Args:
        table: Source table name.
        raw: Raw string columns, plus ``_row`` and ``_partition``.
        spec: The table's declared expectations.
        checks: Table-level checks by name (see :mod:`vigie.pipelines.checks`).
    """
    raw = raw.reset_index(drop=True)
    typer = _Typer(raw)
    typed = pd.DataFrame({name: typer.column(name, col) for name, col in spec.columns.items()})
    for meta in META:
        typed[meta] = raw[meta]
    failures = list(typer.failures)
    for check_name in spec.checks:
        failures.extend(checks[check_name](typed))
    bad = _any(failures, len(raw))
    dup = ~bad & typed.duplicated(subset=spec.natural_key, keep="first")
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
