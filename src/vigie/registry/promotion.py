"""Rules of alias moves: when a promotion is refused, and what a production change implies.

Pure functions over an :class:`AliasState`; the registry applies them under the model's
lock and writes the result atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vigie.errors import ErrorCode, VigieError
from vigie.registry.aliases import Alias, AliasChange, AliasState, ChangeAction
from vigie.registry.gates import GateReport


def check_promotion(
    model: str,
    version: str,
    alias: Alias,
    *,
    current: AliasState,
    report: GateReport | None,
) -> None:
    """Refuse a promotion that is redundant, ungated for production, or failed its gates.

    Raises:
        VigieError: CONFLICT when ``alias`` already points at ``version``;
            PROMOTION_REJECTED when production gets no report, the report is about another
            version, or any gate failed (the message names each failed gate).
    """
    if current.aliases.get(alias) == version:
        raise VigieError(
            ErrorCode.CONFLICT,
            f"{model} version {version} is already {alias.value}: nothing to promote",
            model=model,
            version=version,
            alias=alias.value,
        )
    if report is None:
        if alias == Alias.PRODUCTION:
            raise VigieError(
                ErrorCode.PROMOTION_REJECTED,
                f"promoting {model} version {version} to production needs a gate report",
                model=model,
                version=version,
            )
        return
    _check_report(model, version, report)


def _check_report(model: str, version: str, report: GateReport) -> None:
    if report.model not in {None, model} or report.version not in {None, version}:
        raise VigieError(
            ErrorCode.PROMOTION_REJECTED,
            f"the gate report is about {report.model} version {report.version}, "
            f"not {model} version {version}",
            model=model,
            version=version,
        )
    if not report.passed:
        failed = report.failed
        raise VigieError(
            ErrorCode.PROMOTION_REJECTED,
            f"{model} version {version} failed {len(failed)} gate(s): "
            + "; ".join(r.message for r in failed),
            model=model,
            version=version,
            failed_gates=[r.gate for r in failed],
        )


def move_alias(
    state: AliasState,
    alias: Alias,
    version: str,
    *,
    action: ChangeAction,
    actor: str,
    reason: str,
) -> AliasChange:
    """Point ``alias`` at ``version``; the production version it replaces becomes archived.

    Returns:
        The move of ``alias`` (the archiving, if any, is its own history entry).
    """
    at = datetime.now(UTC)
    change = state.move(alias, version, action=action, actor=actor, reason=reason, at=at)
    replaced = change.from_version
    if (
        alias == Alias.PRODUCTION
        and replaced is not None
        and replaced != version
        and state.aliases.get(Alias.ARCHIVED) != replaced
    ):
        state.move(
            Alias.ARCHIVED,
            replaced,
            action="archive",
            actor=actor,
            reason=f"replaced in production by {version} ({action}): {reason}",
            at=at,
        )
    return change


def refusal(err: VigieError, reason: str) -> dict[str, Any]:
    """Audit-log details of a refused alias move."""
    return {"code": err.code.value, "message": err.message, "reason": reason}
