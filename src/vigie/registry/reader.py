"""Reading the registry: models, versions, aliases, and integrity-checked artifacts.

Reads take no lock: a version folder and ``aliases.json`` only ever appear whole.
"""

from __future__ import annotations

from pathlib import Path

from vigie.errors import ErrorCode, VigieError
from vigie.registry.aliases import ALIASES_FILE, Alias, AliasChange, AliasState, parse_aliases
from vigie.registry.manifest import (
    MANIFEST,
    ModelVersion,
    check_model_name,
    parse_manifest,
    version_number,
)
from vigie.registry.store import ArtifactStore


class Reader:
    """Read-only access to the registry held by ``store``."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store

    def models(self) -> list[str]:
        """Names of the models with at least one version, sorted."""
        return [m for m in self._store.children("") if self._version_ids(m)]

    def versions(self, model: str) -> list[ModelVersion]:
        """Every version of ``model``, oldest first.

        Raises:
            VigieError: NOT_FOUND for a model without versions.
        """
        ids = self._version_ids(check_model_name(model))
        if not ids:
            known = ", ".join(self.models()) or "none"
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"no model {model!r} in the registry (models: {known})",
                model=model,
            )
        return [self._manifest(model, v) for v in ids]

    def get(self, model: str, ref: str) -> ModelVersion:
        """The version named by ``ref``: a version id (``3``) or an alias (``production``).

        Raises:
            VigieError: NOT_FOUND for an unknown version or an unset alias, INVALID_INPUT for
                a ref that is neither.
        """
        return self._manifest(model, self.resolve(model, ref))

    def resolve(self, model: str, ref: str) -> str:
        """The version id that ``ref`` names (see :meth:`get`)."""
        check_model_name(model)
        if ref in {a.value for a in Alias}:
            version = self._alias_state(model).aliases.get(Alias(ref))
            if version is None:
                raise VigieError(
                    ErrorCode.NOT_FOUND,
                    f"no version of {model} is {ref}",
                    model=model,
                    alias=ref,
                )
            return version
        if version_number(ref) is None:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"{ref!r} is neither a version id (1, 2, ...) nor an alias "
                f"({', '.join(a.value for a in Alias)})",
                field="version",
            )
        if not self._store.exists(f"{model}/versions/{ref}/{MANIFEST}"):
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"{model} has no version {ref}",
                model=model,
                version=ref,
            )
        return ref

    def aliases(self, model: str) -> dict[str, str]:
        """Where each alias of ``model`` points (alias to version id); unset ones left out."""
        check_model_name(model)
        return {a.value: v for a, v in self._alias_state(model).aliases.items()}

    def history(self, model: str) -> list[AliasChange]:
        """Every alias move of ``model``, oldest first."""
        check_model_name(model)
        return list(self._alias_state(model).history)

    def verify(self, model: str, ref: str) -> ModelVersion:
        """Recompute the sha256 of every file of a version and compare with its manifest.

        Returns:
            The version, when every file matches.

        Raises:
            VigieError: ARTIFACT_CORRUPT naming the file and the expected and actual hashes
                (a changed, truncated, missing or unexpected file), NOT_FOUND.
        """
        version = self.get(model, ref)
        folder = f"{model}/versions/{version.version}"
        for role, expected in sorted(version.files.items()):
            actual = self._store.digest(f"{folder}/{role}")
            if actual != expected:
                found = (
                    "the file is missing"
                    if actual is None
                    else f"found sha256 {actual.sha256} ({actual.size} bytes)"
                )
                raise VigieError(
                    ErrorCode.ARTIFACT_CORRUPT,
                    f"{model} version {version.version}: {role} is corrupt: expected sha256 "
                    f"{expected.sha256} ({expected.size} bytes), {found}",
                    model=model,
                    version=version.version,
                    file=role,
                    expected_sha256=expected.sha256,
                    actual_sha256=actual.sha256 if actual else None,
                )
        unexpected = sorted(set(self._store.children(folder)) - set(version.files) - {MANIFEST})
        if unexpected:
            raise VigieError(
                ErrorCode.ARTIFACT_CORRUPT,
                f"{model} version {version.version} holds files its manifest does not list: "
                f"{', '.join(unexpected)}",
                model=model,
                version=version.version,
                file=unexpected[0],
            )
        return version

    def open_artifact(self, model: str, ref: str, role: str) -> Path:
        """A local path to one file of a version, after checking the whole version.

        Args:
            model: The model.
            ref: A version id or an alias.
            role: The file's role name, e.g. ``model.onnx``.

        Raises:
            VigieError: ARTIFACT_CORRUPT (see :meth:`verify`), NOT_FOUND for an unknown
                version or a role the version does not have.
        """
        version = self.verify(model, ref)
        if role not in version.files:
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"{model} version {version.version} has no file {role!r} "
                f"(files: {', '.join(sorted(version.files))})",
                model=model,
                version=version.version,
                file=role,
            )
        return self._store.local_path(f"{model}/versions/{version.version}/{role}")

    def _version_ids(self, model: str) -> list[str]:
        numbered: dict[int, str] = {}
        for name in self._store.children(f"{model}/versions"):
            number = version_number(name)
            if number is not None:
                numbered[number] = name
        return [numbered[n] for n in sorted(numbered)]

    def _manifest(self, model: str, version: str) -> ModelVersion:
        key = f"{model}/versions/{version}/{MANIFEST}"
        if not self._store.exists(key):
            raise VigieError(ErrorCode.NOT_FOUND, f"{model} has no version {version}", model=model)
        return parse_manifest(model, version, self._store.read_bytes(key))

    def _alias_state(self, model: str) -> AliasState:
        key = f"{model}/{ALIASES_FILE}"
        return parse_aliases(
            model, self._store.read_bytes(key) if self._store.exists(key) else None
        )
