"""Versioned schema migrations, shared by DuckDB and PostgreSQL.

Each ``migrations/NNNN_name.sql`` file is one version. A statement preceded by the comment
``-- only: <dialect>`` runs on that dialect alone. Every version is applied in one
transaction and recorded with its checksum in ``schema_migrations``, so a fresh database
and an older one both end at the latest version, and a database that is newer than this
code, or whose history differs from it, is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import Warehouse

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ONLY = re.compile(r"^\s*--\s*only:\s*(\w+)\s*$", re.MULTILINE)

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    checksum   VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    """One schema version."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the migration's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, dialect: str) -> list[str]:
        """The statements that apply to ``dialect``, in order."""
        out = []
        for statement in split_statements(self.sql):
            only = _ONLY.search(statement)
            if only is None or only.group(1) == dialect:
                out.append(statement)
        return out


def split_statements(sql: str) -> list[str]:
    """Split SQL on ``;`` at line ends, keeping ``$$ ... $$`` bodies whole."""
    statements: list[str] = []
    current: list[str] = []
    in_dollar = False
    for line in sql.splitlines():
        current.append(line)
        if line.count("$$") % 2 == 1:
            in_dollar = not in_dollar
        if not in_dollar and line.rstrip().endswith(";"):
            text = "\n".join(current).strip().rstrip(";")
            if _has_code(text):
                statements.append(text)
            current = []
    if _has_code("\n".join(current)):
        statements.append("\n".join(current).strip())
    return statements


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def available() -> list[Migration]:
    """The migrations shipped with this version of vigie, oldest first."""
    folder = resources.files("vigie.warehouse") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    """The newest schema version this code knows."""
    return available()[-1].version


def _has_ledger(warehouse: Warehouse) -> bool:
    rows = warehouse.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        + (" AND table_schema = current_schema()" if warehouse.dialect == "postgresql" else "")
    )
    return bool(rows[0][0])


def current_version(warehouse: Warehouse) -> int:
    """The version the database is at (0 for an empty one). Reads only: a role that may
    not create tables (the loader, the reader) can call it."""
    if not _has_ledger(warehouse):
        return 0
    rows = warehouse.query("SELECT max(version) FROM schema_migrations")
    return int(rows[0][0] or 0)


def check_history(warehouse: Warehouse, migrations: list[Migration]) -> None:
    """Refuse a database whose applied versions are unknown to, or differ from, this code.

    Raises:
        VigieError: MIGRATION_MISMATCH naming the version and what differs.
    """
    if not _has_ledger(warehouse):
        return
    known = {m.version: m for m in migrations}
    latest = max(known)
    for version, name, checksum in warehouse.query(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    ):
        if version not in known:
            raise VigieError(
                ErrorCode.MIGRATION_MISMATCH,
                f"the warehouse is at schema version {version} ({name}), unknown to this "
                f"vigie (latest known: {latest}); upgrade vigie or use another database",
                version=version,
                latest=latest,
            )
        if known[version].checksum != checksum:
            raise VigieError(
                ErrorCode.MIGRATION_MISMATCH,
                f"schema version {version} ({name}) was applied from different SQL than "
                "this vigie ships; the database history cannot be trusted",
                version=version,
            )


def migrate(warehouse: Warehouse, target: int | None = None) -> list[int]:
    """Apply every pending migration up to ``target`` (default: latest).

    Returns:
        The versions applied by this call, oldest first.
    """
    migrations = available()
    check_history(warehouse, migrations)
    done = current_version(warehouse)
    target = migrations[-1].version if target is None else target
    if done >= target:
        return []
    warehouse.execute(_LEDGER)
    applied = []
    for migration in migrations:
        if done < migration.version <= target:
            _apply(warehouse, migration)
            applied.append(migration.version)
    return applied


def _apply(warehouse: Warehouse, migration: Migration) -> None:
    with warehouse.transaction():
        for statement in migration.statements(warehouse.dialect):
            try:
                warehouse.execute(statement)
            except Exception as err:
                raise VigieError(
                    ErrorCode.MIGRATION_MISMATCH,
                    f"migration {migration.version:04d}_{migration.name} failed: {err}",
                    version=migration.version,
                ) from err
        warehouse.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
        )


def require_latest(warehouse: Warehouse) -> None:
    """Refuse to work on a database that is not exactly at the latest version.

    Raises:
        VigieError: MIGRATION_MISMATCH with what to run.
    """
    migrations = available()
    check_history(warehouse, migrations)
    version = current_version(warehouse)
    if version != migrations[-1].version:
        raise VigieError(
            ErrorCode.MIGRATION_MISMATCH,
            f"the warehouse is at schema version {version}, this vigie needs "
            f"{migrations[-1].version}: run `vigie warehouse migrate`",
            version=version,
        )
