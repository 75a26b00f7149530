"""The data policy, as code: what every column is, who may read it, how it is handled.

The policy is a YAML file (by default ``policy.yaml`` shipped beside this module;
the ``VIGIE_POLICY_FILE`` setting may point elsewhere) read into the pydantic models
below. Pipelines ask it about every column before loading: an unclassified column is
a policy violation, never a silent pass.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from vigie.errors import ErrorCode, VigieError
from vigie.governance.store_policy import StorePolicy, store_problems

#: Classifications whose values must never be stored as they are.
PROTECTED = frozenset({"indirect_identifier", "personal", "sensitive"})

_RETENTION = re.compile(r"^P(?:(?P<y>\d+)Y)?(?:(?P<m>\d+)M)?(?:(?P<d>\d+)D)?$")


class Classification(enum.StrEnum):
    """How much harm disclosure of a column could do, from least to most."""

    PUBLIC = "public"
    INTERNAL = "internal"
    INDIRECT_IDENTIFIER = "indirect_identifier"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"


class Handling(enum.StrEnum):
    """What the pipelines do to a column before it is stored."""

    KEEP = "keep"
    PSEUDONYMIZE = "pseudonymize"
    DROP = "drop"


class ColumnPolicy(BaseModel):
    """The policy of one column.

    Attributes:
        classification: The column's sensitivity.
        training: Whether the column may be a model input feature.
        target: Whether the column may be a model label (a target is never a feature).
        history: Whether other, earlier records' values of the column may feed a feature
            as an aggregate of what was observed before the prediction time (the recent
            delays at an airport), never the record's own value.
        retention: ISO-8601 duration in years, months and/or days (``P7Y``, ``P90D``).
        readers: Roles allowed to read the column as stored.
        handling: What is done to the column before it is stored.
        description: Why the column is classified this way, where not obvious.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classification: Classification
    training: bool
    target: bool = False
    history: bool = False
    retention: str
    readers: tuple[str, ...]
    handling: Handling
    description: str = ""

    @field_validator("retention")
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        if value == "P" or not _RETENTION.match(value):
            raise ValueError(
                f"retention {value!r} is not an ISO-8601 duration in years, months or days "
                "(expected e.g. P7Y, P18M, P90D or P0D)"
            )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ColumnPolicy:
        if self.training and self.target:
            raise ValueError("a column cannot be both a feature (training) and the target")
        if self.classification in PROTECTED and self.handling is Handling.KEEP:
            raise ValueError(
                f"a column classified {self.classification.value} must be pseudonymize "
                "or drop, not keep"
            )
        if self.handling is Handling.DROP and (self.training or self.target or self.readers):
            raise ValueError(
                "a dropped column is never stored: training and target must be false "
                "and readers empty"
            )
        return self

    @property
    def retention_days(self) -> int:
        """The retention in nominal days (a year counts 365 days, a month 30)."""
        return duration_days(self.retention)


def duration_days(duration: str) -> int:
    """An ISO-8601 duration in years, months and days as nominal days (a year counts 365
    days, a month 30).

    Raises:
        ValueError: When ``duration`` is not such a duration.
    """
    match = _RETENTION.match(duration)
    if duration == "P" or match is None:
        raise ValueError(f"{duration!r} is not an ISO-8601 duration in years, months or days")
    years, months, days = (int(match.group(g) or 0) for g in ("y", "m", "d"))
    return years * 365 + months * 30 + days


class TablePolicy(BaseModel):
    """The policy of one source table: a description, its purposes and its columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    purposes: tuple[str, ...] = ()
    columns: dict[str, ColumnPolicy] = Field(min_length=1)


class PlatformColumn(BaseModel):
    """The policy of one column of a warehouse table that vigie fills itself.

    Attributes:
        classification: The column's sensitivity.
        readers: Roles allowed to read the column in the warehouse.
        description: What the column holds, where not obvious.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classification: Classification
    readers: tuple[str, ...]
    description: str = ""


