"""`auth: managed_identity`: msal's managed identity client against the emulator's IMDS and
App Service token endpoints, end to end, and its configuration.

Safety: msal's default IMDS address is http://169.254.169.254. Every test here runs under a
guard that refuses (and records) any connection or name lookup that is not loopback, so a
test that forgot to point msal at the emulator fails loudly instead of sending traffic.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from conftest import FAST_RETRIES

from integration import actions, schemas
from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator import Emulator
from integration.errors import ConfigError

IMDS_PATH = "/metadata/identity/oauth2/token"
# Every variable msal reads to choose a managed identity endpoint (msal/managed_identity.py):
# a developer's or a CI host's own must not steer these tests anywhere.
MSAL_MI_VARIABLES = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
                     "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
                     "AZURE_POD_IDENTITY_AUTHORITY_HOST")


class NonLoopbackTraffic(AssertionError):
    """Not an OSError: urllib3 and requests must not turn it into a quiet network_error."""


def _is_loopback(host: object) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: resolving it would already ask a DNS server


def _refuse_unless_loopback(address: Any, attempts: list[str]) -> None:
    if isinstance(address, tuple) and not _is_loopback(address[0]):
        attempts.append(str(address))
        raise NonLoopbackTraffic(f"refused a connection to {address}: tests stay on loopback")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse, record and fail on any connect or getaddrinfo that is not loopback."""
    attempts: list[str] = []
    for variable in MSAL_MI_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    connect, connect_ex, getaddrinfo = (socket.socket.connect, socket.socket.connect_ex,
                                        socket.getaddrinfo)

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _refuse_unless_loopback(address, attempts)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _refuse_unless_loopback(address, attempts)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"getaddrinfo {host}")
            raise NonLoopbackTraffic(f"refused to resolve {host!r}: tests stay on loopback")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts
    assert not attempts, f"a test tried to leave loopback: {attempts}"


def mi_config(emulator: Emulator, state_url: str, **overrides: Any) -> dict[str, Any]:
    return emulator.managed_identity_config(state=state_url, **FAST_RETRIES, **overrides)


def token_queries(emulator: Emulator, path: str = IMDS_PATH) -> list[dict[str, list[str]]]:
    return [parse_qs(entry["query"]) for entry in emulator.admin.requests_log(path)]


# --------------------------------------------------------------------------- the guard

def test_the_guard_refuses_what_is_not_loopback(loopback_only: list[str]) -> None:
    # Checked on the guard's rule itself: proving it with a real socket would risk the very
    # packet it exists to stop.
    assert socket.socket.connect.__name__ == "guarded_connect"
    assert socket.getaddrinfo.__name__ == "guarded_getaddrinfo"
    with pytest.raises(NonLoopbackTraffic):
        _refuse_unless_loopback(("169.254.169.254", 80), loopback_only)
    with pytest.raises(NonLoopbackTraffic):
        socket.getaddrinfo("login.microsoftonline.com", 443)
    _refuse_unless_loopback(("127.0.0.1", 443), loopback_only)
    _refuse_unless_loopback(("::1", 443, 0, 0), loopback_only)
    loopback_only.clear()  # these refusals were the point


