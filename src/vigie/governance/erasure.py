"""Erasure of one data subject: who it is, what is searched for, and how a record loses it.

A subject is named ``KIND:VALUE`` with its clear value (``tailnum:N14228``,
``client:<id>``). Every store keeps identifiers pseudonymised, so what erasure searches for
is the subject's pseudonym (:class:`vigie.governance.pseudonymize.Pseudonymizer`); the
clear value is searched only where the platform keeps source data as it came (the raw
landing zone, the text of source lines that were not rows). The clear value is never
written anywhere: the erasure record names the pseudonym.

The functions here are pure: :mod:`vigie.retention` reads and rewrites the stores.
"""

from __future__ import annotations

import collections
import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any

from vigie.errors import ErrorCode, VigieError
from vigie.governance.pseudonymize import Pseudonymizer


class SubjectKind(enum.StrEnum):
    """The kinds of data subject vigie can erase."""

    TAILNUM = "tailnum"
    CLIENT = "client"


#: What the value of each kind is, for messages.
KIND_VALUES = {
    SubjectKind.TAILNUM: "an aircraft's tail number as in the source data, e.g. tailnum:N14228",
    SubjectKind.CLIENT: "a client id of the prediction service as its caller presents it, "
    "e.g. client:acme-app",
}

_ACCEPTED = "; ".join(f"{kind.value} ({text})" for kind, text in KIND_VALUES.items())


@dataclass(frozen=True)
class Subject:
    """One data subject, with its clear value (never logged, never stored).

    Attributes:
        kind: What it is.
        value: Its clear value, as the source data or the caller has it.
    """

    kind: SubjectKind
    value: str

    def __repr__(self) -> str:
        return f"Subject(kind={self.kind.value!r}, value=<hidden>)"


def parse_subject(text: str) -> Subject:
    """A subject from ``KIND:VALUE``.

    Raises:
        VigieError: INVALID_INPUT naming the accepted kinds when ``text`` is not one.
    """
    kind, sep, value = text.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or not value or kind not in {k.value for k in SubjectKind}:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"subject {text!r} is not KIND:VALUE with a known kind; accepted kinds: {_ACCEPTED}",
            field="subject",
            accepted=[k.value for k in SubjectKind],
        )
    return Subject(SubjectKind(kind), value)


@dataclass(frozen=True)
class Target:
    """What erasure searches the stores for.

    Attributes:
        kind: The subject's kind.
        pseudonym: The subject's pseudonym, as every store keeps it.
        clear: The clear value, searched only in source data kept as it came (None for a
            client: no store keeps a client id in clear).
    """

    kind: SubjectKind
    pseudonym: str
    clear: str | None

    @classmethod
    def of(cls, subject: Subject, pseudonymizer: Pseudonymizer) -> Target:
        """The target of ``subject``, pseudonymised with the platform's key."""
        clear = subject.value if subject.kind is SubjectKind.TAILNUM else None
        return cls(subject.kind, pseudonymizer.pseudonymize(subject.value), clear)

    @property
    def name(self) -> str:
        """``KIND:PSEUDONYM``: how the erasure record names the subject."""
        return f"{self.kind.value}:{self.pseudonym}"

    def values(self, *, raw: bool = False) -> tuple[str, ...]:
        """The values to search for: the pseudonym, and the clear value in ``raw`` data."""
        return (self.pseudonym, self.clear) if raw and self.clear else (self.pseudonym,)


def _word(value: str) -> re.Pattern[str]:
    """``value`` as a whole word (``N1422`` does not match inside ``N14228``)."""
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])")


def redact_text(text: str, values: tuple[str, ...], replacement: str = "") -> tuple[str, int]:
    """``text`` with every whole-word occurrence of ``values`` replaced; how many."""
    count = 0
    for value in values:
        text, found = _word(value).subn(replacement, text)
        count += found
    return text, count


def redact_value(value: Any, values: tuple[str, ...]) -> tuple[Any, int]:
    """A JSON value with the subject taken out; how many occurrences were.

    A string that is one of ``values`` becomes null; a longer string loses the occurrences
    (the text of a source line keeps its other fields). Keys are left as they are.
    """
    if isinstance(value, str):
        if value in values:
            return None, 1
        return redact_text(value, values)
    if isinstance(value, dict):
        pairs = {key: redact_value(item, values) for key, item in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, sum(n for _, n in pairs.values())
    if isinstance(value, list):
        items = [redact_value(item, values) for item in value]
        return [v for v, _ in items], sum(n for _, n in items)
    return value, 0


def redact_json_text(text: str, values: tuple[str, ...]) -> tuple[str, int]:
    """A JSON document (a warehouse column) with the subject taken out; how many.

    Text that is not JSON loses the occurrences as plain text.
    """
    try:
        document = json.loads(text)
    except ValueError:
        return redact_text(text, values)
    redacted, count = redact_value(document, values)
    return (json.dumps(redacted, separators=(",", ":")) if count else text), count


def redact_line(line: bytes, values: tuple[str, ...]) -> bytes | None:
    """A log line with the subject taken out, of exactly the same length; None if the line
    does not hold it.

    Same length so that every reader's offset into the log (a byte position) stays valid:
    a string value that is the subject becomes ``null`` padded with spaces (whitespace
    JSON allows between tokens); an occurrence inside another string (the raw text of a
    quarantined entry) becomes as many ``*``. A line whose JSON would break (the subject
    as an object key) gets a string of ``*`` instead of ``null``.
    """
    if not any(v.encode() in line for v in values):
        return None
    redacted = line
    for value in values:
        quoted = json.dumps(value).encode()
        null = b"null".ljust(len(quoted)) if len(quoted) >= len(b"null") else None
        starred = b'"' + b"*" * (len(quoted) - 2) + b'"'
        candidate = redacted.replace(quoted, null or starred)
        if null is not None and _is_json(redacted) and not _is_json(candidate):
            candidate = redacted.replace(quoted, starred)
        redacted = candidate.replace(value.encode(), b"*" * len(value.encode()))
    return redacted


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


@dataclass
class ErasureReport:
    """What erasure did (or, in a dry run, would do) in every store.

    Attributes:
        target: The subject searched for.
        dry_run: Nothing was changed.
        stores: Store to what was done to how many records (``deleted``, ``redacted``,
            ``unlinked``, ``rewritten``).
        versions: Registered model versions whose training snapshot held the subject and
            was rewritten: their lineage points to a snapshot that no longer exists as it
            was (model, version, aliases, snapshot_hash, rewritten_as).
    """

    target: Target
    dry_run: bool
    stores: dict[str, collections.Counter[str]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)

    def add(self, store: str, action: str, records: int) -> None:
        """Count ``records`` of ``store`` that ``action`` was done to (zero counts kept, so
        the record shows every store was searched)."""
        self.stores.setdefault(store, collections.Counter())[action] += records

    @property
    def total(self) -> int:
        """Records changed over every store."""
        return sum(sum(counts.values()) for counts in self.stores.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, ``--json``): the pseudonym, never the clear value."""
        return {
            "subject": self.target.name,
            "dry_run": self.dry_run,
            "total": self.total,
            "stores": {store: dict(counts) for store, counts in self.stores.items()},
            "versions": self.versions,
        }
