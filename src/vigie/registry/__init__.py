"""The model registry: immutable versions, aliases, promotion gates, rollback.

See ``docs/registry.md``. The public names are re-exported here.
"""

from vigie.registry.aliases import Alias, AliasChange
from vigie.registry.gates import (
    GateEvidence,
    GateReport,
    GateResult,
    GateSpec,
    Latency,
    ProductionMargin,
    Threshold,
    evaluate_gates,
)
from vigie.registry.manifest import REQUIRED_ROLES, ModelVersion, model_version_key
from vigie.registry.registry import Registry
from vigie.registry.store import ArtifactStore, FileDigest, LocalStore

__all__ = [
    "REQUIRED_ROLES",
    "Alias",
    "AliasChange",
    "ArtifactStore",
    "FileDigest",
    "GateEvidence",
    "GateReport",
    "GateResult",
    "GateSpec",
    "Latency",
    "LocalStore",
    "ModelVersion",
    "ProductionMargin",
    "Registry",
    "Threshold",
    "evaluate_gates",
    "model_version_key",
]
