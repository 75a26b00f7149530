"""SQL spellings that both warehouse engines accept.

Queries the product builds by hand run on embedded DuckDB and on PostgreSQL alike, so a
type or a function is written here once in the form both engines know (DuckDB takes most
of PostgreSQL's spellings; the reverse is not true: ``DOUBLE`` is DuckDB's alone).
"""

from __future__ import annotations

#: A 64-bit float. ``DOUBLE`` is a DuckDB alias that PostgreSQL refuses.
FLOAT64 = "DOUBLE PRECISION"


def typed_null(sql_type: str) -> str:
    """A NULL of ``sql_type``, as a select-list expression (``CAST(NULL AS ...)``)."""
    return f"CAST(NULL AS {sql_type})"
