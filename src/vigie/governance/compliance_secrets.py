"""Evidence of the security of processing: the API key file and the secrets in use.

The key file is read as the service stores it (``{"version": 1, "keys": [...]}``, one
record per key with its ``sha256`` and never the key itself; see docs/security.md). A
string shaped like a key anywhere in the file, a record field that the format does not
have, or a digest that is not a SHA-256 is evidence of a secret stored in clear.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from vigie.config import MIN_KEY_LENGTH, PLACEHOLDER_SECRETS, Settings
from vigie.governance.access import GRANTS

#: What a presented API key looks like (``vk_<16 hex id>_<43 url-safe characters>``).
KEY_SHAPE = re.compile(r"vk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
#: The fields of a stored key record.
RECORD_FIELDS = frozenset(
    {"id", "sha256", "role", "created_at", "created_by", "expires_at", "revoked_at", "revoked_by"}
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyFileFacts:
    """What the API key file holds.

    Attributes:
        path: The file, relative to home.
        present: Whether it exists.
        keys: How many key records it holds.
        roles: The role of each record.
        problems: Each way it fails to keep keys hashed and private.
    """

    path: str
    present: bool
    keys: int = 0
    roles: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretFacts:
    """The secrets in use: each check made, passed or not.

    Attributes:
        mode: ``local`` or ``production``.
        checks: ``(what, passed, detail)`` for each check.
    """

    mode: str
    checks: tuple[tuple[str, bool, str], ...]

    @property
    def problems(self) -> list[str]:
        """The checks that failed, with their detail."""
        return [f"{what}: {detail}" for what, passed, detail in self.checks if not passed]


def read_key_file(path: Path, home: Path) -> KeyFileFacts:
    """Read the API key file and name every sign of a key kept in clear or exposed."""
    where = _relative(path, home)
    if not path.is_file():
        return KeyFileFacts(where, False)
    try:
        text = path.read_text(encoding="utf-8")
        records = json.loads(text)["keys"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return KeyFileFacts(where, True, problems=(f"the file is unreadable: {err}",))
    problems = []
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(f"mode {stat.S_IMODE(path.stat().st_mode):o}: others may read it")
    shaped = len(KEY_SHAPE.findall(text))
    if shaped:
        problems.append(f"{shaped} string(s) shaped like an API key are stored in clear")
    roles = []
    for index, record in enumerate(records if isinstance(records, list) else []):
        problems.extend(_record_problems(index, record))
        roles.append(str(record.get("role", "")) if isinstance(record, dict) else "")
    problems.extend(
        f"role {role!r} is not a defined role" for role in sorted(set(roles)) if role not in GRANTS
    )
    return KeyFileFacts(where, True, len(roles), tuple(roles), tuple(problems))


def _record_problems(index: int, record: object) -> list[str]:
    if not isinstance(record, dict):
        return [f"record {index} is not an object"]
    name = record.get("id", f"#{index}")
    problems = [
        f"record {name} has a field {extra!r} that the key format does not have"
        for extra in sorted(set(record) - RECORD_FIELDS)
    ]
    if not _SHA256.match(str(record.get("sha256", ""))):
        problems.append(f"record {name} holds no SHA-256 digest of its key")
    return problems


def secret_facts(settings: Settings) -> SecretFacts:
    """Check the secrets in use: no placeholder in production, private files locally."""
    checks = [_url_password(name, url) for name, url in _urls(settings)]
    if settings.mode == "production":
        key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else ""
        weak = key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_KEY_LENGTH
        detail = "a placeholder or shorter than the minimum" if weak else "set, not a placeholder"
        checks.insert(0, ("VIGIE_PSEUDONYM_KEY", not weak, detail))
    else:
        checks.insert(0, _local_key(settings.secrets_dir / "pseudonym.key"))
    return SecretFacts(settings.mode, tuple(checks))


def _urls(settings: Settings) -> list[tuple[str, str]]:
    named = [
        ("VIGIE_WAREHOUSE_URL", settings.warehouse_url),
        ("VIGIE_STREAM_URL", settings.stream_url),
        ("VIGIE_FEATURES_URL", settings.features_url),
    ]
    return [(name, url) for name, url in named if url]


def _url_password(name: str, url: str) -> tuple[str, bool, str]:
    try:
        password = urlparse(url).password
    except ValueError:
        return (name, False, "the URL cannot be parsed")
    if password is None:
        return (name, True, "no password in the URL")
    if password.lower() in PLACEHOLDER_SECRETS:
        return (name, False, "its password is a placeholder")
    return (name, True, "its password is not a placeholder")


def _local_key(path: Path) -> tuple[str, bool, str]:
    what = "local pseudonymisation key"
    if not path.is_file():
        return (what, True, "not generated yet (it is created, mode 0600, on first use)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (what, False, f"{path.name} has mode {mode:o}: others may read it")
    if len(path.read_bytes().strip()) < MIN_KEY_LENGTH:
        return (what, False, f"{path.name} is shorter than {MIN_KEY_LENGTH} characters")
    return (what, True, f"{path.name}: generated, mode {mode:o}")


def _relative(path: Path, home: Path) -> str:
    try:
        return str(path.resolve().relative_to(home.resolve()))
    except ValueError:
        return str(path)
