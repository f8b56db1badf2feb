"""The state stores' behaviour, the same on both backends: SQLite and a real Redis."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.errors import ConfigError, NetworkError
from integration.state import StateStore, open_store

BACKENDS = ["sqlite", "redis"]
TOLERANCE_S = 0.05  # scheduling slack on the measured waits


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    url: str = request.getfixturevalue("redis_state_url")  # an emptied database
    return url


@pytest.fixture
def store(backend_url: str) -> Iterator[StateStore]:
    opened = open_store(backend_url)
    yield opened
    opened.close()


def timed_take(store: StateStore, bucket: str, limits: Any) -> tuple[float, float, float]:
    """(wait, time before, time after) of one take_slot."""
    before = time.time()
    wait = store.take_slot(bucket, limits)
    return wait, before, time.time()


# -- values ---------------------------------------------------------------------------------


def test_get_returns_what_put_stored(store: StateStore) -> None:
    store.put("ns", "k", "value with ünïcode and : colons *")
    assert store.get("ns", "k") == "value with ünïcode and : colons *"


def test_get_of_a_missing_key_is_none(store: StateStore) -> None:
    assert store.get("ns", "nothing") is None


def test_put_replaces_the_value(store: StateStore) -> None:
    store.put("ns", "k", "one")
    store.put("ns", "k", "two")
    assert store.get("ns", "k") == "two"


def test_delete_removes_the_key_and_ignores_a_missing_one(store: StateStore) -> None:
    store.put("ns", "k", "v")
    store.delete("ns", "k")
    store.delete("ns", "never-there")
    assert store.get("ns", "k") is None
    assert store.keys("ns") == []


def test_namespaces_do_not_share_keys(store: StateStore) -> None:
    store.put("tok", "x:k", "a")
    store.put("tok:x", "k", "b")
    store.put("t*", "k", "c")
    assert store.get("tok", "x:k") == "a"
    assert store.get("tok:x", "k") == "b"
    assert store.keys("tok") == ["x:k"]
    assert store.keys("tok:x") == ["k"]
    assert store.keys("t*") == ["k"]


def test_value_with_ttl_expires(store: StateStore) -> None:
    store.put("ns", "k", "v", ttl_s=0.3)
    assert store.get("ns", "k") == "v"
    time.sleep(0.45)
    assert store.get("ns", "k") is None


def test_value_without_ttl_persists(store: StateStore) -> None:
    store.put("ns", "short", "v", ttl_s=0.1)
    store.put("ns", "forever", "v")
    time.sleep(0.25)
    store.put("ns", "later", "v", ttl_s=0.1)  # a write after the expiry cleans up
    assert store.get("ns", "forever") == "v"
    assert sorted(store.keys("ns")) == ["forever", "later"]


def test_put_without_ttl_removes_an_earlier_ttl(store: StateStore) -> None:
    store.put("ns", "k", "v1", ttl_s=0.2)
    store.put("ns", "k", "v2")
    time.sleep(0.3)
    assert store.get("ns", "k") == "v2"
    assert store.keys("ns") == ["k"]


def test_put_with_a_zero_ttl_stores_nothing_live(store: StateStore) -> None:
    store.put("ns", "k", "v")
    store.put("ns", "k", "v2", ttl_s=0)
    assert store.get("ns", "k") is None
    assert store.keys("ns") == []


def test_keys_lists_only_live_keys_of_the_namespace(store: StateStore) -> None:
    store.put("jobs", "done-1", "1")
    store.put("jobs", "done-2", "1", ttl_s=30)
    store.put("jobs", "fading", "1", ttl_s=0.2)
    store.put("other", "done-3", "1")
    store.put("jobs", "gone", "1")
    store.delete("jobs", "gone")
    assert sorted(store.keys("jobs")) == ["done-1", "done-2", "fading"]
    time.sleep(0.3)
    assert sorted(store.keys("jobs")) == ["done-1", "done-2"]
    assert store.keys("other") == ["done-3"]
    assert store.keys("empty") == []


# -- the rate budget ------------------------------------------------------------------------


def test_take_slot_allows_exactly_n_calls_in_a_window(store: StateStore) -> None:
    limits = ((0.5, 3),)
    assert [store.take_slot("b", limits) for _ in range(3)] == [0.0, 0.0, 0.0]
    refused = [store.take_slot("b", limits) for _ in range(5)]
    assert all(wait > 0 for wait in refused)


def test_take_slot_wait_is_the_time_until_the_oldest_call_ages_out(store: StateStore) -> None:
    limits = ((0.5, 2),)
    _, first_before, first_after = timed_take(store, "b", limits)
    time.sleep(0.1)
    assert store.take_slot("b", limits) == 0.0
    wait, asked_before, asked_after = timed_take(store, "b", limits)
    assert first_before + 0.5 - asked_after - TOLERANCE_S <= wait
    assert wait <= first_after + 0.5 - asked_before + TOLERANCE_S
    time.sleep(wait)
    assert store.take_slot("b", limits) == 0.0  # the first call aged out: exactly one freed
    assert store.take_slot("b", limits) > 0


def test_refused_calls_take_no_slot(store: StateStore) -> None:
    limits = ((0.4, 2),)
    assert store.take_slot("b", limits) == 0.0
    assert store.take_slot("b", limits) == 0.0
    for _ in range(10):
        assert store.take_slot("b", limits) > 0
    time.sleep(0.45)
    assert [store.take_slot("b", limits) for _ in range(3)][:2] == [0.0, 0.0]


def test_both_windows_are_enforced(store: StateStore) -> None:
    limits = ((0.5, 3), (2.0, 5))
    _, first_before, first_after = timed_take(store, "b", limits)
    assert store.take_slot("b", limits) == 0.0
    assert store.take_slot("b", limits) == 0.0
    short_wait = store.take_slot("b", limits)  # the short window is full
    assert 0 < short_wait <= 0.5
    time.sleep(short_wait + 0.02)
    assert store.take_slot("b", limits) == 0.0
    assert store.take_slot("b", limits) == 0.0
    # Five calls in two seconds: the long window holds them until the first ages out of it,
    # although the short window has room again.
    wait, asked_before, asked_after = timed_take(store, "b", limits)
    assert first_before + 2.0 - asked_after - TOLERANCE_S <= wait
    assert wait <= first_after + 2.0 - asked_before + TOLERANCE_S
    assert wait > 1.0


def test_buckets_have_separate_budgets(store: StateStore) -> None:
    limits = ((1.0, 1),)
    assert store.take_slot("tenant-a|app", limits) == 0.0
    assert store.take_slot("tenant-a|app", limits) > 0
    assert store.take_slot("tenant-b|app", limits) == 0.0


def test_pause_blocks_until_it_passes(store: StateStore) -> None:
    limits = ((60.0, 100),)
    store.pause("b", 0.4)
    wait = store.take_slot("b", limits)
    assert 0.3 < wait <= 0.4 + TOLERANCE_S
    assert store.take_slot("other", limits) == 0.0  # only the paused bucket waits
    time.sleep(wait + 0.02)
    assert store.take_slot("b", limits) == 0.0


def test_pause_never_shortens_and_a_longer_one_extends(store: StateStore) -> None:
    limits = ((60.0, 100),)
    store.pause("b", 1.0)
    store.pause("b", 0.1)
    assert store.take_slot("b", limits) > 0.8
    store.pause("b", 1.5)
    assert store.take_slot("b", limits) > 1.3


# -- leases ---------------------------------------------------------------------------------


def test_lease_is_exclusive(store: StateStore) -> None:
    assert store.try_lease("token", "alice", 5)
    assert not store.try_lease("token", "bob", 5)
    assert store.try_lease("other", "bob", 5)


def test_lease_renews_for_its_owner_only(store: StateStore) -> None:
    assert store.try_lease("token", "alice", 0.3)
    time.sleep(0.2)
    assert store.try_lease("token", "alice", 0.3)  # renewed: lives 0.3 s from now
    time.sleep(0.2)
    assert not store.try_lease("token", "bob", 0.3)


def test_lease_expires_by_itself(store: StateStore) -> None:
    assert store.try_lease("token", "dead-holder", 0.2)
    time.sleep(0.3)
    assert store.try_lease("token", "bob", 5)


def test_only_the_owner_releases_a_lease(store: StateStore) -> None:
    assert store.try_lease("token", "alice", 5)
    store.release_lease("token", "bob")
    assert not store.try_lease("token", "bob", 5)
    store.release_lease("token", "alice")
    assert store.try_lease("token", "bob", 5)


# -- many processes at once -----------------------------------------------------------------

HAMMER_LIMIT = 4
HAMMER_WINDOW_S = 0.5
HAMMER_DURATION_S = 2.0
HAMMER_PROCESSES = 4


def _hammer(url: str, barrier: Any, results: Any) -> None:
    """One process: take slots on one bucket as fast as it can; report each grant's span."""
    store = open_store(url)
    limits = ((HAMMER_WINDOW_S, HAMMER_LIMIT),)
    grants = []
    try:
        barrier.wait(timeout=60)
        end = time.monotonic() + HAMMER_DURATION_S
        while time.monotonic() < end:
            wait, before, after = timed_take(store, "shared", limits)
            if wait == 0.0:
                grants.append((before, after))
    finally:
        store.close()
        results.put(grants)


