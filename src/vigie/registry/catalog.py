"""The registry's metadata in the warehouse: one ``dim_model_version`` row per version.

Serving and monitoring join predictions to ``dim_model_version`` by ``model_version_key``
(:func:`vigie.registry.manifest.model_version_key`), so every registered version has its
row; the files themselves stay in the registry's store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vigie.registry.manifest import ModelVersion, version_number
from vigie.warehouse.connection import Warehouse, connect
from vigie.warehouse.migrations import migrate

_INSERT = (
    "INSERT INTO dim_model_version (model_version_key, model_name, version, artifact_sha256, "
    "snapshot_hash, parent_version, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@contextmanager
def open_catalog(url: str) -> Iterator[Warehouse]:
    """The warehouse at ``url``, migrated to the latest schema, closed after the block.

    Raises:
        VigieError: WAREHOUSE_UNAVAILABLE or MIGRATION_MISMATCH from the warehouse.
    """
    warehouse = connect(url)
    try:
        migrate(warehouse)
        yield warehouse
    finally:
        warehouse.close()


def insert_version(warehouse: Warehouse, version: ModelVersion) -> None:
    """Insert the row of a newly registered version."""
    warehouse.execute(
        _INSERT,
        (
            version.key,
            version.model,
            version.version,
            version.artifact_sha256,
            version.snapshot_hash,
            version.parent_version,
            version.created_at,
        ),
    )


def ensure_version(warehouse: Warehouse, version: ModelVersion) -> bool:
    """Insert the row of ``version`` unless it is there; returns whether it was inserted."""
    found = warehouse.query(
        "SELECT 1 FROM dim_model_version WHERE model_version_key = ?", (version.key,)
    )
    if found:
        return False
    insert_version(warehouse, version)
    return True


def highest_version(warehouse: Warehouse, model: str) -> int:
    """The highest version number the warehouse has seen for ``model`` (0 if none).

    Counted so that a registry folder rebuilt from scratch never reuses a version id that
    predictions in the warehouse already refer to.
    """
    rows = warehouse.query("SELECT version FROM dim_model_version WHERE model_name = ?", (model,))
    numbers = [version_number(str(row[0])) for row in rows]
    return max((n for n in numbers if n is not None), default=0)
