"""The deploy tests' shared fixture: every overlay, rendered once for the whole session."""

from __future__ import annotations

import pytest

from .manifests import K8S, OVERLAYS, Object, kustomize


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Object]]:
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}
