"""Declared expectations: typing, corrections and quarantine, one check at a time."""

from __future__ import annotations

import pandas as pd
import pytest

from vigie.pipelines.expectations import ColumnExpectation, TableExpectation
from vigie.pipelines.validate import CORRECTIONS, PARTITION, ROW, Outcome, validate

SPEC = TableExpectation(
    source="things.csv",
    natural_key=["code"],
    columns={
        "code": ColumnExpectation(
            type="code", pattern="^[A-Z]{2}$", normalize="upper", required=True
        ),
        "count": ColumnExpectation(type="integer", min=0, max=10),
        "reading": ColumnExpectation(type="float", min=0, max=100, on_out_of_range="set_null"),
        "clock": ColumnExpectation(type="clock"),
        "label": ColumnExpectation(type="text"),
    },
)
GOOD = {"code": "AA", "count": "1", "reading": "1.5", "clock": "1230", "label": "fine"}


def check(rows: list[dict[str, str | None]], spec: TableExpectation = SPEC) -> Outcome:
    """Validate raw string rows as the pipeline would (with ``_row`` and ``_partition``)."""
    raw = pd.DataFrame(rows, dtype="string")
    raw[ROW] = range(1, len(rows) + 1)
    raw[PARTITION] = "things/all/part.parquet"
    return validate("things", raw, spec, checks={})


def reasons_of(outcome: Outcome, code: str) -> list[dict[str, str]]:
    rows = outcome.quarantined[outcome.quarantined["code"] == code]
    assert len(rows) == 1, f"expected one quarantined row with code {code!r}"
    reasons: list[dict[str, str]] = rows.iloc[0]["reasons"]
    return reasons


def test_clean_rows_are_all_accepted_and_typed() -> None:
    outcome = check([GOOD, GOOD | {"code": "BB", "count": "10", "reading": "100"}])

    assert len(outcome.accepted) == 2
    assert outcome.quarantined.empty
    assert outcome.accepted["count"].tolist() == [1, 10]
    assert outcome.accepted["reading"].tolist() == [1.5, 100.0]
    assert outcome.accepted[CORRECTIONS].isna().all()
    assert outcome.failures == {}


def test_type_mismatch_quarantines_the_row_naming_the_column() -> None:
    outcome = check(
        [GOOD, GOOD | {"code": "XA", "count": "ten"}, GOOD | {"code": "XB", "count": "1.5"}]
    )

    assert outcome.accepted["code"].tolist() == ["AA"]
    for code, value in (("XA", "ten"), ("XB", "1.5")):
        (reason,) = reasons_of(outcome, code)
        assert reason["check"] == "type_mismatch"
        assert reason["column"] == "count"
        assert repr(value) in reason["message"]
    assert outcome.failures == {"type_mismatch": 2}


def test_missing_required_value_is_quarantined() -> None:
    outcome = check([GOOD, GOOD | {"code": None, "label": "no code"}])

    assert outcome.accepted["code"].tolist() == ["AA"]
    (row,) = outcome.quarantined.to_dict("records")
    assert row["label"] == "no code"
    assert {(r["check"], r["column"]) for r in row["reasons"]} == {("missing_value", "code")}


def test_missing_optional_value_is_accepted_as_null() -> None:
    outcome = check([GOOD | {"count": None, "reading": None}])

    assert len(outcome.accepted) == 1
    assert pd.isna(outcome.accepted.loc[0, "count"])
    assert pd.isna(outcome.accepted.loc[0, "reading"])


def test_out_of_range_is_quarantined_by_default() -> None:
    outcome = check([GOOD | {"code": "AB", "count": "11"}, GOOD | {"code": "AC", "count": "-1"}])

    assert outcome.accepted.empty
    for code in ("AB", "AC"):
        (reason,) = reasons_of(outcome, code)
        assert (reason["check"], reason["column"]) == ("out_of_range", "count")
    assert outcome.failures == {"out_of_range": 2}


def test_out_of_range_with_set_null_is_corrected_not_quarantined() -> None:
    outcome = check([GOOD | {"reading": "1048"}, GOOD | {"code": "BB"}])

    assert outcome.quarantined.empty
    corrected = outcome.accepted.set_index("code")
    assert pd.isna(corrected.loc["AA", "reading"])
    assert corrected.loc["AA", CORRECTIONS] == "out_of_range_set_null:reading"
    assert corrected.loc["BB", "reading"] == 1.5
    assert pd.isna(corrected.loc["BB", CORRECTIONS])
    assert outcome.corrections == {"out_of_range_set_null": 1}
    assert outcome.rows_corrected == 1


