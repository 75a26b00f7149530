"""Window computation of the retraining job."""

from __future__ import annotations

from datetime import date

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.retraining.windows import months_before, plan_windows
from vigie.training.spec import Window

SLIDING = Window(policy="sliding", months=2, why="seasons drift, recent months matter most")
EXPANDING = Window(policy="expanding", why="more history is better for rare events")


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2013, 3, 1), 2, date(2013, 1, 1)),
        (date(2013, 1, 15), 1, date(2012, 12, 15)),
        (date(2013, 3, 31), 1, date(2013, 2, 28)),
        (date(2012, 5, 31), 3, date(2012, 2, 29)),
        (date(2013, 12, 1), 12, date(2012, 12, 1)),
    ],
)
def test_months_before_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert months_before(day, months) == expected


def test_sliding_month_end_gives_full_months() -> None:
    planned = plan_windows(SLIDING, date(2013, 3, 31), earliest=date(2013, 1, 1))
    assert planned.evaluation == (date(2013, 3, 1), date(2013, 3, 31))
    assert planned.training == (date(2013, 1, 1), date(2013, 2, 28))
    assert planned.to_json()["why"].startswith("seasons drift")


def test_sliding_year_end() -> None:
    planned = plan_windows(SLIDING, date(2013, 12, 31), earliest=date(2013, 1, 1))
    assert planned.evaluation == (date(2013, 12, 1), date(2013, 12, 31))
    assert planned.training == (date(2013, 10, 1), date(2013, 11, 30))


def test_sliding_mid_month_and_evaluation_days() -> None:
    planned = plan_windows(SLIDING, date(2013, 6, 15), earliest=date(2013, 1, 1))
    assert planned.evaluation == (date(2013, 5, 16), date(2013, 6, 15))
    assert planned.training == (date(2013, 3, 16), date(2013, 5, 15))
    short = plan_windows(SLIDING, date(2013, 1, 10), earliest=date(2013, 1, 1), evaluation_days=3)
    assert short.evaluation == (date(2013, 1, 8), date(2013, 1, 10))
    assert short.training == (date(2012, 11, 8), date(2013, 1, 7))


def test_expanding_starts_at_the_earliest_labelled_day() -> None:
    planned = plan_windows(EXPANDING, date(2013, 6, 30), earliest=date(2013, 1, 1))
    assert planned.training == (date(2013, 1, 1), date(2013, 5, 31))
    assert planned.months is None


def test_no_training_day_left_is_refused() -> None:
    with pytest.raises(VigieError) as caught:
        plan_windows(SLIDING, date(2013, 1, 10), earliest=date(2013, 1, 1))
    assert caught.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(VigieError):
        plan_windows(SLIDING, date(2013, 1, 10), earliest=date(2013, 1, 1), evaluation_days=0)


def test_the_spec_may_set_a_shorter_evaluation_window() -> None:
    weekly = Window(policy="expanding", evaluation_days=7, why="all history, scored on a week")
    planned = plan_windows(weekly, date(2013, 3, 31), earliest=date(2013, 1, 1))
    assert planned.evaluation == (date(2013, 3, 25), date(2013, 3, 31))
    assert planned.training == (date(2013, 1, 1), date(2013, 3, 24))
    # the run's option wins over the spec
    monthly = plan_windows(weekly, date(2013, 3, 31), earliest=date(2013, 1, 1), evaluation_days=31)
    assert monthly.evaluation == (date(2013, 3, 1), date(2013, 3, 31))