def test_without_an_endpoint_msal_asks_the_imds_address(
        emulator: Emulator, state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """msal's default is 169.254.169.254: seen at our Transport, which sends nothing here."""
    from integration.defender.transport import Transport
    from integration.errors import NetworkError

    asked: list[str] = []

    def no_send(self: Transport, method: str, url: str, **kwargs: Any) -> Any:
        asked.append(url)
        raise NetworkError("not sent: tests stay on loopback")

    monkeypatch.setattr(Transport, "_send", no_send)
    config = mi_config(emulator, state_url, max_attempts=1)
    del config["managed_identity_endpoint"]
    envelope = actions.get_machines_for_domain({"domain": "evil.example"}, config)
    assert envelope["error"]["code"] == "network_error"
    assert asked == [f"http://169.254.169.254{IMDS_PATH}"]


# --------------------------------------------------------------------------- lookups

def test_system_assigned_identity_looks_up_machines(emulator: Emulator, state_url: str) -> None:
    envelope = actions.get_machines_for_domain({"domain": "evil.example"},
                                               mi_config(emulator, state_url))
    assert envelope["status"] == "success", envelope.get("error")
    assert len(envelope["machines"]) == 3
    (query,) = token_queries(emulator)
    assert query["resource"] == ["https://api.securitycenter.microsoft.com"]
    assert "client_id" not in query and "msi_res_id" not in query
    assert {call["client_id"] for call in emulator.admin.api_calls()} == \
        {emulator.mi_system_client_id}


def test_user_assigned_identity_by_client_id(emulator: Emulator, state_url: str) -> None:
    config = mi_config(emulator, state_url, managed_identity_client_id=emulator.mi_user_client_id)
    envelope = actions.get_machines_for_domain({"domain": "evil.example"}, config)
    assert envelope["status"] == "success", envelope.get("error")
    assert len(envelope["machines"]) == 3
    (query,) = token_queries(emulator)
    assert query["client_id"] == [emulator.mi_user_client_id]
    assert {call["client_id"] for call in emulator.admin.api_calls()} == \
        {emulator.mi_user_client_id}


def test_user_assigned_identity_by_resource_id(emulator: Emulator, state_url: str) -> None:
    config = mi_config(emulator, state_url,
                       managed_identity_resource_id=emulator.mi_user_resource_id)
    envelope = actions.get_machines_for_domain({"domain": "evil.example"}, config)
    assert envelope["status"] == "success", envelope.get("error")
    (query,) = token_queries(emulator)
    assert query["msi_res_id"] == [emulator.mi_user_resource_id]


def test_unknown_user_assigned_identity_is_auth_failed(emulator: Emulator,
                                                       state_url: str) -> None:
    unknown = "00000000-0000-4000-8000-00000000dead"
    config = mi_config(emulator, state_url, managed_identity_client_id=unknown)
    envelope = actions.get_machines_for_domain({"domain": "evil.example"}, config)
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "auth_failed"
    assert envelope["error"]["retryable"] is False
    message = envelope["error"]["message"]
    assert f"user-assigned managed identity {unknown}" in message
    assert "Identity not found" in message
    assert len(token_queries(emulator)) == 1  # a refusal is not retried
    assert emulator.admin.api_calls() == []


def test_the_token_is_shared_through_the_state(emulator: Emulator, state_url: str) -> None:
    config = mi_config(emulator, state_url)
    first, second = new_enricher(load_settings(config)), new_enricher(load_settings(config))
    assert first.lookup("domain", "evil.example").status == "success"
    assert second.lookup("domain", "evil.example", use_cache=False).status == "success"
    assert len(emulator.admin.token_calls()) == 1
    assert second.tokens.tokens_fetched == 0
    assert len(emulator.admin.api_calls()) == 2


def test_a_transient_imds_answer_is_retried(emulator: Emulator, state_url: str) -> None:
    emulator.admin.add_fault(IMDS_PATH, 503)
    envelope = actions.get_machines_for_domain({"domain": "evil.example"},
                                               mi_config(emulator, state_url))
    assert envelope["status"] == "success", envelope.get("error")
    assert [entry["status"] for entry in emulator.admin.requests_log(IMDS_PATH)] == [503, 200]


def test_app_service_endpoint_found_through_the_environment(
        emulator: Emulator, state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On App Service msal reads IDENTITY_ENDPOINT and IDENTITY_HEADER; set here to the
    emulator (loopback) before any client is built."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{emulator.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", emulator.mi_identity_header)
    config = mi_config(emulator, state_url, managed_identity_client_id=emulator.mi_user_client_id)
    del config["managed_identity_endpoint"]
    envelope = actions.get_machines_for_domain({"domain": "evil.example"}, config)
    assert envelope["status"] == "success", envelope.get("error")
    (query,) = token_queries(emulator, "/msi/token")
    assert query["client_id"] == [emulator.mi_user_client_id]
    assert token_queries(emulator) == []  # IMDS was not asked


def test_an_identity_of_another_tenant_is_named(emulator: Emulator, state_url: str) -> None:
    other = "11111111-2222-4333-8444-555555555555"
    envelope = actions.get_machines_for_domain({"domain": "evil.example"},
                                               mi_config(emulator, state_url, tenant_id=other))
    assert envelope["error"]["code"] == "auth_failed"
    assert f"not to the configured tenant_id {other}" in envelope["error"]["message"]


# --------------------------------------------------------------------------- configuration

def test_managed_identity_needs_no_client_id_or_secret() -> None:
    config = {"tenant_id": "contoso.onmicrosoft.com", "auth": "managed_identity"}
    settings = load_settings(config)
    assert settings.auth == "managed_identity" and settings.client_secret is None
    assert settings.client_id == "managed-identity:system-assigned"
    assert schemas.errors("config.schema.json", config) == []
    user = load_settings({**config, "managed_identity_client_id": "abc-123"})
    assert user.client_id == user.managed_identity_client_id == "abc-123"


@pytest.mark.parametrize(("extra", "words"), [
    ({"client_secret": "s3cr3t-value"}, "config key 'client_secret' cannot be used with auth: "
                                        "managed_identity"),
    ({"client_certificate": {"path": "c.pem"}}, "config key 'client_certificate' cannot be used"),
    ({"client_id": "abc"}, "with 'managed_identity_client_id'"),
    ({"managed_identity_client_id": "a", "managed_identity_resource_id": "/subscriptions/x"},
     "give one of them, not both"),
    ({"tenant_id": ""}, "config key 'tenant_id' is required"),
], ids=["secret", "certificate", "client_id", "two identities", "no tenant"])
def test_managed_identity_config_refusals(extra: dict[str, Any], words: str) -> None:
    config = {"tenant_id": "contoso.onmicrosoft.com", "auth": "managed_identity", **extra}
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert words in caught.value.message
    assert "s3cr3t-value" not in caught.value.message
    assert schemas.errors("config.schema.json", config)  # the schema refuses it too


@pytest.mark.parametrize(("config", "words"), [
    ({"client_id": "c", "client_secret": "s", "managed_identity_client_id": "m"},
     "'managed_identity_client_id' applies only with auth: managed_identity"),
    ({"client_id": "c", "client_secret": "s", "auth": "client_certificate"},
     "config key 'client_certificate' is required with auth: client_certificate"),
], ids=["identity key without auth", "auth and key disagree"])
def test_app_credential_config_refusals(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"tenant_id": "t", **config})
    assert words in caught.value.message


def test_auth_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDE_TENANT_ID", "contoso.onmicrosoft.com")
    monkeypatch.setenv("MDE_AUTH", "managed_identity")
    monkeypatch.setenv("MDE_MANAGED_IDENTITY_CLIENT_ID", "abc-123")
    settings = load_settings({})
    assert (settings.auth, settings.managed_identity_client_id) == ("managed_identity", "abc-123")


def test_connectivity_names_the_managed_identity(emulator: Emulator, state_url: str) -> None:
    envelope = actions.test_connectivity({}, mi_config(emulator, state_url))
    assert envelope["status"] == "success", envelope.get("error")
    assert envelope["connectivity"]["roles"] == ["Machine.Read.All"]
    assert envelope["connectivity"]["authority"] == f"managed identity ({emulator.base_url})"
