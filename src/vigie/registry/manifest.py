"""The manifest of a model version: what it holds, the hash of every file, where it came from.

A version folder holds its files and one ``manifest.json``; the manifest is written in the
same staging folder and published with them, so a version never exists without it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError

from vigie.errors import ErrorCode, VigieError
from vigie.registry.store import FileDigest

#: The manifest's own file name inside a version folder.
MANIFEST = "manifest.json"

#: Version of the manifest format, bumped on any incompatible change.
MANIFEST_FORMAT = 1

#: The ONNX model; its sha256 is the version's ``artifact_sha256``.
MODEL_ROLE = "model.onnx"

#: Files every version must hold, by role name.
REQUIRED_ROLES = (
    MODEL_ROLE,
    "spec.yaml",
    "model_card.md",
    "metrics.json",
    "reference_sample.parquet",
)

_MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY_MASK = (1 << 63) - 1


class ModelVersion(BaseModel):
    """One immutable registered version of a model, as its manifest describes it.

    Attributes:
        format: Manifest format version (:data:`MANIFEST_FORMAT`).
        model: The model's name, e.g. ``flight_delay``.
        version: The version id: ``1``, ``2``, ... in registration order.
        created_at: When it was registered (UTC).
        created_by: Who registered it.
        reason: Why it was registered, as given.
        files: Every file by role name, with its sha256 and size.
        metrics: Headline evaluation metrics (name to value).
        snapshot_hash: Content hash of the training snapshot.
        code_version: Version of the code that trained it (git commit or package version).
        parent_version: The version it was derived from or meant to replace, if any.
        extra: Any other metadata given at registration, kept as given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = MANIFEST_FORMAT
    model: str
    version: str
    created_at: datetime
    created_by: str
    reason: str
    files: dict[str, FileDigest]
    metrics: dict[str, float] = Field(default_factory=dict)
    snapshot_hash: str
    code_version: str
    parent_version: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def artifact_sha256(self) -> str:
        """sha256 of the ONNX file."""
        return self.files[MODEL_ROLE].sha256

    @property
    def key(self) -> int:
        """The warehouse's ``model_version_key`` of this version."""
        return model_version_key(self.model, self.version)

    def to_json(self) -> bytes:
        """The manifest as written to ``manifest.json``."""
        return (self.model_dump_json(indent=2) + "\n").encode()


def model_version_key(model: str, version: str) -> int:
    """The 63-bit surrogate key of ``(model, version)`` in ``dim_model_version``; never 0.

    The first 8 bytes of ``sha256(model + NUL + version)``, big-endian, keeping 63 bits, so
    serving and monitoring compute the same key without a lookup.
    """
    digest = hashlib.sha256(f"{model}\x00{version}".encode()).digest()
    key = int.from_bytes(digest[:8], "big") & _KEY_MASK
    return key or 1


def parse_manifest(model: str, version: str, data: bytes) -> ModelVersion:
    """Read a manifest, refusing one that is not valid or names another version.

    Raises:
        VigieError: ARTIFACT_CORRUPT naming the problem.
    """
    try:
        manifest = ModelVersion.model_validate_json(data)
    except ValidationError as err:
        raise VigieError(
            ErrorCode.ARTIFACT_CORRUPT,
            f"the manifest of {model} version {version} is not valid: {err.errors()[0]['msg']}",
            model=model,
            version=version,
            file=MANIFEST,
        ) from err
    if (manifest.model, manifest.version) != (model, version) or MODEL_ROLE not in manifest.files:
        raise VigieError(
            ErrorCode.ARTIFACT_CORRUPT,
            f"the manifest of {model} version {version} describes "
            f"{manifest.model} version {manifest.version} or lacks {MODEL_ROLE}",
            model=model,
            version=version,
            file=MANIFEST,
        )
    return manifest


def check_model_name(model: str) -> str:
    """Return ``model`` if it is a valid model name.

    Raises:
        VigieError: INVALID_INPUT saying what a name may be.
    """
    if not _MODEL_NAME.match(model):
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"invalid model name {model!r}: expected lower-case letters, digits and '_', "
            "starting with a letter (at most 64 characters)",
            field="model",
        )
    return model


def check_roles(roles: Mapping[str, object]) -> None:
    """Refuse a set of files missing a required role or holding a badly named one.

    Raises:
        VigieError: INVALID_INPUT naming the roles concerned.
    """
    bad = sorted(r for r in roles if not _ROLE_NAME.match(r) or r == MANIFEST)
    if bad:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"invalid file role name(s) {', '.join(map(repr, bad))}: expected a plain file "
            f"name such as 'model.onnx' (and not {MANIFEST!r})",
            field="files",
        )
    missing = [r for r in REQUIRED_ROLES if r not in roles]
    if missing:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"a model version needs the files {', '.join(missing)} (missing)",
            field="files",
            missing=missing,
        )


def version_number(version: str) -> int | None:
    """The number of a version id (``"3"`` gives 3); None when it is not one."""
    return int(version) if version.isdecimal() and version == str(int(version)) else None


#: Metadata keys that have their own manifest field; any other key goes to ``extra``.
_METADATA_FIELDS = ("metrics", "snapshot_hash", "code_version", "parent_version")


def new_manifest(
    *,
    model: str,
    version: str,
    files: Mapping[str, FileDigest],
    metadata: Mapping[str, Any],
    reason: str,
    actor: str,
    created_at: datetime,
) -> ModelVersion:
    """The manifest of a version being registered, from the caller's metadata.

    Raises:
        VigieError: INVALID_INPUT naming the metadata field that is missing or wrong.
    """
    given = {k: metadata[k] for k in _METADATA_FIELDS if k in metadata}
    extra = {k: v for k, v in metadata.items() if k not in _METADATA_FIELDS}
    try:
        manifest = ModelVersion.model_validate(
            {
                "model": model,
                "version": version,
                "created_at": created_at,
                "created_by": actor,
                "reason": reason,
                "files": dict(files),
                "extra": extra,
                **given,
            }
        )
        manifest.to_json()
    except PydanticSerializationError as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"model version metadata must be JSON values: {err}",
            field="metadata",
        ) from err
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"invalid model version metadata: {field}: {first['msg']} "
            "(needed: snapshot_hash, code_version; optional: metrics, parent_version)",
            field=f"metadata.{field}",
        ) from err
    return manifest


def check_sources(files: Mapping[str, Path]) -> None:
    """Refuse files to register that are not readable regular files.

    Raises:
        VigieError: INVALID_INPUT naming the role and the path.
    """
    for role, source in sorted(files.items()):
        if not Path(source).is_file():
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"the {role} file to register, {source}, is not a file",
                field=f"files.{role}",
                path=str(source),
            )
