"""Which rows a retraining reads: the training window and the evaluation window.

Both are computed from ``as_of`` (the last day of labelled data the run may use,
inclusive) and the spec's window policy; pure functions, no warehouse.

- Evaluation window: the last ``evaluation_days`` days up to ``as_of`` (the run's option,
  else the spec's ``window.evaluation_days``), or the last month when neither says
  (``as_of`` = March 31 gives March 1 to March 31). The challenger never trains on it, so it
  is an honest forward test, and the champion is scored on the very same rows.
- Training window, ``sliding``: the ``months`` months just before the evaluation window
  (``months`` = 2, March as evaluation: January 1 to February 28/29).
- Training window, ``expanding``: everything labelled before the evaluation window.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from vigie.errors import ErrorCode, VigieError
from vigie.training.spec import Window


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier, clamped to that month's last day."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


@dataclass(frozen=True)
class RetrainWindows:
    """The windows of one retraining run (all bounds inclusive).

    Attributes:
        as_of: Last day of labelled data the run may read.
        training: First and last day of the challenger's training snapshot.
        evaluation: First and last day both challenger and champion are scored on.
        policy: ``sliding`` or ``expanding`` (from the spec).
        months: Months of a sliding window, else None.
        why: The spec's reason for its policy.
    """

    as_of: date
    training: tuple[date, date]
    evaluation: tuple[date, date]
    policy: str
    months: int | None
    why: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, registry lineage)."""
        return {
            "as_of": self.as_of.isoformat(),
            "policy": self.policy,
            "months": self.months,
            "why": self.why,
            "training_from": self.training[0].isoformat(),
            "training_to": self.training[1].isoformat(),
            "evaluation_from": self.evaluation[0].isoformat(),
            "evaluation_to": self.evaluation[1].isoformat(),
        }


def plan_windows(
    window: Window, as_of: date, *, earliest: date, evaluation_days: int | None = None
) -> RetrainWindows:
    """The training and evaluation windows of a run as of ``as_of``.

    Args:
        window: The spec's window policy.
        as_of: Last day of labelled data to use (inclusive).
        earliest: First day of labelled data in the warehouse (start of ``expanding``).
        evaluation_days: Length of the evaluation window in days; default the spec's
            ``window.evaluation_days``, else one month.

    Raises:
        VigieError: INVALID_INPUT when no training day is left before the evaluation window.
    """
    if evaluation_days is None:
        evaluation_days = window.evaluation_days
    if evaluation_days is not None and evaluation_days < 1:
        raise VigieError(
            ErrorCode.INVALID_INPUT, "evaluation days must be at least 1", field="evaluation_days"
        )
    after = as_of + timedelta(days=1)  # half-open [start, after) keeps month ends exact
    evaluation_start = (
        months_before(after, 1)
        if evaluation_days is None
        else after - timedelta(days=evaluation_days)
    )
    training_end = evaluation_start - timedelta(days=1)
    if window.policy == "sliding" and window.months is not None:
        training_start = months_before(evaluation_start, window.months)
    else:
        training_start = earliest
    if training_end < max(training_start, earliest):
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"no labelled day is left to train on before the evaluation window "
            f"{evaluation_start}..{as_of} (labelled data starts {earliest}); "
            "pass a later --as-of or fewer --evaluation-days",
            field="as_of",
        )
    return RetrainWindows(
        as_of=as_of,
        training=(training_start, training_end),
        evaluation=(evaluation_start, as_of),
        policy=window.policy,
        months=window.months,
        why=" ".join(window.why.split()),
    )
