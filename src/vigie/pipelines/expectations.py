"""Declared data expectations: the spec (YAML), apart from the code that evaluates it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigie.errors import ErrorCode, VigieError

ColumnType = Literal["integer", "float", "text", "code", "clock", "timestamp"]


class ColumnExpectation(BaseModel):
    """What one column's values must satisfy, and how a fixable value is corrected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    required: bool = False
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    normalize: Literal["upper"] | None = None
    on_out_of_range: Literal["quarantine", "set_null"] = "quarantine"


class TableExpectation(BaseModel):
    """Expectations of one source table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    natural_key: list[str]
    partition: Literal["month"] | None = None
    columns: dict[str, ColumnExpectation]
    checks: list[str] = Field(default_factory=list)


class Expectations(BaseModel):
    """All source tables, in load order (dimensions before facts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    tables: dict[str, TableExpectation]


def load_expectations(path: Path | None = None) -> Expectations:
    """Read the expectations file (default: the one shipped with vigie).

    Raises:
        VigieError: CONFIGURATION naming the file and the invalid field.
    """
    if path is None:
        text = (resources.files("vigie.pipelines") / "expectations.yaml").read_text()
        where = "vigie/pipelines/expectations.yaml"
    else:
        text, where = path.read_text(), str(path)
    try:
        return Expectations.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as err:
        raise VigieError(
            ErrorCode.CONFIGURATION, f"invalid expectations file {where}: {err}"
        ) from err