class PlatformTable(BaseModel):
    """A warehouse table that vigie fills itself (predictions, lineage, quarantine...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    columns: dict[str, PlatformColumn] = Field(min_length=1)


class DataPolicy(BaseModel):
    """The whole data policy: roles, purposes and every classified table.

    Attributes:
        version: Policy version, raised on every change.
        roles: Declared roles and what each does.
        purposes: Declared processing purposes and what each is.
        tables: Table name to its policy.
        platform: Warehouse tables vigie fills itself, to the policy of their columns that
            hold no source column's data (those follow the source column's policy).
        stores: How long each store that ``vigie governance retain`` sweeps keeps a record
            (:mod:`vigie.governance.store_policy`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    roles: dict[str, str] = Field(min_length=1)
    purposes: dict[str, str] = Field(min_length=1)
    tables: dict[str, TablePolicy] = Field(min_length=1)
    platform: dict[str, PlatformTable] = Field(default_factory=dict)
    stores: dict[str, StorePolicy] = Field(default_factory=dict)

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _declared_names(self) -> DataPolicy:
        problems: list[str] = []
        for table_name, table in self.tables.items():
            problems.extend(
                f"tables.{table_name}.purposes: purpose {purpose!r} is not declared in purposes"
                for purpose in table.purposes
                if purpose not in self.purposes
            )
            for column_name, column in table.columns.items():
                problems.extend(self._undeclared(f"tables.{table_name}", column_name, column))
        for table_name, platform_table in self.platform.items():
            for column_name, platform_column in platform_table.columns.items():
                problems.extend(
                    self._undeclared(f"platform.{table_name}", column_name, platform_column)
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _store_retention(self) -> DataPolicy:
        problems = store_problems(
            self.stores, {name: table.columns for name, table in self.tables.items()}
        )
        problems += [
            f"stores.{name}.retention: {store.retention!r} is not an ISO-8601 duration in "
            "years, months or days (expected e.g. P1Y, P18M, P90D)"
            for name, store in self.stores.items()
            if store.retention is not None and not _is_duration(store.retention)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _undeclared(
        self, where: str, name: str, column: ColumnPolicy | PlatformColumn
    ) -> list[str]:
        return [
            f"{where}.columns.{name}.readers: role {role!r} "
            f"is not declared in roles ({', '.join(self.roles)})"
            for role in column.readers
            if role not in self.roles
        ]

    @property
    def source(self) -> Path | None:
        """The file the policy was read from, if any."""
        return self._source

    def column(self, table: str, column: str) -> ColumnPolicy:
        """The policy of one column.

        Raises:
            VigieError: POLICY_VIOLATION when the table or the column is not classified.
        """
        table_policy = self.tables.get(table)
        if table_policy is None or column not in table_policy.columns:
            raise VigieError(
                ErrorCode.POLICY_VIOLATION,
                f"column '{table}.{column}' has no classification in the data policy "
                f"({self._where()}); classify it before loading",
                field=f"{table}.{column}",
            )
        return table_policy.columns[column]

    def check_columns(self, table: str, columns: Iterable[str]) -> None:
        """Check that every column is classified, reporting all the missing ones at once.

        Raises:
            VigieError: POLICY_VIOLATION listing every unclassified column.
        """
        known = self.tables[table].columns if table in self.tables else {}
        missing = list(dict.fromkeys(c for c in columns if c not in known))
        if not missing:
            return
        names = ", ".join(f"'{table}.{c}'" for c in missing)
        subject = f"column {names} has" if len(missing) == 1 else f"columns {names} have"
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            f"{subject} no classification in the data policy ({self._where()}); "
            f"classify {'it' if len(missing) == 1 else 'them'} before loading",
            table=table,
            columns=missing,
        )

    def columns_with(self, table: str, handling: Handling) -> list[str]:
        """The columns of ``table`` with the given handling, in policy order."""
        return [n for n, c in self._table(table).columns.items() if c.handling is handling]

    def training_features(self, table: str) -> list[str]:
        """The columns of ``table`` that may be model input features."""
        return [n for n, c in self._table(table).columns.items() if c.training]

    def history_sources(self, table: str) -> list[str]:
        """The columns of ``table`` whose earlier records may feed an aggregate feature."""
        return [n for n, c in self._table(table).columns.items() if c.training or c.history]

    def targets(self, table: str) -> list[str]:
        """The columns of ``table`` that may be model labels."""
        return [n for n, c in self._table(table).columns.items() if c.target]

    def readable_by(self, role: str, table: str) -> list[str]:
        """The columns of ``table`` that ``role`` may read.

        Raises:
            VigieError: POLICY_VIOLATION when the role or the table is not in the policy.
        """
        if role not in self.roles:
            raise VigieError(
                ErrorCode.POLICY_VIOLATION,
                f"role {role!r} is not declared in the data policy ({self._where()}); "
                f"declared roles: {', '.join(self.roles)}",
                field="role",
            )
        return [n for n, c in self._table(table).columns.items() if role in c.readers]

    def content_hash(self) -> str:
        """SHA-256 (hex) of the policy's canonical JSON, to record in lineage."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def _table(self, table: str) -> TablePolicy:
        try:
            return self.tables[table]
        except KeyError as err:
            raise VigieError(
                ErrorCode.POLICY_VIOLATION,
                f"table {table!r} has no entry in the data policy ({self._where()}); "
                "classify its columns before loading",
                field=table,
            ) from err

    def _where(self) -> str:
        return str(self._source) if self._source is not None else "in memory"


def _is_duration(text: str) -> bool:
    try:
        duration_days(text)
    except ValueError:
        return False
    return True


def default_policy_path() -> Path:
    """The policy shipped with vigie."""
    return Path(__file__).with_name("policy.yaml")


def load_policy(path: Path | None = None) -> DataPolicy:
    """Read and validate a data policy.

    Top-level keys starting with ``x-`` (YAML anchor holders) are ignored.

    Args:
        path: The policy file; default: the policy shipped with vigie.

    Raises:
        VigieError: CONFIGURATION naming the file and the faulty field.
    """
    source = path if path is not None else default_policy_path()
    raw = _read_yaml(source)
    try:
        policy = DataPolicy.model_validate(
            {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        )
    except ValidationError as err:
        problems = "; ".join(_describe(e) for e in err.errors())
        first = ".".join(str(p) for p in err.errors()[0]["loc"])
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"the data policy {source} is invalid: {problems}",
            path=str(source),
            field=first or None,
        ) from err
    policy._source = source
    return policy


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def _read_yaml(source: Path) -> dict[Hashable, Any]:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"cannot read the data policy {source}: {err}",
            path=str(source),
        ) from err
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"the data policy {source} is not valid YAML: {err}",
            path=str(source),
        ) from err
    if not isinstance(raw, dict):
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"the data policy {source} must be a mapping with version, roles, purposes, tables",
            path=str(source),
        )
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
