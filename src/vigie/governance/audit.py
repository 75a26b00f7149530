"""Append-only, hash-chained audit log (JSON lines).

Each line is one :class:`AuditEntry`. Its ``hash`` is the SHA-256 of the canonical JSON
(sorted keys, no spaces, ASCII) of all its other fields, ``prev_hash`` included, so each
entry seals the whole history before it. Editing, removing, reordering or garbling an
entry breaks the chain and :func:`verify` names the first entry concerned.

Removing entries from the end leaves a valid shorter chain: only an anchor kept
elsewhere (:meth:`AuditLog.head`, checked with ``verify(path, expected_head=...)``)
reveals that.

Writers on one machine serialise on an exclusive ``flock`` of the file, read only its
last line to chain to, append and fsync before releasing the lock.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigie.errors import ErrorCode, VigieError

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

_BLOCK = 64 * 1024


class Outcome(enum.StrEnum):
    """How the audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    PARTIAL = "partial"
    STARTED = "started"


class AuditEntry(BaseModel):
    """One line of the audit log.

    Attributes:
        seq: Position in the log, from 0, without gaps.
        ts: When it was written (UTC, ISO-8601).
        actor: Who acted (a person or a service account).
        action: What was done, dotted (``pipeline.run``, ``model.promote``).
        target: What it was done to (a table, a model version, a file).
        outcome: How it ended (see :class:`Outcome`).
        inputs: What it was done with, e.g. content hashes of data and policy.
        details: Anything else worth keeping (counts, reasons).
        prev_hash: ``hash`` of the previous entry; :data:`GENESIS_HASH` for the first.
        hash: SHA-256 of the canonical JSON of all the other fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    seq: int = Field(ge=0)
    ts: str
    actor: str
    action: str
    target: str
    outcome: str
    inputs: dict[str, Any]
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """The hash the entry's content calls for (equal to ``hash`` unless tampered)."""
        return _hash_fields(self.model_dump(exclude={"hash"}))


@dataclass(frozen=True)
class AuditVerification:
    """The result of :func:`verify`.

    Attributes:
        ok: True when the whole chain (and the anchor, if given) checks out.
        entries: Entries read and found sound before the first problem.
        problem: What is wrong, naming the line and the entry; None when ok.
        bad_seq: The entry concerned (for a removal, the missing seq); None if unknown.
        bad_line: The 1-based line where the problem was found; None if ok or at the end.
        head: ``(seq, hash)`` of the last sound entry, ``(-1, GENESIS_HASH)`` if none.
    """

    ok: bool
    entries: int
    problem: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    head: tuple[int, str] = (-1, GENESIS_HASH)

    def raise_for_problem(self) -> None:
        """Raise when the log is not sound.

        Raises:
            VigieError: AUDIT_TAMPERED with the problem.
        """
        if not self.ok:
            raise VigieError(
                ErrorCode.AUDIT_TAMPERED,
                f"the audit log failed verification: {self.problem}",
                seq=self.bad_seq,
                line=self.bad_line,
            )


