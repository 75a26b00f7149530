"""The local artifact store: staged folders appear whole or not at all."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.registry import LocalStore


def test_staged_folder_is_published_read_only_with_digests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx bytes")
    with store.stage("m/versions/1") as staging:
        digest = staging.add_file("model.onnx", source)
        staging.add_bytes("manifest.json", b"{}")
        assert store.children("m/versions") == []  # not visible before the commit
        staging.commit()
    assert digest.sha256 == hashlib.sha256(b"onnx bytes").hexdigest()
    assert digest.size == 10
    assert store.children("m/versions") == ["1"]
    assert store.digest("m/versions/1/model.onnx") == digest
    assert store.digest("m/versions/1/absent") is None
    folder = store.local_path("m/versions/1")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555


def test_uncommitted_or_failed_staging_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    with pytest.raises(RuntimeError), store.stage("m/versions/1") as staging:
        staging.add_bytes("a", b"1")
        raise RuntimeError("interrupted")
    with store.stage("m/versions/1") as staging:
        staging.add_bytes("a", b"1")
    assert list((tmp_path / "reg" / "m" / "versions").iterdir()) == []


def test_publishing_over_an_existing_version_is_a_conflict(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    for attempt in range(2):
        with store.stage("m/versions/1") as staging:
            staging.add_bytes("a", f"{attempt}".encode())
            if attempt == 0:
                staging.commit()
                continue
            with pytest.raises(VigieError) as err:
                staging.commit()
            assert err.value.code == ErrorCode.CONFLICT
    assert store.read_bytes("m/versions/1/a") == b"0"


def test_bad_keys_and_names_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    with pytest.raises(VigieError):
        store.read_bytes("m/../../etc/passwd")
    with store.stage("m/versions/1") as staging, pytest.raises(VigieError):
        staging.add_bytes("../x", b"")
    with pytest.raises(VigieError) as err:
        store.read_bytes("m/none")
    assert err.value.code == ErrorCode.NOT_FOUND


def test_replace_is_whole_and_sweep_removes_leftovers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    store.replace("m/aliases.json", b"one")
    store.replace("m/aliases.json", b"two")
    assert store.read_bytes("m/aliases.json") == b"two"
    (tmp_path / "reg" / "m" / ".staging-x-aliases.json").write_bytes(b"half")
    assert store.children("m") == ["aliases.json"]
    assert store.sweep("m") == [".staging-x-aliases.json"]
    assert store.sweep("absent") == []
