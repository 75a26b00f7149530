"""The model registry: immutable versions, aliases with history, gated promotion, rollback.

Layout of the store (keys relative to ``Settings.registry_dir``)::

    <model>/.lock                      exclusive lock of every writer of the model
    <model>/aliases.json               aliases and their history (replaced atomically)
    <model>/versions/<n>/manifest.json files, sha256 and sizes, metadata
    <model>/versions/<n>/<role>        model.onnx, spec.yaml, model_card.md, ...

Readers take no lock: a version folder and ``aliases.json`` only ever appear whole.
Writers of one model take turns on its lock; the warehouse row of a version is inserted in
the transaction that publishes its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import AuditLog, Outcome
from vigie.registry import catalog
from vigie.registry.aliases import ALIASES_FILE, Alias, AliasChange, AliasState, parse_alias
from vigie.registry.gates import GateReport
from vigie.registry.manifest import (
    MANIFEST,
    ModelVersion,
    check_model_name,
    check_roles,
    check_sources,
    new_manifest,
    version_number,
)
from vigie.registry.promotion import check_promotion, move_alias, refusal
from vigie.registry.reader import Reader
from vigie.registry.store import ArtifactStore, LocalStore
from vigie.warehouse.connection import Warehouse


class Registry(Reader):
    """The model registry of one vigie installation.

    Args:
        settings: Where the store, the warehouse and the audit log are, and who acts.
        store: The artifact store; default: a :class:`LocalStore` on ``registry_dir``.
    """

    def __init__(self, settings: Settings, *, store: ArtifactStore | None = None) -> None:
        super().__init__(store or LocalStore(settings.registry_dir))
        self._settings = settings
        self._audit = AuditLog(settings.audit_log_path)

    def register(
        self,
        model: str,
        files: Mapping[str, Path],
        *,
        metadata: Mapping[str, Any],
        reason: str,
    ) -> ModelVersion:
        """Register a new immutable version and point ``candidate`` at it.

        Args:
            model: The model's name, e.g. ``flight_delay``.
            files: Local files by role name (``model.onnx``, ``spec.yaml``, ...); copied.
            metadata: ``snapshot_hash`` and ``code_version`` (required), ``metrics``
                (name to number) and ``parent_version`` (a version id or alias), and any
                other JSON values, kept under ``extra``.
            reason: Why it is registered (kept in the manifest, history and audit log).

        Returns:
            The new version.

        Raises:
            VigieError: INVALID_INPUT (name, files, metadata, reason), NOT_FOUND (parent),
                WAREHOUSE_UNAVAILABLE.
        """
        check_model_name(model)
        check_roles(files)
        check_sources(files)
        _check_reason(reason)
        actor = self._settings.actor
        with (
            catalog.open_catalog(self._settings.resolved_warehouse_url) as warehouse,
            self._store.lock(_lock_key(model)),
        ):
            self._store.sweep(f"{model}/versions")
            parent = metadata.get("parent_version")
            if parent is not None:
                metadata = {**metadata, "parent_version": self.resolve(model, str(parent))}
            number = max(self._highest(model), catalog.highest_version(warehouse, model)) + 1
            version, manifest_sha256 = self._publish(
                warehouse, model, str(number), files, metadata=metadata, reason=reason
            )
            self._update_aliases(
                model,
                lambda state: move_alias(
                    state,
                    Alias.CANDIDATE,
                    version.version,
                    action="register",
                    actor=actor,
                    reason=reason,
                ),
            )
            self._audit_register(version, manifest_sha256)
        return version

    def _publish(
        self,
        warehouse: Warehouse,
        model: str,
        number: str,
        files: Mapping[str, Path],
        *,
        metadata: Mapping[str, Any],
        reason: str,
    ) -> tuple[ModelVersion, str]:
        """Copy, hash and publish a version folder with its warehouse row, all or nothing.

        Returns:
            The version and the sha256 of its manifest.
        """
        with self._store.stage(f"{model}/versions/{number}") as staging:
            digests = {role: staging.add_file(role, Path(files[role])) for role in sorted(files)}
            version = new_manifest(
                model=model,
                version=number,
                files=digests,
                metadata=metadata,
                reason=reason,
                actor=self._settings.actor,
                created_at=datetime.now(UTC),
            )
            manifest = staging.add_bytes(MANIFEST, version.to_json())
            # The row commits only if the folder is published; a crash in between leaves a
            # version without its row, which sync_warehouse() repairs.
            with warehouse.transaction():
                catalog.insert_version(warehouse, version)
                staging.commit()
        return version, manifest.sha256

    def promote(
        self,
        model: str,
        version: str,
        *,
        to: Alias | str,
        report: GateReport | None,
        reason: str,
    ) -> AliasChange:
        """Point alias ``to`` at ``version``; a new production version archives the old one.

        Args:
            model: The model.
            version: A version id, or an alias naming it (``candidate``).
            to: The alias to move.
            report: The gate report of this version; required for ``production``.
            reason: Why (history and audit log).

        Returns:
            The move of ``to`` (its ``from_version`` is the version archived, for production).

        Raises:
            VigieError: NOT_FOUND (model, version), CONFLICT (already there),
                PROMOTION_REJECTED (failed gates, missing or foreign report),
                ARTIFACT_CORRUPT (integrity check).
        """
        _check_reason(reason)
        alias = parse_alias(to)
        actor = self._settings.actor
        with self._store.lock(_lock_key(model)):
            target = version
            try:
                target = self.resolve(model, version)
                check_promotion(
                    model, target, alias, current=self._alias_state(model), report=report
                )
                self.verify(model, target)
            except VigieError as err:
                self._audit_refused("registry.promote", model, target, err, reason)
                raise
            change = self._update_aliases(
                model,
                lambda state: move_alias(
                    state, alias, target, action="promote", actor=actor, reason=reason
                ),
            )
            self._audit_move("registry.promote", change, report)
        return change

    def rollback(self, model: str, *, reason: str) -> AliasChange:
        """Return ``production`` to the version in production before the current one.

        The version rolled back from becomes ``archived``. Rollbacks stack: two in a row
        go back two releases.

        Raises:
            VigieError: NOT_FOUND when there is no earlier production version,
                ARTIFACT_CORRUPT when that version fails its integrity check.
        """
        _check_reason(reason)
        actor = self._settings.actor
        with self._store.lock(_lock_key(model)):
            current: str | None = None
            try:
                stack = self._alias_state(model).production_stack()
                current = stack[-1] if stack else None
                if len(stack) < 2:
                    raise VigieError(
                        ErrorCode.NOT_FOUND,
                        f"{model} has no earlier production version to roll back to",
                        model=model,
                    )
                self.verify(model, stack[-2])
            except VigieError as err:
                self._audit_refused("registry.rollback", model, current or "-", err, reason)
                raise
            previous = stack[-2]
            change = self._update_aliases(
                model,
                lambda state: move_alias(
                    state,
                    Alias.PRODUCTION,
                    previous,
                    action="rollback",
                    actor=actor,
                    reason=reason,
                ),
            )
            self._audit_move("registry.rollback", change, None)
        return change

    def sync_warehouse(self, model: str | None = None) -> list[str]:
        """Insert the ``dim_model_version`` rows missing for registered versions.

        Needed only after a crash between publishing a version and committing its row,
        or against a new warehouse. Returns ``model/version`` of each row inserted.
        """
        inserted = []
        with catalog.open_catalog(self._settings.resolved_warehouse_url) as warehouse:
            for name in [model] if model else self.models():
                for version in self.versions(name):
                    if catalog.ensure_version(warehouse, version):
                        inserted.append(f"{name}/{version.version}")
        return inserted

    def _update_aliases(
        self, model: str, change: Callable[[AliasState], AliasChange]
    ) -> AliasChange:
        """Apply ``change`` to the alias state and replace ``aliases.json``; under the lock."""
        state = self._alias_state(model)
        result = change(state)
        self._store.sweep(model)
        self._store.replace(f"{model}/{ALIASES_FILE}", state.to_json())
        return result

    def _highest(self, model: str) -> int:
        numbers = (version_number(v) for v in self._store.children(f"{model}/versions"))
        return max((n for n in numbers if n is not None), default=0)

    def _audit_register(self, version: ModelVersion, manifest_sha256: str) -> None:
        self._audit.append(
            self._settings.actor,
            "registry.register",
            f"{version.model}/{version.version}",
            Outcome.SUCCESS,
            inputs={
                "manifest_sha256": manifest_sha256,
                "files": {role: d.sha256 for role, d in version.files.items()},
                "snapshot_hash": version.snapshot_hash,
            },
            details={
                "reason": version.reason,
                "code_version": version.code_version,
                "parent_version": version.parent_version,
                "metrics": version.metrics,
                "alias": Alias.CANDIDATE.value,
            },
        )

    def _audit_move(self, action: str, change: AliasChange, report: GateReport | None) -> None:
        self._audit.append(
            change.actor,
            action,
            f"{change.model}/{change.to_version}",
            Outcome.SUCCESS,
            details={
                "alias": change.alias.value,
                "from_version": change.from_version,
                "to_version": change.to_version,
                "reason": change.reason,
                "gates": None if report is None else [r.message for r in report.results],
            },
        )

    def _audit_refused(
        self, action: str, model: str, version: str, err: VigieError, reason: str
    ) -> None:
        self._audit.append(
            self._settings.actor,
            action,
            f"{model}/{version}",
            Outcome.REFUSED,
            details=refusal(err, reason),
        )


def _lock_key(model: str) -> str:
    return f"{check_model_name(model)}/.lock"


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            "a reason is required (it goes to the audit log)",
            field="reason",
        )
