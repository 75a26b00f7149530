"""Surrogate keys and dimension rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from vigie.pipelines.transform import UNKNOWN_KEY, dim_carrier, dim_date, surrogate

CODES = pd.Series([f"{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "0123456789"] * 40)
LOADED_AT = datetime(2024, 1, 1, tzinfo=UTC)


def test_surrogate_is_deterministic_across_calls_and_row_order() -> None:
    first = surrogate(CODES)
    again = surrogate(CODES.copy())
    reversed_order = surrogate(CODES[::-1].reset_index(drop=True))

    assert first.tolist() == again.tolist()
    assert dict(zip(CODES, first, strict=True)) == dict(
        zip(CODES[::-1], reversed_order, strict=True)
    )


def test_surrogate_is_never_zero_and_fits_63_bits() -> None:
    texts = pd.Series([str(i) for i in range(200_000)] + ["", "\x00", "0"])
    keys = surrogate(texts)

    assert (keys != UNKNOWN_KEY).all()
    assert (keys > 0).all()
    assert keys.dtype == "int64"


def test_different_natural_keys_get_different_surrogates() -> None:
    unique = CODES.drop_duplicates()
    keys = surrogate(unique)

    assert keys.nunique() == len(unique) == 260


def test_multi_part_keys_depend_on_every_part_and_its_position() -> None:
    a = surrogate(pd.Series(["JFK"]), pd.Series(["LAX"]))[0]
    b = surrogate(pd.Series(["LAX"]), pd.Series(["JFK"]))[0]
    c = surrogate(pd.Series(["JF"]), pd.Series(["KLAX"]))[0]
    d = surrogate(pd.Series(["JFK"]), pd.Series(["LAS"]))[0]

    assert len({a, b, c, d}) == 4


def test_surrogate_of_the_same_value_in_another_frame_is_the_same() -> None:
    """A dimension and a fact hash the same natural key separately; they must agree."""
    dimension = pd.Series(["UA", "AA", "B6"], index=[10, 11, 12], dtype="string")
    fact = pd.Series(["B6", "UA"], dtype=object)

    by_code = dict(zip(dimension, surrogate(dimension), strict=True))
    assert surrogate(fact).tolist() == [by_code["B6"], by_code["UA"]]


def test_dim_carrier_adds_inferred_and_unknown_members() -> None:
    airlines = pd.DataFrame(
        {"carrier": ["UA", "AA"], "name": ["United", "American"], "_corrections": [None, None]}
    )
    frame = dim_carrier(airlines, pd.Series(["UA", "ZZ", "ZZ", None]), "run-1", LOADED_AT)

    members = frame.set_index("carrier_code")
    assert set(members.index) == {"?", "UA", "AA", "ZZ"}
    assert members.loc["?", "carrier_key"] == UNKNOWN_KEY
    assert bool(members.loc["ZZ", "is_inferred"])
    assert pd.isna(members.loc["ZZ", "carrier_name"])
    assert not members.loc[["UA", "AA"], "is_inferred"].any()
    assert frame["carrier_key"].is_unique
    assert (frame["run_id"] == "run-1").all()


def test_dim_date_covers_every_day_between_first_and_last() -> None:
    dates = pd.Series(pd.to_datetime(["2013-01-03", "2012-12-30", "2013-01-01"]))
    frame = dim_date(dates).set_index("date_key")

    assert frame.index.tolist() == [20121230, 20121231, 20130101, 20130102, 20130103]
    assert frame.loc[20121230, "is_weekend"]  # a Sunday
    assert frame.loc[20121230, "day_of_week"] == 7
    assert frame.loc[20121231, "iso_week"] == 1
    assert frame.loc[20130101, "quarter"] == 1
    assert frame.loc[20130101, "month_name"] == "January"