class AuditLog:
    """The audit log file at ``path`` (created with its folder on first append).

    Args:
        path: The JSON-lines file, usually ``Settings.audit_log_path``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry, chained to the current last one; safe across processes.

        Args:
            actor: Who acted.
            action: What was done, e.g. ``pipeline.run``.
            target: What it was done to.
            outcome: One of :class:`Outcome`'s values.
            inputs: JSON-ready mapping of what it was done with (content hashes...).
            details: JSON-ready mapping of anything else worth keeping.

        Returns:
            The entry as written.

        Raises:
            VigieError: INVALID_INPUT for a bad outcome or non-JSON values;
                AUDIT_TAMPERED when the current last line is incomplete or edited.
        """
        fields = _new_fields(actor, action, target, outcome, inputs=inputs, details=details)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, fcntl.LOCK_EX, create=True) as fd:
            last = _last_entry(fd, self.path)
            fields["seq"] = last.seq + 1 if last else 0
            fields["prev_hash"] = last.hash if last else GENESIS_HASH
            entry = AuditEntry(**fields, hash=_hash_fields(fields))
            _write_all(fd, (_canonical(entry.model_dump()) + "\n").encode("ascii"))
            os.fsync(fd)
        return entry

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry, to keep elsewhere as an anchor.

        Returns ``(-1, GENESIS_HASH)`` for a missing or empty log.

        Raises:
            VigieError: AUDIT_TAMPERED when the last line is incomplete or edited.
        """
        if not self.path.exists():
            return (-1, GENESIS_HASH)
        with _locked(self.path, fcntl.LOCK_SH, create=False) as fd:
            last = _last_entry(fd, self.path)
        return (last.seq, last.hash) if last else (-1, GENESIS_HASH)


def verify(path: Path, expected_head: tuple[int, str] | None = None) -> AuditVerification:
    """Check the whole chain of an audit log, stopping at the first problem.

    Args:
        path: The audit log file.
        expected_head: An anchor from :meth:`AuditLog.head` kept elsewhere; when given,
            the entry with that seq must exist and have that hash, which reveals
            entries removed from the end.

    Returns:
        The verification; ``ok`` is False with the problem named when it fails.

    Raises:
        VigieError: NOT_FOUND when the file does not exist.
    """
    if not path.is_file():
        raise VigieError(ErrorCode.NOT_FOUND, f"no audit log at {path}", path=str(path))
    checker = _ChainChecker(expected_head[0] if expected_head is not None else None)
    with _locked(path, fcntl.LOCK_SH, create=False) as fd, os.fdopen(fd, "rb", closefd=False) as f:
        lines = enumerate(f, start=1)
        for line_no, raw in lines:
            problem = checker.check(line_no, raw)
            if problem is not None:
                if problem.reorder_seq is not None:
                    problem = _diagnose_gap(problem, lines)
                return problem.result(checker)
    if expected_head is not None:
        return checker.check_anchor(expected_head)
    return checker.result()


def read_entries(path: Path) -> list[AuditEntry]:
    """Every entry of the log that parses, in file order; a missing log has none. Whether
    the chain holds is :func:`verify`'s to say: a line that does not parse is passed over."""
    if not path.is_file():
        return []
    entries = []
    with path.open("rb") as handle:
        for line in handle:
            try:
                entries.append(AuditEntry.model_validate_json(line))
            except ValidationError:
                continue
    return entries


@dataclass(frozen=True)
class _Problem:
    message: str
    bad_seq: int | None
    bad_line: int
    reorder_seq: int | None = None  # a seq gap: seq still to look for further down

    def result(self, checker: _ChainChecker) -> AuditVerification:
        return AuditVerification(
            ok=False,
            entries=checker.entries,
            problem=self.message,
            bad_seq=self.bad_seq,
            bad_line=self.bad_line,
            head=checker.head,
        )


class _ChainChecker:
    """Walks the log line by line, keeping what the next entry must chain to."""

    def __init__(self, anchor_seq: int | None) -> None:
        self.entries = 0
        self.head: tuple[int, str] = (-1, GENESIS_HASH)
        self.anchor_seq = anchor_seq
        self.anchored_hash: str | None = None

    def check(self, line_no: int, raw: bytes) -> _Problem | None:
        entry = _parse_line(line_no, raw, expected_seq=self.head[0] + 1)
        if isinstance(entry, _Problem):
            return entry
        where = f"entry seq={entry.seq} (line {line_no})"
        if entry.computed_hash() != entry.hash:
            return _Problem(
                f"{where} was edited: its hash does not match its content", entry.seq, line_no
            )
        expected = self.head[0] + 1
        if entry.seq > expected:
            return _Problem(
                f"entry seq={expected} is missing: line {line_no} holds seq={entry.seq} where "
                f"seq={expected} was expected (an entry was removed)",
                expected,
                line_no,
                reorder_seq=expected,
            )
        if entry.seq < expected:
            return _Problem(
                f"{where} is out of order or duplicated: seq={expected} was expected",
                entry.seq,
                line_no,
            )
        if entry.prev_hash != self.head[1]:
            return _Problem(
                f"{where} does not chain to the entry before it: its prev_hash does not match "
                "(an entry before it was edited, replaced or removed)",
                entry.seq,
                line_no,
            )
        self.entries += 1
        self.head = (entry.seq, entry.hash)
        if entry.seq == self.anchor_seq:
            self.anchored_hash = entry.hash
        return None

    def check_anchor(self, expected_head: tuple[int, str]) -> AuditVerification:
        seq, digest = expected_head
        if seq < 0:
            return self.result()
        found = self.anchored_hash
        if found is None:
            problem = (
                f"the log ends at seq={self.head[0]} but the anchored head is seq={seq}: "
                "entries were removed from the end"
            )
        elif found != digest:
            problem = f"entry seq={seq} does not match the anchored head: its hash differs"
        else:
            return self.result()
        return AuditVerification(False, self.entries, problem, seq, None, self.head)

    def result(self) -> AuditVerification:
        return AuditVerification(ok=True, entries=self.entries, head=self.head)


