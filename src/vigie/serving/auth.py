"""API keys with roles: creation, revocation, and the per-request check.

A key is ``vk_<16 hex id>_<43 url-safe characters>``: 256 random bits after a public
id. Only ``sha256(key)`` is stored, in ``Settings.api_keys_file`` (JSON, mode 0600).
A slow password hash (scrypt, argon2) exists to make guessing low-entropy passwords
expensive; a 256-bit random key cannot be guessed from its SHA-256 whatever the hash
speed, and a slow hash would cost milliseconds on every request. The id inside the key
makes the lookup one dict access, then one constant-time comparison of digests.

Roles: ``predict`` (inference) and ``admin`` (which implies ``predict``). Failed
authentications and refusals are audited, never with the token (only an 8-hex prefix
of its SHA-256), rate-limited to one entry per (reason, protocol) per second with the
number of suppressed ones. Creating and revoking keys are audited too.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.access import GRANTS, PERMISSIONS, permits
from vigie.governance.audit import AuditLog, Outcome

__all__ = [
    "ROLES",
    "ApiKeyRecord",
    "Authenticator",
    "create_key",
    "ensure_local_keys",
    "list_keys",
    "parse_bearer",
    "revoke_key",
]

_log = logging.getLogger(__name__)

#: Each role a key may carry and the permissions it grants (vigie.governance.access).
ROLES: dict[str, frozenset[str]] = GRANTS

_PREFIX = "vk_"
_ID_HEX = 16
_TOKEN_LENGTH = len(_PREFIX) + _ID_HEX + 1 + 43
_FILE_VERSION = 1


class ApiKeyRecord(BaseModel):
    """One stored key: its hash and metadata, never the key itself.

    Attributes:
        id: Public id (``key_<16 hex>``), also inside the key; the caller id.
        sha256: Hex SHA-256 of the whole key.
        role: One of :data:`ROLES` (the policy's roles, ``predict``, ``admin``).
        created_at: When it was created (UTC).
        created_by: Who created it.
        expires_at: When it stops working; None: never.
        revoked_at: When it was revoked; None: not revoked.
        revoked_by: Who revoked it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    sha256: str
    role: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at ``now`` (a POSIX timestamp)."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at.timestamp()


@dataclass(frozen=True)
class _KeyFile:
    """The key file as last read: what identifies that version of it, and its keys."""

    signature: tuple[int, int, int] | None
    keys: dict[str, ApiKeyRecord]
    #: Tokens already matched against their record's hash in this version of the file (at
    #: most one per key: only a key's own token matches), so a caller pays for the hash
    #: once per key-file version, not once per request.
    verified: dict[str, ApiKeyRecord] = field(default_factory=dict)


def _signature(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, inode, size): changes on every rewrite (rewrites replace the file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _read_keys(path: Path) -> _KeyFile:
    """Read the key file (a missing file holds no key).

    Raises:
        VigieError: CONFIGURATION when the file is not a valid key file.
    """
    signature = _signature(path)
    if signature is None:
        return _KeyFile(None, {})
    try:
        raw = json.loads(path.read_bytes())
        records = [ApiKeyRecord.model_validate(r) for r in raw["keys"]]
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as err:
        raise VigieError(
            ErrorCode.CONFIGURATION, f"the API key file {path} is unreadable: {err}", path=str(path)
        ) from err
    if os.stat(path).st_mode & 0o077:
        _log.warning("the API key file %s is readable by others; it should be mode 0600", path)
    return _KeyFile(signature, {r.id: r for r in records})


def _write_keys(path: Path, records: dict[str, ApiKeyRecord]) -> None:
    """Replace the key file atomically (new file, mode 0600, fsync, rename)."""
    body = {"version": _FILE_VERSION, "keys": [r.model_dump(mode="json") for r in records.values()]}
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(body, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def _keys_file_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file across processes."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def parse_bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None.

    The scheme is case-insensitive; anything else (no header, another scheme, an empty
    credential) gives None.
    """
    if not header:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def _key_id(token: str) -> str | None:
    """The key id a well-formed token names (``key_<hex>``), else None."""
    if len(token) != _TOKEN_LENGTH or not token.startswith(_PREFIX):
        return None
    hex_id, sep = token[len(_PREFIX) : len(_PREFIX) + _ID_HEX], token[len(_PREFIX) + _ID_HEX]
    if sep != "_" or any(c not in "0123456789abcdef" for c in hex_id):
        return None
    return f"key_{hex_id}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _new_token() -> tuple[str, str]:
    hex_id = secrets.token_hex(_ID_HEX // 2)
    return f"key_{hex_id}", f"{_PREFIX}{hex_id}_{secrets.token_urlsafe(32)}"


class _FailureAuditor:
    """Writes refused authentications to the audit log, at most one per (reason, protocol)
    per interval, carrying how many were suppressed since the previous entry."""

    def __init__(self, audit: AuditLog, interval_s: float) -> None:
        self._audit = audit
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def record(
        self, *, reason: str, protocol: str, actor: str, role: str, token: str | None
    ) -> None:
        slot = (reason, protocol)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(slot)
            if last is not None and now - last < self._interval:
                self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
                return
            self._last[slot] = now
            suppressed = self._suppressed.pop(slot, 0)
        details = {"reason": reason, "role": role, "suppressed": suppressed}
        inputs = {"token_sha256_prefix": _digest(token)[:8] if token else None}
        try:
            self._audit.append(
                actor, "auth.check", protocol, Outcome.REFUSED, inputs=inputs, details=details
            )
        except (VigieError, OSError) as err:
            # A broken audit log must not turn a 401 into a 500; say it loudly instead.
            _log.error("could not audit a refused authentication: %s", err)


class Authenticator:
    """Checks API keys against the hashed key file, from an in-memory cache.

    The key file is re-read only when its modification time, inode or size changed,
    and that is looked at no more than once per ``refresh_s`` (so a revocation takes
    effect within ``refresh_s`` in every worker).

    Args:
        settings: The settings (``api_keys_file``, ``audit_log_path``).
        audit: Audit log for refused authentications; default: the settings' one.
        refresh_s: Longest time between two looks at the key file (0: every call).
        audit_interval_s: Least time between two audit entries for one (reason, protocol).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        audit: AuditLog | None = None,
        refresh_s: float = 1.0,
        audit_interval_s: float = 1.0,
    ) -> None:
        self._path = settings.api_keys_file
        self._refresh_s = refresh_s
        self._auditor = _FailureAuditor(
            audit if audit is not None else AuditLog(settings.audit_log_path), audit_interval_s
        )
        self._state = _KeyFile(None, {})
        self._next_look = 0.0
        self._reload_lock = threading.Lock()

    @property
    def key_count(self) -> int:
        """Keys currently usable (not revoked, not expired), after a look at the file."""
        self._refresh(force=True)
        now = time.time()
        return sum(1 for r in self._state.keys.values() if r.usable(now))

    def check(self, token: str | None, role: str, protocol: str) -> str:
        """Authenticate a key and authorise a role.

        Args:
            token: The presented key (None when the request carried none).
            role: The permission the operation needs (``predict``, ``monitor.read``...:
                :data:`vigie.governance.access.PERMISSIONS`).
            protocol: Where the request came from (a label for the audit log).

        Returns:
            The caller id: the key's id (``key_<hex>``), never the key.

        Raises:
            VigieError: UNAUTHENTICATED for a missing, unknown, revoked or expired key;
                FORBIDDEN for a key without the role; INTERNAL for an unknown role.
        """
        if role not in PERMISSIONS:
            raise VigieError(ErrorCode.INTERNAL, f"unknown permission {role!r}", role=role)
        self._refresh()
        state = self._state
        record = state.verified.get(token) if token else None
        if record is None:
            key_id = _key_id(token) if token else None
            record = state.keys.get(key_id) if key_id else None
            if record is None or not hmac.compare_digest(record.sha256, _digest(token or "")):
                reason = "missing" if not token else "unknown_key"
                self._refuse(reason, protocol, role, token, actor="anonymous")
            state.verified[token or ""] = record
        if not record.usable(time.time()):
            reason = "revoked" if record.revoked_at else "expired"
            self._refuse(reason, protocol, role, token, actor=record.id)
        if not permits(record.role, role):
            self._auditor.record(
                reason="forbidden", protocol=protocol, actor=record.id, role=role, token=token
            )
            raise VigieError(
                ErrorCode.FORBIDDEN,
                f"API key {record.id} has role {record.role!r}, which does not grant {role!r}",
                key_id=record.id,
                role=role,
            )
        return record.id

    def _refuse(
        self, reason: str, protocol: str, role: str, token: str | None, *, actor: str
    ) -> NoReturn:
        self._auditor.record(reason=reason, protocol=protocol, actor=actor, role=role, token=token)
        message = {
            "missing": "an API key is required: send 'Authorization: Bearer <key>'",
            "unknown_key": "the API key is not valid",
            "revoked": "the API key has been revoked",
            "expired": "the API key has expired",
        }[reason]
        raise VigieError(ErrorCode.UNAUTHENTICATED, message, reason=reason)

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_look:
            return
        with self._reload_lock:
            self._next_look = now + self._refresh_s
            signature = _signature(self._path)
            if signature != self._state.signature:
                self._state = _read_keys(self._path)


def create_key(
    settings: Settings, role: str, *, actor: str, expires_at: datetime | None = None
) -> tuple[str, str]:
    """Create an API key; its plaintext is returned once and never stored.

    Args:
        settings: The settings (``api_keys_file``, ``audit_log_path``).
        role: One of :data:`ROLES` (the policy's roles, ``predict``, ``admin``).
        actor: Who creates it (audited).
        expires_at: When it stops working (aware datetime); None: never.

    Returns:
        ``(key_id, key)``.

    Raises:
        VigieError: INVALID_INPUT for an unknown role or a naive expiry.
    """
    if role not in ROLES:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"role {role!r} is not one of {', '.join(ROLES)}",
            field="role",
        )
    if expires_at is not None and expires_at.tzinfo is None:
        raise VigieError(
            ErrorCode.INVALID_INPUT, "expires_at must carry a time zone", field="expires_at"
        )
    record, token = _new_record(role, actor=actor, expires_at=expires_at)
    key_id = record.id
    with _keys_file_lock(settings.api_keys_file):
        records = _read_keys(settings.api_keys_file).keys
        _write_keys(settings.api_keys_file, records | {key_id: record})
    AuditLog(settings.audit_log_path).append(
        actor,
        "apikey.create",
        key_id,
        Outcome.SUCCESS,
        details={"role": role, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return key_id, token


def revoke_key(settings: Settings, key_id: str, *, actor: str) -> None:
    """Revoke a key: it stops working in every worker within their refresh interval.

    Revoking a revoked key changes nothing (and is audited as such).

    Raises:
        VigieError: NOT_FOUND when no key has that id.
    """
    with _keys_file_lock(settings.api_keys_file):
        records = _read_keys(settings.api_keys_file).keys
        record = records.get(key_id)
        if record is None:
            AuditLog(settings.audit_log_path).append(
                actor, "apikey.revoke", key_id, Outcome.FAILURE, details={"reason": "not_found"}
            )
            raise VigieError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}", key_id=key_id)
        already = record.revoked_at is not None
        if not already:
            records[key_id] = record.model_copy(
                update={"revoked_at": datetime.now(UTC), "revoked_by": actor}
            )
            _write_keys(settings.api_keys_file, records)
    AuditLog(settings.audit_log_path).append(
        actor, "apikey.revoke", key_id, Outcome.SUCCESS, details={"already_revoked": already}
    )


def list_keys(settings: Settings) -> list[ApiKeyRecord]:
    """Every key record (hashes included, never plaintext), oldest first."""
    records = _read_keys(settings.api_keys_file).keys.values()
    return sorted(records, key=lambda r: r.created_at)


def ensure_local_keys(settings: Settings) -> Path | None:
    """In local mode, create a ``predict`` and an ``admin`` key on first start.

    Their plaintext is written once to ``<home>/secrets/api_keys.local`` (mode 0600, a
    shell-sourceable file) so the service can say where to find them. Safe when several
    workers start at once: the key file's lock makes one of them do it.

    Returns:
        The plaintext file's path when keys were created; None when keys already
        existed or outside local mode (production keys come from :func:`create_key`).
    """
    if settings.mode != "local":
        return None
    path = settings.secrets_dir / "api_keys.local"
    with _keys_file_lock(settings.api_keys_file):
        if _read_keys(settings.api_keys_file).keys:
            return None
        created = {r: _new_record(r, actor=settings.actor) for r in ("predict", "admin")}
        # Plaintext first: a crash in between leaves no key that nobody can read.
        _write_plaintext(path, {role: (rec.id, tok) for role, (rec, tok) in created.items()})
        _write_keys(settings.api_keys_file, {rec.id: rec for rec, _ in created.values()})
    for role, (record, _) in created.items():
        AuditLog(settings.audit_log_path).append(
            settings.actor,
            "apikey.create",
            record.id,
            Outcome.SUCCESS,
            details={"role": role, "local": True, "plaintext_file": str(path)},
        )
    return path


def _new_record(
    role: str, *, actor: str, expires_at: datetime | None = None
) -> tuple[ApiKeyRecord, str]:
    key_id, token = _new_token()
    record = ApiKeyRecord(
        id=key_id,
        sha256=_digest(token),
        role=role,
        created_at=datetime.now(UTC),
        created_by=actor,
        expires_at=expires_at,
    )
    return record, token


def _write_plaintext(path: Path, created: dict[str, tuple[str, str]]) -> None:
    lines = [
        "# vigie local API keys, generated once; the service keeps only their SHA-256.",
        f"# created {datetime.now(UTC).isoformat(timespec='seconds')}",
    ]
    for role, (key_id, token) in created.items():
        lines += [f"# {role}: {key_id}", f"VIGIE_{role.upper()}_KEY={token}"]
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
