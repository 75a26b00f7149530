"""Keyed pseudonymisation, and where its key comes from."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vigie.config import load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.pseudonymize import Pseudonymizer

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TOKEN = re.compile(r"p_[0-9a-f]{24}")


@pytest.fixture
def no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIGIE_PSEUDONYM_KEY", "VIGIE_MODE", "VIGIE_WAREHOUSE_URL", "VIGIE_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_same_key_same_token_different_key_different_token() -> None:
    token = Pseudonymizer(KEY).pseudonymize("N14228")
    assert TOKEN.fullmatch(token)
    assert Pseudonymizer(KEY).pseudonymize("N14228") == token
    assert Pseudonymizer(OTHER_KEY).pseudonymize("N14228") != token
    assert Pseudonymizer(KEY).pseudonymize("N14229") != token
    assert "N14228" not in token


def test_short_key_is_refused() -> None:
    with pytest.raises(VigieError) as caught:
        Pseudonymizer(b"x" * 15)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert "15 bytes" in caught.value.message
    Pseudonymizer(b"x" * 16)


def test_series_keeps_nulls_index_and_name() -> None:
    series = pd.Series(["N1", None, "N2", np.nan, "N1", pd.NA], index=[10, 11, 12, 13, 14, 15])
    series.name = "tailnum"
    pseudonymizer = Pseudonymizer(KEY)
    result = pseudonymizer.pseudonymize_series(series)
    assert result.name == "tailnum"
    assert list(result.index) == [10, 11, 12, 13, 14, 15]
    assert result.isna().tolist() == [False, True, False, True, False, True]
    assert result[10] == result[14] == pseudonymizer.pseudonymize("N1")
    assert result[12] == pseudonymizer.pseudonymize("N2")


def test_series_of_only_nulls_and_empty_series() -> None:
    pseudonymizer = Pseudonymizer(KEY)
    assert pseudonymizer.pseudonymize_series(pd.Series([None, None])).isna().all()
    assert pseudonymizer.pseudonymize_series(pd.Series([], dtype=object)).empty


def test_string_dtype_is_kept() -> None:
    series = pd.Series(["N1", None, "N2"], dtype="string")
    result = Pseudonymizer(KEY).pseudonymize_series(series)
    assert isinstance(result.dtype, pd.StringDtype)
    assert result.isna().tolist() == [False, True, False]


def test_flights_sized_column_maps_each_distinct_value_consistently() -> None:
    rng = np.random.default_rng(13)
    uniques = np.array([f"N{i:05d}" for i in range(4_000)], dtype=object)
    values = uniques[rng.integers(0, len(uniques), size=340_000)]
    values[rng.integers(0, len(values), size=2_500)] = None
    series = pd.Series(values)
    pseudonymizer = Pseudonymizer(KEY)
    result = pseudonymizer.pseudonymize_series(series)
    assert result.isna().sum() == series.isna().sum()
    pairs = pd.DataFrame({"value": series, "token": result}).dropna().drop_duplicates()
    assert pairs["value"].is_unique
    assert pairs["token"].is_unique
    sample = pairs.iloc[0]
    assert sample["token"] == pseudonymizer.pseudonymize(sample["value"])


def test_key_fingerprint_identifies_the_key_without_revealing_it() -> None:
    fingerprint = Pseudonymizer(KEY).key_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert Pseudonymizer(KEY).key_fingerprint() == fingerprint
    assert Pseudonymizer(OTHER_KEY).key_fingerprint() != fingerprint
    assert KEY.decode() not in repr(Pseudonymizer(KEY))
    assert fingerprint in repr(Pseudonymizer(KEY))


@pytest.mark.usefixtures("no_key_in_env")
def test_local_mode_generates_a_private_key_once(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    first = Pseudonymizer.from_settings(settings)
    key_file = tmp_path / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert len(key_file.read_bytes().strip()) >= 32
    again = Pseudonymizer.from_settings(load_settings(home=tmp_path))
    assert again.pseudonymize("N14228") == first.pseudonymize("N14228")
    elsewhere = Pseudonymizer.from_settings(load_settings(home=tmp_path / "other"))
    assert elsewhere.key_fingerprint() != first.key_fingerprint()


@pytest.mark.usefixtures("no_key_in_env")
@pytest.mark.parametrize("key", [None, "changeme", "too-short-for-production"])
def test_production_refuses_a_missing_or_placeholder_key(tmp_path: Path, key: str | None) -> None:
    overrides: dict[str, object] = {
        "home": tmp_path,
        "mode": "production",
        "warehouse_url": "postgresql://db/vigie",
    }
    if key is not None:
        overrides["pseudonym_key"] = key
    with pytest.raises(VigieError) as caught:
        load_settings(**overrides)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert "VIGIE_PSEUDONYM_KEY" in caught.value.message
    assert not (tmp_path / "secrets").exists()


@pytest.mark.usefixtures("no_key_in_env")
def test_production_uses_the_configured_key(tmp_path: Path) -> None:
    secret = "s" * 40
    settings = load_settings(
        home=tmp_path,
        mode="production",
        warehouse_url="postgresql://db/vigie",
        pseudonym_key=secret,
    )
    pseudonymizer = Pseudonymizer.from_settings(settings)
    assert pseudonymizer.pseudonymize("N1") == Pseudonymizer(secret.encode()).pseudonymize("N1")
    assert not (tmp_path / "secrets").exists()