def _parse_line(line_no: int, raw: bytes, expected_seq: int) -> AuditEntry | _Problem:
    where = f"line {line_no} (where seq={expected_seq} was expected)"
    if not raw.endswith(b"\n"):
        return _Problem(f"{where} is incomplete: it has no end of line (cut short)", None, line_no)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _Problem(f"{where} is not valid JSON: it is truncated or garbled", None, line_no)
    try:
        return AuditEntry.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "entry"
        seq = data.get("seq") if isinstance(data, dict) else None
        return _Problem(
            f"{where} is not an audit entry: {field}: {first['msg']}",
            seq if isinstance(seq, int) else None,
            line_no,
        )


def _diagnose_gap(problem: _Problem, rest: Iterator[tuple[int, bytes]]) -> _Problem:
    """Tell a removal from a reordering: is the missing seq further down the file?"""
    for line_no, raw in rest:
        try:
            seq = json.loads(raw).get("seq")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if seq == problem.reorder_seq:
            return _Problem(
                f"entries are out of order: line {problem.bad_line} holds a later entry "
                f"where seq={seq} was expected, and seq={seq} is at line {line_no}",
                seq,
                problem.bad_line,
            )
    return problem


def _new_fields(
    actor: str,
    action: str,
    target: str,
    outcome: str,
    *,
    inputs: Mapping[str, Any] | None,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if outcome not in {o.value for o in Outcome}:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"audit outcome {outcome!r} is not one of {', '.join(o.value for o in Outcome)}",
            field="outcome",
        )
    try:
        # The round trip fixes the values exactly as they will be read back and hashed.
        payload: dict[str, Any] = json.loads(
            _canonical({"inputs": dict(inputs or {}), "details": dict(details or {})})
        )
    except (TypeError, ValueError) as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT, f"audit inputs and details must be JSON values: {err}"
        ) from err
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    return {
        "ts": ts,
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": str(outcome),
    } | payload


def _canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _hash_fields(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(fields).encode("ascii")).hexdigest()


@contextmanager
def _locked(path: Path, operation: int, *, create: bool) -> Iterator[int]:
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT if create else os.O_RDONLY
    fd = os.open(path, flags, 0o640)
    try:
        fcntl.flock(fd, operation)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _last_entry(fd: int, path: Path) -> AuditEntry | None:
    """The last entry, read backwards from the end of the file; None for an empty log."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise _tail_error(path, "its last line is incomplete (an interrupted write?)")
    chunks: list[bytes] = []
    end = size - 1
    while end > 0:
        start = max(0, end - _BLOCK)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        chunks.append(block[newline + 1 :])
        if newline >= 0:
            break
        end = start
    try:
        entry = AuditEntry.model_validate_json(b"".join(reversed(chunks)))
    except ValidationError as err:
        raise _tail_error(path, "its last line is not a valid entry") from err
    if entry.computed_hash() != entry.hash:
        raise _tail_error(path, f"its last entry seq={entry.seq} was edited")
    return entry


def _tail_error(path: Path, what: str) -> VigieError:
    return VigieError(
        ErrorCode.AUDIT_TAMPERED,
        f"refusing to append to the audit log {path}: {what}; run `vigie audit verify`",
        path=str(path),
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
