"""The retry policy, the shared rate budget and the token's reuse, driven by emulator faults."""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any

import pytest

from integration import actions
from integration.compose import new_enricher
from integration.config import load_settings
from integration.defender.retry import parse_retry_after
from integration.emulator import Emulator, seed

DOMAIN_PATH = f"/api/domains/{seed.EVIL_DOMAIN}/machines"


def lookup(config: dict[str, Any], value: str = seed.EVIL_DOMAIN) -> dict[str, Any]:
    return actions.get_machines_for_domain({"domain": value, "use_cache": False}, config)


def api_attempts(emulator: Emulator, path: str = DOMAIN_PATH) -> list[dict[str, Any]]:
    return [call for call in emulator.admin.api_calls() if call["path"] == path]


def test_throttle_then_outages_then_success_is_one_lookup_in_four_attempts(
        config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 429, "headers": {"Retry-After": "2"}},
                             {"status": 503}, {"status": 502, "html": True})
    envelope = lookup(config)
    attempts = api_attempts(emulator)
    assert envelope["status"] == "success"
    assert envelope["summary"]["api_calls"] == 4
    assert [call["status"] for call in attempts] == [429, 503, 502, 200]
    assert attempts[1]["time"] - attempts[0]["time"] >= 2.0


def test_an_endless_outage_ends_upstream_error_retryable_within_bounds(
        emulator: Emulator, state_url: str) -> None:
    config = emulator.config(state=state_url, max_attempts=4, deadline_s=10,
                             backoff_base_s=0.05, backoff_cap_s=0.2)
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 503}, repeat_last=True)
    started = time.monotonic()
    envelope = lookup(config)
    assert envelope["error"]["code"] == "upstream_error"
    assert envelope["error"]["retryable"] is True
    assert len(api_attempts(emulator)) == 4
    assert time.monotonic() - started < 10


def test_the_deadline_stops_retries_before_max_attempts(emulator: Emulator,
                                                        state_url: str) -> None:
    config = emulator.config(state=state_url, max_attempts=10, deadline_s=1.0,
                             backoff_base_s=0.4, backoff_cap_s=0.4)
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 500}, repeat_last=True)
    envelope = lookup(config)
    assert envelope["error"]["code"] == "upstream_error"
    assert "deadline" in envelope["error"]["message"]
    assert 2 <= len(api_attempts(emulator)) < 10


@pytest.mark.parametrize("fault", [
    {"status": 408}, {"status": 500}, {"status": 502}, {"status": 503}, {"status": 504},
    {"status": 502, "html": True}, {"drop": True}, {"truncate": True},
    {"status": 200, "html": True},
], ids=["408", "500", "502", "503", "504", "502-html", "dropped-connection", "truncated-body",
        "200-html"])
def test_a_transient_fault_is_retried_once_and_the_lookup_succeeds(
        config: dict, emulator: Emulator, fault: dict) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, fault)
    envelope = lookup(config)
    assert envelope["status"] == "success"
    assert envelope["summary"]["api_calls"] == 2


def test_a_read_timeout_is_retried(emulator: Emulator, state_url: str) -> None:
    config = emulator.config(state=state_url, timeout_s=0.3, backoff_base_s=0.02)
    emulator.admin.add_fault(DOMAIN_PATH, {"delay_s": 1.0, "pass": True})
    envelope = lookup(config)
    assert envelope["status"] == "success"
    assert envelope["summary"]["api_calls"] == 2


def test_timeouts_to_the_end_are_reported_as_timeout(emulator: Emulator,
                                                     state_url: str) -> None:
    config = emulator.config(state=state_url, timeout_s=0.2, max_attempts=2,
                             backoff_base_s=0.02)
    emulator.admin.add_fault(DOMAIN_PATH, {"delay_s": 0.6, "pass": True}, repeat_last=True)
    envelope = lookup(config)
    assert envelope["error"]["code"] == "timeout"
    assert envelope["error"]["retryable"] is True


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_input"),
                                               (403, "permission_denied")])
