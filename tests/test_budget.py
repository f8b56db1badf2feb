"""The rate budget: two lanes (batch work leaves the last share of each window to analysts)
and one bucket per call type (Microsoft documents the limits per API), on SQLite and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration import actions
from integration.defender.budget import Budgets, RateBudget
from integration.emulator import Emulator, seed
from integration.errors import RateLimited
from integration.state import StateStore, open_store


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}" if request.param == "sqlite" \
        else request.getfixturevalue("redis_state_url")
    opened = open_store(url)
    yield opened
    opened.close()


def budget(store: StateStore, name: str = "t|c|domain_machines", **limits: Any) -> RateBudget:
    return RateBudget(store, name, per_minute=limits.get("per_minute", 10),
                      per_hour=limits.get("per_hour", 100), max_wait_s=0,
                      interactive_reserve=limits.get("reserve", 0.2))


def taken(rate_budget: RateBudget, lane: Any, tries: int) -> int:
    count = 0
    for _ in range(tries):
        try:
            rate_budget.take(lane)
        except RateLimited:
            break
        count += 1
    return count


def test_batch_work_leaves_the_last_fifth_of_a_window(store: StateStore) -> None:
    assert taken(budget(store), "batch", 20) == 8


def test_an_analyst_gets_the_reserve_while_batch_work_saturates(store: StateStore) -> None:
    shared = budget(store)
    taken(shared, "batch", 20)
    assert taken(shared, "interactive", 20) == 2


def test_interactive_work_counts_against_the_batch_share_too(store: StateStore) -> None:
    shared = budget(store)
    assert taken(shared, "interactive", 9) == 9
    assert taken(shared, "batch", 5) == 0  # nine of ten used: none left above the reserve


def test_a_reserve_of_zero_is_one_lane(store: StateStore) -> None:
    assert taken(budget(store, reserve=0), "batch", 20) == 10


def test_a_batch_refused_by_its_share_says_so(store: StateStore) -> None:
    shared = budget(store)
    taken(shared, "batch", 20)
    with pytest.raises(RateLimited, match="leaves the last part of each window"):
        shared.take("batch")


def test_each_call_type_has_its_own_bucket(store: StateStore) -> None:
    budgets = Budgets(lambda name: budget(store, f"t|c|{name}"), shared=False)
    assert taken(budgets.for_call("domain_machines"), "interactive", 20) == 10
    assert taken(budgets.for_call("file_machines"), "interactive", 20) == 10


def test_a_shared_bucket_counts_every_call_type_together(store: StateStore) -> None:
    budgets = Budgets(lambda name: budget(store, f"t|c|{name}"), shared=True)
    assert taken(budgets.for_call("domain_machines"), "interactive", 6) == 6
    assert taken(budgets.for_call("file_machines"), "interactive", 20) == 4


# --- through the entry points, against the emulator ------------------------------------------


def limited(config: dict[str, Any], **rate_limit: Any) -> dict[str, Any]:
    return {**config, "rate_limit": {"per_minute": 5, "per_hour": 100, **rate_limit},
            "max_rate_wait_s": 0}


def lookup(config: dict[str, Any], value: str, **params: Any) -> dict[str, Any]:
    return actions.get_machines_for_domain({"domain": value, "use_cache": False, **params},
                                           config)


def test_an_interactive_lookup_goes_out_at_once_during_a_saturating_batch(
        config: dict, emulator: Emulator) -> None:
    config = limited(config)
    batch = [lookup(config, seed.EVIL_DOMAIN)["status"] for _ in range(6)]
    assert batch.count("success") == 4  # floor(5 x 0.8): the fifth call is the analysts'
    analyst = lookup(config, seed.EVIL_DOMAIN, priority="interactive")
    assert analyst["status"] == "success"


def test_file_lookups_are_not_starved_by_domain_lookups(config: dict,
                                                        emulator: Emulator) -> None:
    config = limited(config)
    for _ in range(6):
        lookup(config, seed.EVIL_DOMAIN)
    envelope = actions.get_machines_for_file_hash(
        {"file_hash": seed.KNOWN_FILE["sha1"], "use_cache": False}, config)
    assert envelope["status"] == "success"


def test_with_one_shared_bucket_domain_lookups_do_use_up_file_lookups(
        config: dict, emulator: Emulator) -> None:
    config = limited(config, buckets="shared")
    for _ in range(6):
        lookup(config, seed.EVIL_DOMAIN)
    envelope = actions.get_machines_for_file_hash(
        {"file_hash": seed.KNOWN_FILE["sha1"], "use_cache": False}, config)
    assert envelope["error"]["code"] == "rate_limited"
