"""Fixtures of the registry tests: isolated settings, fake artifact files, a registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.registry import REQUIRED_ROLES, ModelVersion, Registry

from .fakes import MODEL, metadata


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    """Settings under a fresh home, with the embedded DuckDB warehouse there."""
    return make_settings(tmp_path / "home", None)


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings)


@pytest.fixture
def artifacts(tmp_path: Path) -> Callable[..., dict[str, Path]]:
    """Factory: small fake files for every required role (the registry reads no ONNX)."""
    counter = iter(range(1_000_000))

    def make(tag: str | None = None, **overrides: bytes) -> dict[str, Path]:
        folder = tmp_path / f"artifacts-{next(counter)}"
        folder.mkdir()
        files = {}
        for role in REQUIRED_ROLES:
            path = folder / role
            path.write_bytes(overrides.get(role.replace(".", "_"), f"{role} {tag}\n".encode()))
            files[role] = path
        return files

    return make


@pytest.fixture
def register(
    registry: Registry, artifacts: Callable[..., dict[str, Path]]
) -> Callable[..., ModelVersion]:
    """Factory: register a version of MODEL with fake files."""

    def run(reason: str = "test", **extra: Any) -> ModelVersion:
        return registry.register(
            MODEL, artifacts(reason), metadata=metadata(**extra), reason=reason
        )

    return run