def test_client_errors_are_never_retried(config: dict, emulator: Emulator, status: int,
                                         code: str) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, {"status": status}, repeat_last=True)
    envelope = lookup(config)
    assert envelope["error"]["code"] == code
    assert envelope["error"]["retryable"] is False
    assert len(api_attempts(emulator)) == 1


def test_a_404_is_not_retried(config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 404}, repeat_last=True)
    assert lookup(config)["status"] == "not_found"
    assert len(api_attempts(emulator)) == 1


def test_an_expired_token_is_replaced_once_and_the_call_retried(config: dict,
                                                                emulator: Emulator) -> None:
    lookup(config)  # a token in the cache
    emulator.admin.clear_log()
    emulator.admin.add_fault(DOMAIN_PATH, {"expire_token": True})
    envelope = lookup(config)
    assert envelope["status"] == "success"
    assert [call["status"] for call in api_attempts(emulator)] == [401, 200]
    assert len(emulator.admin.token_calls()) == 1


def test_a_revoked_token_is_replaced_by_a_new_one(config: dict, emulator: Emulator) -> None:
    lookup(config)
    emulator.admin.revoke_tokens()
    assert lookup(config)["status"] == "success"


def test_a_second_401_with_a_fresh_token_is_auth_failed(config: dict,
                                                        emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, {"expire_token": True}, repeat_last=True)
    envelope = lookup(config)
    assert envelope["error"]["code"] == "auth_failed"
    assert len(api_attempts(emulator)) == 2


def test_retry_after_as_an_http_date_is_honoured(config: dict, emulator: Emulator) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 429, "headers": {"Retry-After": when}})
    envelope = lookup(config)
    attempts = api_attempts(emulator)
    assert envelope["status"] == "success"
    assert attempts[1]["time"] - attempts[0]["time"] >= 0.9  # HTTP dates have 1 s resolution


def test_retry_after_beyond_the_limit_gives_up_at_once(emulator: Emulator,
                                                       state_url: str) -> None:
    config = emulator.config(state=state_url, max_retry_after_s=5)
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 429, "headers": {"Retry-After": "120"}})
    started = time.monotonic()
    envelope = lookup(config)
    assert envelope["error"]["code"] == "rate_limited"
    assert envelope["error"]["retryable"] is True
    assert time.monotonic() - started < 2


def test_a_429_makes_every_process_sharing_the_state_wait(config: dict,
                                                          emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 429, "headers": {"Retry-After": "2"}})
    throttled, bystander = new_enricher(load_settings(config)), new_enricher(load_settings(config))
    worker = threading.Thread(target=throttled.lookup, args=("domain", seed.EVIL_DOMAIN))
    worker.start()
    deadline = time.monotonic() + 10
    while not api_attempts(emulator) and time.monotonic() < deadline:
        time.sleep(0.02)
    bystander.lookup("domain", seed.PHISH_DOMAIN)  # another path, never throttled itself
    worker.join(timeout=30)
    throttle = api_attempts(emulator)[0]
    phish = api_attempts(emulator, f"/api/domains/{seed.PHISH_DOMAIN}/machines")
    assert throttle["status"] == 429
    assert phish[0]["time"] - throttle["time"] >= 1.9


def test_an_empty_budget_ends_rate_limited_without_sending(emulator: Emulator,
                                                           state_url: str) -> None:
    config = emulator.config(state=state_url, rate_limit={"per_minute": 2, "per_hour": 100,
                                                          "interactive_reserve": 0},
                             max_rate_wait_s=0.5)
    statuses = [lookup(config, value)["status"]
                for value in (seed.EVIL_DOMAIN, seed.PHISH_DOMAIN, seed.IDN_DOMAIN)]
    assert statuses == ["success", "success", "error"]
    envelope = lookup(config, seed.IDN_DOMAIN)
    assert envelope["error"]["code"] == "rate_limited"
    assert envelope["error"]["retryable"] is True
    assert "nothing was sent" in envelope["error"]["message"]
    assert len(emulator.admin.api_calls()) == 2


@pytest.mark.parametrize(("header", "seconds"), [("2", 2.0), ("0", 0.0), ("1.5", 1.5),
                                                  ("", None), ("soon", None), (None, None)])
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