def test_malformed_code_is_quarantined() -> None:
    outcome = check([GOOD, GOOD | {"code": "A1"}, GOOD | {"code": "ABC"}])

    assert outcome.accepted["code"].tolist() == ["AA"]
    for code in ("A1", "ABC"):
        (reason,) = reasons_of(outcome, code)
        assert (reason["check"], reason["column"]) == ("malformed_code", "code")
        assert "^[A-Z]{2}$" in reason["message"]


def test_normalizing_a_code_to_upper_case_counts_as_a_correction() -> None:
    outcome = check([GOOD | {"code": "ab"}, GOOD | {"code": " CD "}, GOOD | {"code": "EF"}])

    assert outcome.quarantined.empty
    assert outcome.accepted["code"].tolist() == ["AB", "CD", "EF"]
    assert outcome.accepted[CORRECTIONS].tolist()[:2] == ["normalized_code:code"] * 2
    assert pd.isna(outcome.accepted[CORRECTIONS].iloc[2])
    assert outcome.corrections == {"normalized_code": 2}
    assert outcome.rows_corrected == 2


def test_clock_2400_is_corrected_to_midnight() -> None:
    outcome = check([GOOD | {"clock": "2400"}, GOOD | {"code": "BB", "clock": "0"}])

    assert outcome.quarantined.empty
    assert outcome.accepted["clock"].tolist() == [0, 0]
    assert outcome.accepted[CORRECTIONS].iloc[0] == "clock_2400:clock"
    assert pd.isna(outcome.accepted[CORRECTIONS].iloc[1])
    assert outcome.corrections == {"clock_2400": 1}


@pytest.mark.parametrize("clock", ["2460", "2500", "-5", "1299", "99999"])
def test_invalid_clock_is_quarantined(clock: str) -> None:
    outcome = check([GOOD | {"clock": clock}])

    assert outcome.accepted.empty
    (reason,) = reasons_of(outcome, "AA")
    assert (reason["check"], reason["column"]) == ("invalid_clock", "clock")
    assert repr(clock) in reason["message"]


def test_duplicate_natural_key_keeps_the_first_and_quarantines_the_second() -> None:
    first, second = GOOD | {"label": "first"}, GOOD | {"label": "second"}
    outcome = check([first, GOOD | {"code": "BB"}, second])

    assert outcome.accepted.set_index("code").loc["AA", "label"] == "first"
    (row,) = outcome.quarantined.to_dict("records")
    assert row["label"] == "second"
    assert row[ROW] == 3
    assert [(r["check"], r["column"]) for r in row["reasons"]] == [("duplicate_key", "code")]


def test_every_rejected_row_has_reasons_naming_check_and_column() -> None:
    rows = [
        GOOD,
        GOOD | {"code": None},
        GOOD | {"code": "B2"},
        GOOD | {"code": "CC", "count": "many", "clock": "2575"},
        GOOD | {"code": "DD", "count": "99"},
        GOOD,
    ]
    outcome = check(rows)

    assert len(outcome.quarantined) == 5
    for reasons in outcome.quarantined["reasons"]:
        assert reasons, "a quarantined row without a reason"
        for reason in reasons:
            assert set(reason) == {"check", "column", "message"}
            assert reason["check"] and reason["message"]
            assert reason["column"] in SPEC.columns
    many = reasons_of(outcome, "CC")
    assert {(r["check"], r["column"]) for r in many} == {
        ("type_mismatch", "count"),
        ("invalid_clock", "clock"),
    }


def test_rows_in_equals_accepted_plus_quarantined() -> None:
    rows = [GOOD | {"code": f"{a}{b}"} for a in "ABC" for b in "XYZ"]
    rows += [GOOD | {"code": "a1"}, GOOD | {"count": "x"}, rows[0], GOOD | {"clock": "2400"}]
    outcome = check(rows)

    assert outcome.rows_in == len(rows) == 13
    assert len(outcome.accepted) + len(outcome.quarantined) == len(rows)
    # 9 distinct codes, plus the corrected "2400" row: its twin ("count": "x") was rejected,
    # so it is the only sound record with that key and is loaded, not taken for a duplicate.
    assert len(outcome.accepted) == 10
    kept = set(outcome.accepted[ROW]) | set(outcome.quarantined[ROW])
    assert kept == set(range(1, len(rows) + 1)), "a row was lost or counted twice"


def test_a_valid_copy_whose_twin_was_rejected_is_loaded() -> None:
    outcome = check([GOOD | {"count": "x"}, dict(GOOD)])

    assert len(outcome.accepted) == 1
    assert list(outcome.quarantined["reasons"].map(lambda rs: rs[0]["check"])) == ["type_mismatch"]
