"""Routing of unversioned requests: production, an exact canary share, a shadow."""

from __future__ import annotations

import pytest

from vigie.serving.routing import Route, Router


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0), (0.1, 10), (0.25, 25), (1.0, 100)])
def test_a_canary_share_is_exact_over_a_run_of_requests(share: float, expected: int) -> None:
    router = Router(canary_share=share, shadow=False)
    routes = [router.decide("m", production="1", staging="2") for _ in range(100)]
    canary = [d for d in routes if d.route is Route.CANARY]
    assert len(canary) == expected
    assert all(d.version == "2" for d in canary)
    assert all(d.version == "1" for d in routes if d.route is Route.PRODUCTION)


def test_shares_are_counted_per_model() -> None:
    router = Router(canary_share=0.5, shadow=False)
    first = [router.decide("a", production="1", staging="2").route for _ in range(2)]
    other = [router.decide("b", production="1", staging="2").route for _ in range(2)]
    assert first == other == [Route.PRODUCTION, Route.CANARY]


def test_a_shadow_answers_from_production_and_mirrors_to_staging() -> None:
    router = Router(canary_share=0.5, shadow=True)
    decision = router.decide("m", production="1", staging="2")
    assert (decision.version, decision.route, decision.mirror) == ("1", Route.PRODUCTION, "2")
    assert router.wants_staging


def test_without_staging_everything_goes_to_production() -> None:
    router = Router(canary_share=1.0, shadow=True)
    assert router.decide("m", production="1", staging=None).mirror is None
    assert router.decide("m", production="1", staging="1").route is Route.PRODUCTION
    assert not Router(canary_share=0.0, shadow=False).wants_staging


def test_no_production_version_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        Router(canary_share=1.0, shadow=False).decide("m", production=None, staging="2")
    with pytest.raises(ValueError, match="canary_share"):
        Router(canary_share=1.5, shadow=False)
