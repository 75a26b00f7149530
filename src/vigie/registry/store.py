"""Where the registry keeps its bytes: a small interface and its local-filesystem version.

The registry speaks to its store in ``/``-separated keys relative to the store's root
(``flight_delay/versions/3/model.onnx``), never in paths, so that a store backed by an
fsspec URL (S3, GCS, ...) can stand in for :class:`LocalStore` in production. Only the
local filesystem is implemented today.

A store gives the registry three guarantees: a staged folder appears whole or not at all
(:meth:`ArtifactStore.stage`), a small file is replaced whole or not at all
(:meth:`ArtifactStore.replace`), and writers of one model take turns
(:meth:`ArtifactStore.lock`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict, Field

from vigie.errors import ErrorCode, VigieError

#: Prefix of folders and files being written; readers skip them, writers sweep them.
STAGING_PREFIX = ".staging-"

#: A test-only fault hook: called with a point name (``before-publish``, ``before-replace``)
#: and the path concerned, just before the step that makes a write visible.
FaultHook = Callable[[str, Path], None]

_CHUNK = 1024 * 1024
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class FileDigest(BaseModel):
    """The sha256 and size of one stored file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Staging(Protocol):
    """A folder being written; it becomes visible only when committed."""

    def add_file(self, name: str, source: Path) -> FileDigest:
        """Copy ``source`` in as ``name``; returns the digest of the bytes written."""

    def add_bytes(self, name: str, data: bytes) -> FileDigest:
        """Write ``data`` as ``name``; returns its digest."""

    def commit(self) -> None:
        """Make the folder visible under its key, read-only, all at once.

        Raises:
            VigieError: CONFLICT when the key already exists.
        """


class ArtifactStore(Protocol):
    """What the registry needs from a place to keep files."""

    def children(self, key: str) -> list[str]:
        """Names directly under ``key``, sorted, without staging leftovers; [] if absent."""

    def exists(self, key: str) -> bool:
        """Whether a file or folder exists at ``key``."""

    def read_bytes(self, key: str) -> bytes:
        """The content of the file at ``key``.

        Raises:
            VigieError: NOT_FOUND when there is no such file.
        """

    def digest(self, key: str) -> FileDigest | None:
        """sha256 and size of the file at ``key``, read now; None when it is missing."""

    def local_path(self, key: str) -> Path:
        """A local path to the file at ``key`` (a cached copy for a remote store)."""

    def stage(self, key: str) -> AbstractContextManager[Staging]:
        """A staging folder for ``key``; discarded unless committed inside the block."""

    def replace(self, key: str, data: bytes) -> None:
        """Replace the small file at ``key`` with ``data`` atomically and durably."""

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Hold the exclusive lock named ``key`` for the duration of the block."""

    def sweep(self, key: str) -> list[str]:
        """Remove staging leftovers of interrupted writers under ``key``; returns their names.

        Only safe while holding the lock that every writer under ``key`` takes.
        """


class LocalStore:
    """An :class:`ArtifactStore` on the local filesystem, rooted at ``root``.

    Args:
        root: The registry folder (``Settings.registry_dir``); created on first write.
        fault_hook: Test-only: called just before each publishing rename/replace, so a
            test can kill the process at the critical point. Never set in production.
    """

    def __init__(self, root: Path, *, fault_hook: FaultHook | None = None) -> None:
        self.root = root
        self._fault_hook = fault_hook

    def path(self, key: str) -> Path:
        """The filesystem path of ``key``.

        Raises:
            VigieError: INVALID_INPUT for a key that would leave the root.
        """
        parts = [p for p in key.split("/") if p]
        if any(p in {".", ".."} for p in parts):
            raise VigieError(ErrorCode.INVALID_INPUT, f"invalid registry key {key!r}", key=key)
        return self.root.joinpath(*parts)

    def children(self, key: str) -> list[str]:
        folder = self.path(key)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as err:
            raise VigieError(ErrorCode.NOT_FOUND, f"no file {key} in the registry") from err

    def digest(self, key: str) -> FileDigest | None:
        try:
            with self.path(key).open("rb") as source:
                return _copy_hashing(source, None)
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Path:
        return self.path(key)

    @contextmanager
    def stage(self, key: str) -> Iterator[Staging]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Staging beside its final place: the publishing rename stays in one folder.
        folder = final.parent / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        folder.mkdir()
        staging = _LocalStaging(folder, final, self._fault_hook)
        try:
            yield staging
        finally:
            if folder.exists():
                _remove_tree(folder)

    def replace(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{STAGING_PREFIX}{uuid.uuid4().hex}-{target.name}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._fault_hook is not None:
            self._fault_hook("before-replace", target)
        os.replace(temp, target)
        _fsync_dir(target.parent)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def sweep(self, key: str) -> list[str]:
        folder = self.path(key)
        if not folder.is_dir():
            return []
        removed = []
        for entry in folder.iterdir():
            if entry.name.startswith(STAGING_PREFIX):
                if entry.is_dir():
                    _remove_tree(entry)
                else:
                    entry.unlink()
                removed.append(entry.name)
        return sorted(removed)


class _LocalStaging:
    def __init__(self, folder: Path, final: Path, fault_hook: FaultHook | None) -> None:
        self._folder = folder
        self._final = final
        self._fault_hook = fault_hook

    def _target(self, name: str) -> Path:
        if "/" in name or name in {"", ".", ".."} or name.startswith("."):
            raise VigieError(ErrorCode.INVALID_INPUT, f"invalid file name {name!r}", name=name)
        return self._folder / name

    def add_file(self, name: str, source: Path) -> FileDigest:
        target = self._target(name)
        with source.open("rb") as src, target.open("xb") as dst:
            digest = _copy_hashing(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        target.chmod(_READ_ONLY_FILE)
        return digest

    def add_bytes(self, name: str, data: bytes) -> FileDigest:
        target = self._target(name)
        with target.open("xb") as dst:
            dst.write(data)
            dst.flush()
            os.fsync(dst.fileno())
        target.chmod(_READ_ONLY_FILE)
        return FileDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    def commit(self) -> None:
        _fsync_dir(self._folder)
        self._folder.chmod(_READ_ONLY_DIR)
        if self._fault_hook is not None:
            self._fault_hook("before-publish", self._final)
        try:
            # rename(2) refuses to replace a non-empty folder: a racing writer cannot win twice.
            os.rename(self._folder, self._final)
        except OSError as err:
            if err.errno in {errno.EEXIST, errno.ENOTEMPTY} or self._final.exists():
                raise VigieError(
                    ErrorCode.CONFLICT,
                    f"{self._final.name} already exists in the registry",
                    path=str(self._final),
                ) from err
            raise
        _fsync_dir(self._final.parent)


def _copy_hashing(source: BinaryIO, target: BinaryIO | None) -> FileDigest:
    hasher = hashlib.sha256()
    size = 0
    while chunk := source.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
        if target is not None:
            target.write(chunk)
    return FileDigest(sha256=hasher.hexdigest(), size=size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(folder: Path) -> None:
    """Remove a folder whose files and sub-folders may be read-only."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IRWXU)
    shutil.rmtree(folder)
