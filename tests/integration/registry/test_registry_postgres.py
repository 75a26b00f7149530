"""The registry's warehouse metadata on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.registry import REQUIRED_ROLES, Registry, model_version_key

pytestmark = pytest.mark.integration

MODEL = "arrival_delay"


def _files(folder: Path, tag: str) -> dict[str, Path]:
    folder.mkdir()
    for role in REQUIRED_ROLES:
        (folder / role).write_bytes(f"{role} {tag}\n".encode())
    return {role: folder / role for role in REQUIRED_ROLES}


def test_register_inserts_dim_model_version_rows_in_postgres(
    tmp_path: Path,
    postgres_url: str,
    make_settings: Callable[..., Settings],
    query: Callable[..., list[tuple[Any, ...]]],
) -> None:
    settings = make_settings(tmp_path / "home", None, postgres_url)
    registry = Registry(settings)
    meta = {"snapshot_hash": "b" * 64, "code_version": "0.1.0", "metrics": {"mae": 17.5}}
    first = registry.register(MODEL, _files(tmp_path / "a", "a"), metadata=meta, reason="one")
    second = registry.register(
        MODEL,
        _files(tmp_path / "b", "b"),
        metadata=meta | {"parent_version": "1"},
        reason="two",
    )

    rows = query(
        postgres_url,
        "SELECT model_version_key, version, artifact_sha256, snapshot_hash, parent_version, "
        "registered_at FROM dim_model_version ORDER BY version",
    )
    assert [r[:5] for r in rows] == [
        (model_version_key(MODEL, "1"), "1", first.artifact_sha256, "b" * 64, None),
        (model_version_key(MODEL, "2"), "2", second.artifact_sha256, "b" * 64, "1"),
    ]
    assert rows[1][5] == second.created_at

    query(postgres_url, "DELETE FROM dim_model_version WHERE version = '2' RETURNING 1")
    assert registry.sync_warehouse(MODEL) == [f"{MODEL}/2"]
    assert registry.sync_warehouse(MODEL) == []
