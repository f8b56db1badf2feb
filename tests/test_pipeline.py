"""The one request pipeline (integration/defender/pipeline.py): budget -> token (one fresh
token after a 401) -> retries -> transport, and one mapping from an answer to our error.
Driven through the real stack (msal, requests, TLS) against the emulator; the principals
and the Graph client here are small stand-ins for the ones other features plug in."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from integration.compose import Parts, new_enricher
from integration.config import load_settings
from integration.defender import urls
from integration.defender.client import DefenderClient
from integration.defender.hunting import domain_query
from integration.defender.pipeline import Calls, Request, fetch
from integration.emulator import Emulator, seed
from integration.errors import (
    AuthFailed,
    NetworkError,
    PermissionDenied,
    PluginError,
    UpstreamError,
)
from integration.playbook.errors import StepFailed
from integration.values.indicators import parse_domain

DOMAIN_PATH = f"/api/domains/{seed.EVIL_DOMAIN}/machines"


class Principal:
    """A principal of its own (as a signed-in user's token source would be): its first
    token is one the API refuses; it records what it was told to drop."""

    def __init__(self, fresh: Any, first: str = "stale-token") -> None:
        self._fresh, self._next = fresh, first
        self.dropped: list[str] = []

    def access_token(self) -> str:
        token, self._next = self._next, ""
        return token or self._fresh.access_token()

    def invalidate(self, token: str) -> None:
        self.dropped.append(token)


class Refused:
    """A principal whose every token the API refuses."""

    def access_token(self) -> str:
        return "never-valid-token"

    def invalidate(self, token: str) -> None:
        pass


def parts_for(config: dict[str, Any], **overrides: Any) -> Parts:
    return Parts(load_settings({**config, **overrides}))


def test_a_refused_token_is_dropped_and_the_request_sent_once_more(
        config: dict, emulator: Emulator) -> None:
    parts = parts_for(config)
    principal = Principal(parts.tokens)
    lookup = DefenderClient(parts.defender_api(principal)).machines_for_domain(
        parse_domain(seed.EVIL_DOMAIN))
    assert lookup.found
    assert principal.dropped == ["stale-token"]
    assert [call["status"] for call in emulator.admin.api_calls()] == [401, 200]
    assert lookup.api_calls == 2


def test_a_second_401_is_auth_failed_with_status_service_and_path(
        config: dict, emulator: Emulator) -> None:
    client = DefenderClient(parts_for(config).defender_api(Refused()))
    with pytest.raises(AuthFailed) as raised:
        client.machines_for_domain(parse_domain(seed.EVIL_DOMAIN))
    error = raised.value
    assert (error.status, error.service, error.path, error.api_calls) == \
        (401, "Defender", DOMAIN_PATH, 2)
    assert "never-valid-token" not in error.message
    assert len(emulator.admin.api_calls()) == 2


def test_a_dropped_connection_keeps_requests_exception_as_its_cause(
        config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, "drop", repeat_last=True)
    client = parts_for(config, max_attempts=1).client
    with pytest.raises(NetworkError) as raised:
        client.machines_for_domain(parse_domain(seed.EVIL_DOMAIN))
    error = raised.value
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert (error.service, error.path, error.api_calls) == ("Defender", DOMAIN_PATH, 1)


def test_a_graph_client_of_its_own_sends_through_the_pipeline(
        config: dict, emulator: Emulator) -> None:
    """What a new Graph client does: a Request on the Graph Api, nothing wired again."""
    api = parts_for(config).graph_api()
    query = {"Query": domain_query([parse_domain(seed.EVIL_DOMAIN)]), "Timespan": "P30D"}
    body = fetch(api, Request("POST", urls.HUNTING_QUERY, "hunting", body=query), Calls())
    assert body["results"]
    emulator.admin.add_fault("/v1.0/security/", 403)
    with pytest.raises(PermissionDenied) as raised:
        fetch(api, Request("POST", urls.HUNTING_QUERY, "hunting", body=query,
                           what="alert comments", permission="SecurityAlert.ReadWrite.All"),
              Calls())
    error = raised.value
    assert (error.status, error.service, error.path) == (403, "Graph", urls.HUNTING_QUERY)
    assert "Graph denied alert comments (it needs the SecurityAlert.ReadWrite.All " \
           "permission)" in error.message


def test_a_token_is_never_sent_to_another_origin(config: dict, emulator: Emulator) -> None:
    api = parts_for(config).defender_api()
    with pytest.raises(UpstreamError, match="leaves"):
        fetch(api, Request("GET", "https://attacker.example/api/machines", "machines_list"),
              Calls())
    assert emulator.admin.api_calls() == []


def test_a_replaced_error_keeps_its_class_cause_and_data() -> None:
    cause = ValueError("the wire")
    try:
        raise PermissionDenied("denied", status=403, service="Graph", path="/x") from cause
    except PermissionDenied as error:
        copy = error.replace(message="denied again", api_calls=3)
    assert type(copy) is PermissionDenied and copy.__cause__ is cause
    assert (copy.message, copy.status, copy.service, copy.path, copy.api_calls) == \
        ("denied again", 403, "Graph", "/x", 3)
    assert copy.to_dict()["code"] == "permission_denied"


def test_a_failed_step_carries_its_causes_code_and_replaces_like_any_error() -> None:
    cause = AuthFailed("sign-in failed", status=401)
    failed = StepFailed("playbook.yaml: steps[0]: sign-in failed", cause)
    changed = failed.replace(api_calls=2)
    assert (changed.code, changed.exit_status, changed.status) == ("auth_failed", 3, 401)
    assert changed.__cause__ is cause and changed.api_calls == 2
    assert StepFailed.code == PluginError.code  # the class itself is untouched


def test_an_error_envelope_carries_the_error_itself(config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault(DOMAIN_PATH, 403)
    envelope = new_enricher(load_settings(config)).lookup("domain", seed.EVIL_DOMAIN)
    assert isinstance(envelope.error, PermissionDenied)
    assert (envelope.error.status, envelope.error.service, envelope.error.path) == \
        (403, "Defender", DOMAIN_PATH)
    assert envelope.to_dict()["error"] == {"code": "permission_denied", "http_status": 403,
                                           "message": envelope.error.message,
                                           "retryable": False}
