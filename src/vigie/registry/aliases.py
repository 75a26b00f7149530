"""Aliases of a model's versions and their history, kept in one ``aliases.json`` per model.

An alias (``candidate``, ``staging``, ``production``, ``archived``) points at one version;
several aliases may point at the same one. Every move is appended to the history, which is
never rewritten, so who moved what, when and why stays readable, and a rollback knows
where production was before.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vigie.errors import ErrorCode, VigieError

#: File name of a model's aliases, beside its ``versions/`` folder.
ALIASES_FILE = "aliases.json"


class Alias(enum.StrEnum):
    """The aliases a version can hold (ARCHITECTURE.md's stable names)."""

    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


#: How an alias came to move.
ChangeAction = Literal["register", "promote", "rollback", "archive"]


class AliasChange(BaseModel):
    """One move of one alias, as kept in the history.

    Attributes:
        model: The model.
        alias: The alias moved.
        from_version: The version it pointed at before; None if it was unset.
        to_version: The version it points at now.
        action: ``register`` (new candidate), ``promote``, ``rollback``, or ``archive``
            (the production version replaced by a promotion or a rollback).
        at: When (UTC).
        actor: Who.
        reason: Why, as given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    alias: Alias
    from_version: str | None
    to_version: str
    action: ChangeAction
    at: datetime
    actor: str
    reason: str


class AliasState(BaseModel):
    """The content of ``aliases.json``: where each alias points, and every move so far."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    model: str
    aliases: dict[Alias, str] = Field(default_factory=dict)
    history: list[AliasChange] = Field(default_factory=list)

    def move(
        self,
        alias: Alias,
        version: str,
        *,
        action: ChangeAction,
        actor: str,
        reason: str,
        at: datetime,
    ) -> AliasChange:
        """Point ``alias`` at ``version`` and record the move; returns the change."""
        change = AliasChange(
            model=self.model,
            alias=alias,
            from_version=self.aliases.get(alias),
            to_version=version,
            action=action,
            at=at,
            actor=actor,
            reason=reason,
        )
        self.aliases[alias] = version
        self.history.append(change)
        return change

    def production_stack(self) -> list[str]:
        """Production versions in force, oldest first: a rollback returns to the one before
        the last. Promotions push; rollbacks pop, so two rollbacks go back two releases."""
        stack: list[str] = []
        for change in self.history:
            if change.alias != Alias.PRODUCTION:
                continue
            if change.action == "rollback" and stack:
                stack.pop()
            else:
                stack.append(change.to_version)
        return stack

    def to_json(self) -> bytes:
        """The state as written to ``aliases.json``."""
        return (self.model_dump_json(indent=2) + "\n").encode()


def parse_aliases(model: str, data: bytes | None) -> AliasState:
    """Read ``aliases.json`` (None: the model has no aliases yet).

    Raises:
        VigieError: ARTIFACT_CORRUPT when the file is not a valid alias state of ``model``.
    """
    if data is None:
        return AliasState(model=model)
    try:
        state = AliasState.model_validate_json(data)
    except ValidationError as err:
        raise VigieError(
            ErrorCode.ARTIFACT_CORRUPT,
            f"{ALIASES_FILE} of {model} is not valid: {err.errors()[0]['msg']}",
            model=model,
            file=ALIASES_FILE,
        ) from err
    if state.model != model:
        raise VigieError(
            ErrorCode.ARTIFACT_CORRUPT,
            f"{ALIASES_FILE} of {model} belongs to {state.model}",
            model=model,
            file=ALIASES_FILE,
        )
    return state


def parse_alias(name: str) -> Alias:
    """The alias called ``name``.

    Raises:
        VigieError: INVALID_INPUT listing the aliases that exist.
    """
    try:
        return Alias(name)
    except ValueError as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"unknown alias {name!r}: expected one of {', '.join(a.value for a in Alias)}",
            field="alias",
        ) from err
