"""Shape validated source records into the star schema's dimension and fact rows.

Surrogate keys are 63-bit hashes of each member's natural key, computed the same way for a
dimension row and for the fact that refers to it, so no lookup round-trip is needed and
every backend gets the same keys. Key 0 is the unknown member (a flight with no tail number,
an hour with no weather observation); a natural key that is referenced but absent from its
dimension becomes an *inferred* member (attributes unknown, ``is_inferred`` true).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from vigie.pipelines.checks import local_dates
from vigie.pipelines.validate import CORRECTIONS

UNKNOWN_KEY = 0
UNKNOWN_CODE = "?"
_KEY_MASK = np.uint64(0x7FFF_FFFF_FFFF_FFFF)


def surrogate(*parts: pd.Series) -> pd.Series:
    """Deterministic 63-bit keys from natural-key parts (never 0, which means unknown).

    Each part is reduced to a canonical form first (text; int64; UTC epoch seconds), so a
    dimension and a fact holding the same natural key in different pandas dtypes agree.
    """
    canonical = pd.DataFrame({i: _canonical(part) for i, part in enumerate(parts)})
    hashed = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    keys = (hashed & _KEY_MASK).astype(np.int64)
    keys[keys == UNKNOWN_KEY] = 1
    result: pd.Series = pd.Series(keys, index=parts[0].index)
    return result


def _canonical(part: pd.Series) -> np.ndarray:
    if isinstance(part.dtype, pd.DatetimeTZDtype):
        seconds = part.dt.tz_convert("UTC").astype("datetime64[s, UTC]").astype("int64")
        return np.asarray(seconds, dtype=np.int64)
    if pd.api.types.is_numeric_dtype(part.dtype) and not pd.api.types.is_bool_dtype(part.dtype):
        return np.asarray(part.astype("Int64").fillna(-1).astype("int64"), dtype=np.int64)
    return np.asarray(part.astype(object).where(part.notna(), "\x00").astype(str), dtype=object)


def _stamp(frame: pd.DataFrame, run_id: str, loaded_at: datetime) -> pd.DataFrame:
    frame["run_id"] = run_id
    frame["loaded_at"] = pd.Timestamp(loaded_at)
    return frame


def dim_date(dates: pd.Series) -> pd.DataFrame:
    """One row per calendar day between the first and last date given."""
    if dates.dropna().empty:
        return pd.DataFrame(columns=["date_key"])
    days = pd.date_range(dates.min(), dates.max(), freq="D")
    iso = days.isocalendar()
    return pd.DataFrame(
        {
            "date_key": (days.year * 10000 + days.month * 100 + days.day).astype("int64"),
            "full_date": days.date,
            "year": days.year,
            "quarter": days.quarter,
            "month": days.month,
            "month_name": days.month_name(),
            "day": days.day,
            "day_of_week": days.dayofweek + 1,
            "day_of_year": days.dayofyear,
            "iso_week": iso.week.to_numpy(),
            "is_weekend": days.dayofweek >= 5,
        }
    )


def dim_carrier(
    airlines: pd.DataFrame, referenced: pd.Series, run_id: str, loaded_at: datetime
) -> pd.DataFrame:
    """Carriers, plus inferred members for codes flights use but airlines lack."""
    real = pd.DataFrame(
        {
            "carrier_code": airlines["carrier"],
            "carrier_name": airlines["name"],
            "is_inferred": False,
        }
    )
    frame = _with_inferred(real, "carrier_code", referenced)
    frame["carrier_key"] = surrogate(frame["carrier_code"])
    return _stamp(_with_unknown(frame, "carrier_key", "carrier_code"), run_id, loaded_at)


def dim_airport(
    airports: pd.DataFrame, referenced: pd.Series, run_id: str, loaded_at: datetime
) -> pd.DataFrame:
    """Airports, plus inferred members for codes flights use but airports lack."""
    real = pd.DataFrame(
        {
            "faa_code": airports["faa"],
            "airport_name": airports["name"],
            "latitude": airports["lat"],
            "longitude": airports["lon"],
            "altitude_ft": airports["alt"],
            "utc_offset_h": airports["tz"],
            "dst_rule": airports["dst"],
            "tz_name": airports["tzone"],
            "is_inferred": False,
            "is_corrected": airports[CORRECTIONS].notna(),
        }
    )
    frame = _with_inferred(real, "faa_code", referenced)
    frame["airport_key"] = surrogate(frame["faa_code"])
    return _stamp(_with_unknown(frame, "airport_key", "faa_code"), run_id, loaded_at)


def dim_plane(
    planes: pd.DataFrame, referenced: pd.Series, run_id: str, loaded_at: datetime
) -> pd.DataFrame:
    """Planes keyed by tail-number pseudonym, plus inferred members."""
    real = pd.DataFrame(
        {
            "tailnum_pseudonym": planes["tailnum"],
            "year_built": planes["year"],
            "plane_type": planes["type"],
            "manufacturer": planes["manufacturer"],
            "model": planes["model"],
            "engines": planes["engines"],
            "seats": planes["seats"],
            "speed_mph": planes["speed"],
            "engine_type": planes["engine"],
            "is_inferred": False,
            "is_corrected": planes[CORRECTIONS].notna(),
        }
    )
    frame = _with_inferred(real, "tailnum_pseudonym", referenced)
    frame["plane_key"] = surrogate(frame["tailnum_pseudonym"])
    return _stamp(_with_unknown(frame, "plane_key", "tailnum_pseudonym"), run_id, loaded_at)


def dim_weather_hour(weather: pd.DataFrame, run_id: str, loaded_at: datetime) -> pd.DataFrame:
    """One row per origin and UTC hour of observation."""
    frame = pd.DataFrame(
        {
            "origin_code": weather["origin"],
            "time_hour_utc": weather["time_hour"],
            "local_date": local_dates(weather).dt.date,
            "local_hour": weather["hour"],
            "temp_f": weather["temp"],
            "dewpoint_f": weather["dewp"],
            "humidity_pct": weather["humid"],
            "wind_dir_deg": weather["wind_dir"],
            "wind_speed_mph": weather["wind_speed"],
            "wind_gust_mph": weather["wind_gust"],
            "precip_in": weather["precip"],
            "pressure_mb": weather["pressure"],
            "visibility_mi": weather["visib"],
            "is_corrected": weather[CORRECTIONS].notna(),
        }
    )
    frame["weather_key"] = surrogate(frame["origin_code"], frame["time_hour_utc"])
    unknown = {
        "weather_key": UNKNOWN_KEY,
        "origin_code": UNKNOWN_CODE,
        "time_hour_utc": pd.Timestamp(0, tz="UTC"),
        "local_date": pd.Timestamp(0).date(),
        "local_hour": 0,
        "is_corrected": False,
    }
    frame = pd.concat([pd.DataFrame([unknown]), frame], ignore_index=True)
    return _stamp(frame, run_id, loaded_at)


def _with_inferred(real: pd.DataFrame, code: str, referenced: pd.Series) -> pd.DataFrame:
    missing = pd.Index(referenced.dropna().unique()).difference(pd.Index(real[code].dropna()))
    inferred = pd.DataFrame({code: missing.astype(object), "is_inferred": True})
    return pd.concat([real, inferred], ignore_index=True) if len(inferred) else real


def _with_unknown(frame: pd.DataFrame, key: str, code: str) -> pd.DataFrame:
    unknown = pd.DataFrame([{key: UNKNOWN_KEY, code: UNKNOWN_CODE, "is_inferred": False}])
    frame = pd.concat([unknown, frame], ignore_index=True)
    if "is_corrected" in frame:
        frame["is_corrected"] = frame["is_corrected"].astype("boolean").fillna(False)
    frame["is_inferred"] = frame["is_inferred"].astype(bool)
    return frame
