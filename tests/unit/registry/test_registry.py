"""Registering, listing and reading versions; immutability; integrity; warehouse; audit."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import verify as verify_audit
from vigie.registry import REQUIRED_ROLES, ModelVersion, Registry, model_version_key
from vigie.warehouse.connection import connect

from .fakes import MODEL, metadata, sha256


def test_register_copies_files_with_manifest_and_sets_candidate(
    registry: Registry, settings: Settings, artifacts: Callable[..., dict[str, Path]]
) -> None:
    files = artifacts("one")
    version = registry.register(
        MODEL, files, metadata=metadata(run_id="r1"), reason="first training"
    )

    assert version.version == "1"
    assert version.created_by == "vigie-tests"
    assert version.reason == "first training"
    assert version.extra == {"run_id": "r1"}
    assert version.metrics == {"roc_auc": 0.71, "brier": 0.18}
    assert version.artifact_sha256 == sha256(files["model.onnx"])
    folder = settings.registry_dir / MODEL / "versions" / "1"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*REQUIRED_ROLES, "manifest.json"])
    manifest = json.loads((folder / "manifest.json").read_text())
    for role in REQUIRED_ROLES:
        assert manifest["files"][role] == {
            "sha256": sha256(files[role]),
            "size": files[role].stat().st_size,
        }
    assert manifest["snapshot_hash"] == "a" * 64
    assert manifest["code_version"] == "0.1.0+test"
    assert manifest["parent_version"] is None
    assert registry.aliases(MODEL) == {"candidate": "1"}


def test_versions_get_models_and_aliases(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    first = register("one")
    second = register("two", parent_version="1")

    assert [v.version for v in registry.versions(MODEL)] == ["1", "2"]
    assert registry.get(MODEL, "1") == first
    assert registry.get(MODEL, "candidate") == second
    assert second.parent_version == "1"
    assert registry.models() == [MODEL]
    assert registry.aliases(MODEL) == {"candidate": "2"}
    assert [(c.alias, c.from_version, c.to_version) for c in registry.history(MODEL)] == [
        ("candidate", None, "1"),
        ("candidate", "1", "2"),
    ]


def test_version_ids_are_numeric_and_ordered_past_nine(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    for i in range(11):
        register(f"v{i}")
    assert [v.version for v in registry.versions(MODEL)] == [str(i) for i in range(1, 12)]


def test_parent_given_as_alias_is_resolved_and_unknown_parent_refused(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    register("one")
    assert register("two", parent_version="candidate").parent_version == "1"
    with pytest.raises(VigieError) as err:
        register("three", parent_version="9")
    assert err.value.code == ErrorCode.NOT_FOUND
    assert [v.version for v in registry.versions(MODEL)] == ["1", "2"]


def test_files_are_read_only_and_re_registering_makes_a_new_version(
    registry: Registry, settings: Settings, artifacts: Callable[..., dict[str, Path]]
) -> None:
    files = artifacts("same")
    first = registry.register(MODEL, files, metadata=metadata(), reason="r")
    second = registry.register(MODEL, files, metadata=metadata(), reason="again")

    assert (first.version, second.version) == ("1", "2")
    assert first.files == second.files
    folder = settings.registry_dir / MODEL / "versions" / "1"
    assert not folder.stat().st_mode & stat.S_IWUSR
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    # The copy does not follow later edits of the source file.
    files["model.onnx"].write_bytes(b"retrained")
    registry.verify(MODEL, "1")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "needs the files model.onnx"),
        ({"../evil": b"x"}, "invalid file role name"),
        ({"manifest.json": b"x"}, "invalid file role name"),
    ],
)
def test_bad_files_are_refused(
    registry: Registry,
    artifacts: Callable[..., dict[str, Path]],
    tmp_path: Path,
    files: dict[str, bytes],
    message: str,
) -> None:
    given = artifacts() if files else {"spec.yaml": artifacts()["spec.yaml"]}
    for role, content in files.items():
        extra = tmp_path / "extra"
        extra.write_bytes(content)
        given[role] = extra
    with pytest.raises(VigieError) as err:
        registry.register(MODEL, given, metadata=metadata(), reason="r")
    assert err.value.code == ErrorCode.INVALID_INPUT
    assert message in err.value.message


def test_missing_source_file_bad_metadata_and_bad_names_are_refused(
    registry: Registry, artifacts: Callable[..., dict[str, Path]], tmp_path: Path
) -> None:
    files = artifacts()
    cases = [
        ("Flight-Delay", files, metadata(), "r", "invalid model name"),
        (MODEL, files | {"model.onnx": tmp_path / "nope"}, metadata(), "r", "is not a file"),
        (MODEL, files, {"code_version": "x"}, "r", "snapshot_hash"),
        (MODEL, files, metadata(metrics={"slices": {"a": 1}}), "r", "metrics"),
        (MODEL, files, metadata(when=object()), "r", "JSON"),
        (MODEL, files, metadata(), "  ", "reason is required"),
    ]
    for model, given, meta, reason, message in cases:
        with pytest.raises(VigieError) as err:
            registry.register(model, given, metadata=meta, reason=reason)
        assert err.value.code == ErrorCode.INVALID_INPUT, message
        assert message in err.value.message
    assert registry.models() == []


def test_unknown_model_version_and_ref(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    with pytest.raises(VigieError, match="no model 'arrival_delay'") as err:
        registry.versions("arrival_delay")
    assert err.value.code == ErrorCode.NOT_FOUND
    register()
    for ref, code in [("7", ErrorCode.NOT_FOUND), ("production", ErrorCode.NOT_FOUND)]:
        with pytest.raises(VigieError) as err:
            registry.get(MODEL, ref)
        assert err.value.code == code
    with pytest.raises(VigieError) as err:
        registry.get(MODEL, "latest")
    assert err.value.code == ErrorCode.INVALID_INPUT


def test_open_artifact_returns_the_verified_file(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    version = register()
    path = registry.open_artifact(MODEL, "candidate", "model.onnx")
    assert sha256(path) == version.artifact_sha256
    with pytest.raises(VigieError) as err:
        registry.open_artifact(MODEL, "1", "weights.bin")
    assert err.value.code == ErrorCode.NOT_FOUND


def _tamper(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.chmod(0o644)
    path.write_bytes(change(path.read_bytes()))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: bytes([b[0] ^ 1]) + b[1:], id="flipped-byte"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
    ],
)
def test_tampered_artifact_is_refused_naming_file_and_hashes(
    registry: Registry,
    settings: Settings,
    register: Callable[..., ModelVersion],
    change: Callable[[bytes], bytes],
) -> None:
    version = register()
    path = settings.registry_dir / MODEL / "versions" / "1" / "model.onnx"
    _tamper(path, change)

    for load in (
        lambda: registry.open_artifact(MODEL, "candidate", "spec.yaml"),
        lambda: registry.verify(MODEL, "1"),
    ):
        with pytest.raises(VigieError) as err:
            load()
        assert err.value.code == ErrorCode.ARTIFACT_CORRUPT
        assert "model.onnx" in err.value.message
        assert version.artifact_sha256 in err.value.message
        assert sha256(path) in err.value.message
        assert err.value.details["file"] == "model.onnx"


def test_missing_extra_file_and_broken_manifest_are_corrupt(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register()
    folder = settings.registry_dir / MODEL / "versions" / "1"
    folder.chmod(0o755)
    (folder / "notes.txt").write_text("sneaked in")
    with pytest.raises(VigieError, match="notes.txt") as err:
        registry.verify(MODEL, "1")
    assert err.value.code == ErrorCode.ARTIFACT_CORRUPT
    (folder / "notes.txt").unlink()
    (folder / "metrics.json").unlink()
    with pytest.raises(VigieError, match="metrics.json is corrupt.*missing"):
        registry.verify(MODEL, "1")
    _tamper(folder / "manifest.json", lambda b: b[:20])
    with pytest.raises(VigieError, match="manifest") as err:
        registry.get(MODEL, "1")
    assert err.value.code == ErrorCode.ARTIFACT_CORRUPT


def test_leftover_staging_folder_is_ignored_then_swept(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    leftover = settings.registry_dir / MODEL / "versions" / ".staging-dead"
    leftover.mkdir(parents=True)
    (leftover / "model.onnx").write_bytes(b"half")
    leftover.chmod(0o555)
    assert registry.models() == []
    register()
    assert not leftover.exists()
    assert [v.version for v in registry.versions(MODEL)] == ["1"]


def test_dim_model_version_row_inserted(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register("one")
    second = register("two", parent_version="1")
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        rows = warehouse.query(
            "SELECT model_version_key, model_name, version, artifact_sha256, snapshot_hash, "
            "parent_version, registered_at FROM dim_model_version ORDER BY version"
        )
    finally:
        warehouse.close()
    assert len(rows) == 2
    key, model, version, artifact, snapshot, parent, registered_at = rows[1]
    assert key == model_version_key(MODEL, "2") == second.key
    assert (model, version, artifact, snapshot, parent) == (
        MODEL,
        "2",
        second.artifact_sha256,
        "a" * 64,
        "1",
    )
    assert registered_at == second.created_at


def test_version_ids_never_reuse_one_the_warehouse_knows(
    settings: Settings, register: Callable[..., ModelVersion], registry: Registry
) -> None:
    register("one")
    register("two")
    # The registry folder is lost, the warehouse (and its predictions) remain.
    for path in sorted(settings.registry_dir.rglob("*"), reverse=True):
        path.chmod(0o755)
    shutil.rmtree(settings.registry_dir)
    assert register("three").version == "3"


def test_sync_warehouse_inserts_missing_rows_only(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register("one")
    register("two")
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        warehouse.execute("DELETE FROM dim_model_version WHERE version = '1'")
    finally:
        warehouse.close()
    assert registry.sync_warehouse() == [f"{MODEL}/1"]
    assert registry.sync_warehouse(MODEL) == []


def test_registration_is_audited_and_the_log_verifies(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    version = register("audited")
    lines = settings.audit_log_path.read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["action"] == "registry.register"
    assert entry["target"] == f"{MODEL}/1"
    assert entry["actor"] == "vigie-tests"
    assert entry["outcome"] == "success"
    assert entry["inputs"]["files"]["model.onnx"] == version.artifact_sha256
    assert entry["details"]["reason"] == "audited"
    assert verify_audit(settings.audit_log_path).ok


def test_model_version_key_is_63_bit_stable_and_distinct() -> None:
    keys = {
        model_version_key(m, str(v)) for m in ("flight_delay", "arrival_delay") for v in range(500)
    }
    assert len(keys) == 1000
    assert all(0 < k < 2**63 for k in keys)
    assert model_version_key("flight_delay", "1") == model_version_key("flight_delay", "1")
