"""The online store on the real Redis passes the same checks as the embedded one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from tests.unit.features import store_checks

from vigie.features.redis_store import RedisStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_admin_url: str) -> Iterator[RedisStore]:
    found = RedisStore(redis_admin_url, prefix=f"vigie-test:{secrets.token_hex(4)}:")
    try:
        yield found
    finally:
        found.clear()
        found.close()


def test_served_stream_features_equal_the_offline_definition(store: RedisStore) -> None:
    store_checks.check_served_equals_offline(store, *store_checks.day_of_events())


def test_duplicated_and_shuffled_events_leave_the_same_store(store: RedisStore) -> None:
    store_checks.check_idempotent_in_any_order(store, *store_checks.day_of_events(seed=11))


def test_prune_drops_what_no_window_can_reach(store: RedisStore) -> None:
    events, _ = store_checks.day_of_events(flights=40)
    store.apply(events)
    mark = store.watermark_us()
    assert mark is not None
    assert store.prune(mark + 1) > 0
    assert store.prune(mark + 1) == 0


def test_the_flight_number_picks_the_flight_of_an_ambiguous_schedule(store: RedisStore) -> None:
    store_checks.check_the_flight_number_picks_the_flight(store)