def tightest_span(grants: list[tuple[float, float]], size: int) -> float:
    """The smallest time any `size` of the grants can be proven to span.

    A grant happened somewhere between its (before, after). For a set of grants, the true
    first-to-last span is at most max(after) - min(before); the budget is kept only if every
    set of limit+1 grants truly spans at least a window, so this bound must too.
    """
    ordered = sorted(grants)
    tightest = float("inf")
    for index, (before, after) in enumerate(ordered):
        later_afters = sorted(a for _, a in ordered[index + 1:])
        if len(later_afters) >= size - 1:
            tightest = min(tightest, max(after, later_afters[size - 2]) - before)
    return tightest


@pytest.mark.slow
def test_processes_sharing_a_store_never_exceed_the_budget(backend_url: str) -> None:
    open_store(backend_url).close()  # create the SQLite schema once, up front
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(HAMMER_PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=_hammer, args=(backend_url, barrier, results))
               for _ in range(HAMMER_PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        grants = [grant for _ in workers for grant in results.get(timeout=90)]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    assert all(worker.exitcode == 0 for worker in workers)
    span = max(a for _, a in grants) - min(b for b, _ in grants)
    # The budget frees up window after window, and never more than it allows.
    assert len(grants) >= 2 * HAMMER_LIMIT
    assert len(grants) <= HAMMER_LIMIT * (span // HAMMER_WINDOW_S + 1)
    assert tightest_span(grants, HAMMER_LIMIT + 1) >= HAMMER_WINDOW_S - 0.001


# -- Redis only -----------------------------------------------------------------------------


def test_open_store_picks_the_redis_backend(redis_state_url: str) -> None:
    from integration.state.redis import RedisStore

    store = open_store(redis_state_url)
    try:
        assert isinstance(store, RedisStore)
    finally:
        store.close()


def test_redis_keys_are_namespaced_under_the_prefix(redis_state_url: str) -> None:
    import redis

    store = open_store(redis_state_url)
    store.put("ns", "k", "v", ttl_s=30)
    store.take_slot("b", ((1.0, 5),))
    store.pause("b", 1.0)
    store.try_lease("l", "me", 5)
    store.close()
    client = redis.Redis.from_url(redis_state_url, decode_responses=True)
    try:
        names = client.keys("*")
        assert names and all(name.startswith("mde:") for name in names)
        # Idle state vanishes by itself: nothing written here lives forever.
        assert all(client.pttl(name) > 0 for name in names)
    finally:
        client.close()


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cret@db.example:6379/2", "redis://***@db.example:6379/2"),
    ("rediss://user:s3cret@db.example/0", "rediss://***@db.example/0"),
    ("redis://db.example:6379/0?password=s3cret&x=1", "redis://db.example:6379/0?password=***&x=1"),
    ("redis://db.example:6379/0", "redis://db.example:6379/0"),
])
def test_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from integration.state.redis import redact_url

    assert redact_url(url) == shown


def test_unreachable_redis_is_a_config_error_without_the_password() -> None:
    from redis_server import _free_port

    url = f"redis://:s3cret@127.0.0.1:{_free_port()}/0"  # nothing listens there
    with pytest.raises(ConfigError) as raised:
        open_store(url)
    message = raised.value.message
    assert "s3cret" not in message
    assert "redis://***@127.0.0.1" in message
    assert raised.value.code == "config_error"


def test_redis_lost_mid_run_is_a_retryable_network_error() -> None:
    from redis_server import running_redis

    with running_redis() as url:
        store = open_store(url)
        store.put("ns", "k", "v")
    # The server is gone now.
    with pytest.raises(NetworkError) as raised:
        store.get("ns", "k")
    assert raised.value.retryable
    with pytest.raises(NetworkError):
        store.take_slot("b", ((1.0, 1),))
    store.close()


def test_sqlite_runs_never_import_redis(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from integration.state import open_store\n"
        f"store = open_store('sqlite:///{tmp_path / 'state.sqlite3'}')\n"
        "store.put('ns', 'k', 'v')\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[1])
