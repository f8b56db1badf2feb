"""The emulator's users and delegated sign-in, driven over HTTPS with real msal: device code
(approved, declined, expired, polled too fast), refresh tokens, on-behalf-of, and Defender
answers limited to the user's device groups."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import msal
import pytest
import requests

from integration.emulator import Emulator, seed

SCOPE = "https://api.securitycenter.microsoft.com/.default"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(state_dir=tmp_path_factory.mktemp("emulator")) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def fresh(emu: Emulator) -> None:
    emu.admin.reset()
    emu.admin.configure(device_code_interval_s=1)


def http(emu: Emulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_path
    return session


def public_app(emu: Emulator, client_id: str | None = None,
               cache: msal.TokenCache | None = None) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        client_id or emu.public_client_id, authority=f"{emu.base_url}/{emu.tenant_id}",
        http_client=http(emu), instance_discovery=False, token_cache=cache)


def confidential_app(emu: Emulator, client_id: str | None = None,
                     secret: str | None = None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or emu.client_id, client_credential=secret or emu.client_secret,
        authority=f"{emu.base_url}/{emu.tenant_id}", http_client=http(emu),
        instance_discovery=False)


def sign_in(emu: Emulator, app: msal.PublicClientApplication, decide: Any) -> dict[str, Any]:
    """The device-code flow end to end: msal polls while `decide(user_code)` answers."""
    flow = app.initiate_device_flow(scopes=[SCOPE])
    assert "user_code" in flow, flow
    answer = threading.Timer(0.3, decide, args=(flow["user_code"],))
    answer.start()
    try:
        return app.acquire_token_by_device_flow(flow)
    finally:
        answer.cancel()


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def machines(emu: Emulator, token: str, path: str) -> requests.Response:
    return http(emu).get(f"{emu.base_url}{path}", headers={"Authorization": f"Bearer {token}"})


def group_names(response: requests.Response) -> set[str]:
    return {m.get("rbacGroupName") for m in response.json()["value"]}


def test_device_code_approved_through_the_admin_endpoint_signs_alice_in(emu: Emulator) -> None:
    app = public_app(emu)
    result = sign_in(emu, app, lambda code: emu.admin.approve_device_code(code, emu.alice))
    assert "access_token" in result, result
    token = claims(result["access_token"])
    assert token["upn"] == emu.alice and token["idtyp"] == "user"
    assert token["scp"].split() == ["Machine.Read", "User.Read"]
    assert token["oid"] and token["appid"] == emu.public_client_id
    assert [a["username"] for a in app.get_accounts()] == [emu.alice]


def test_a_declined_code_ends_the_polling_with_authorization_declined(emu: Emulator) -> None:
    result = sign_in(emu, public_app(emu), emu.admin.decline_device_code)
    assert result["error"] == "authorization_declined"
    assert "AADSTS70000" in result["error_description"]


def test_an_expired_code_is_expired_token(emu: Emulator) -> None:
    emu.admin.configure(device_code_lifetime_s=1)
    app = public_app(emu)
    flow = app.initiate_device_flow(scopes=[SCOPE])
    time.sleep(1.2)
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": emu.public_client_id, "device_code": flow["device_code"]}
    answer = http(emu).post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data=form)
    assert answer.status_code == 400
    assert answer.json()["error"] == "expired_token"
    assert "AADSTS70020" in answer.json()["error_description"]


def test_polling_faster_than_the_interval_is_told_to_slow_down(emu: Emulator) -> None:
    emu.admin.configure(device_code_interval_s=5)
    start = http(emu).post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/devicecode",
                           data={"client_id": emu.public_client_id, "scope": SCOPE}).json()
    assert start["interval"] == 5 and start["verification_uri"].endswith("/devicelogin")
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": emu.public_client_id, "device_code": start["device_code"]}
    url = f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    assert http(emu).post(url, data=form).json()["error"] == "authorization_pending"
    assert http(emu).post(url, data=form).json()["error"] == "slow_down"


def test_a_confidential_app_cannot_start_a_device_code(emu: Emulator) -> None:
    answer = http(emu).post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/devicecode",
                            data={"client_id": emu.client_id, "scope": SCOPE})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"


def test_the_refresh_token_renews_silently_until_the_sessions_are_revoked(
        emu: Emulator) -> None:
    cache = msal.SerializableTokenCache()
    sign_in(emu, public_app(emu, cache=cache),
            lambda code: emu.admin.approve_device_code(code, emu.alice))
    app = public_app(emu, cache=cache)
    (account,) = app.get_accounts()
    renewed = app.acquire_token_silent([SCOPE], account, force_refresh=True)
    assert renewed and claims(renewed["access_token"])["upn"] == emu.alice
    emu.admin.revoke_user_sessions(emu.alice)
    refused = app.acquire_token_silent_with_error([SCOPE], account, force_refresh=True)
    assert refused and refused["error"] == "invalid_grant"


def test_on_behalf_of_trades_each_users_token_for_their_own_defender_token(
        emu: Emulator) -> None:
    app = confidential_app(emu)
    for user in (emu.alice, emu.carol):
        assertion = emu.admin.user_token(user, audience=emu.client_id)
        result = app.acquire_token_on_behalf_of(assertion, [SCOPE])
        assert claims(result["access_token"])["upn"] == user
        assert claims(result["access_token"])["aud"] == SCOPE.removesuffix("/.default")


def test_on_behalf_of_refuses_a_token_issued_to_another_app(emu: Emulator) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.readwrite_client_id)
    result = confidential_app(emu).acquire_token_on_behalf_of(assertion, [SCOPE])
    assert result["error"] == "invalid_grant" and "AADSTS50013" in result["error_description"]


def test_on_behalf_of_refuses_an_expired_user_token(emu: Emulator) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.client_id, lifetime_s=0)
    time.sleep(1.1)
    result = confidential_app(emu).acquire_token_on_behalf_of(assertion, [SCOPE])
    assert result["error"] == "invalid_grant" and "AADSTS500133" in result["error_description"]


def user_token(emu: Emulator, user: str) -> str:
    assertion = emu.admin.user_token(user, audience=emu.client_id)
    return confidential_app(emu).acquire_token_on_behalf_of(assertion, [SCOPE])["access_token"]


def app_token(emu: Emulator) -> str:
    return confidential_app(emu).acquire_token_for_client([SCOPE])["access_token"]


def test_alice_sees_only_the_finance_machines_of_a_domain(emu: Emulator) -> None:
    path = f"/api/domains/{seed.EVIL_DOMAIN}/machines"
    assert group_names(machines(emu, app_token(emu), path)) == \
        {"Finance", "The-A-Team", "UnassignedGroup"}
    assert group_names(machines(emu, user_token(emu, emu.alice), path)) == {"Finance"}
    assert group_names(machines(emu, user_token(emu, emu.carol), path)) == {"The-A-Team"}
    assert len(machines(emu, user_token(emu, emu.dana), path).json()["value"]) == 3


def test_a_file_and_the_machine_list_are_limited_to_the_users_groups(emu: Emulator) -> None:
    token = user_token(emu, emu.alice)
    listed = machines(emu, token, "/api/machines?$top=10000")
    assert listed.json()["value"] and group_names(listed) == {"Finance"}
    file_answer = machines(emu, token, f"/api/files/{seed.KNOWN_FILE['sha1']}/machines")
    assert file_answer.status_code == 404  # the file's machines are in other groups
    assert machines(emu, token, f"/api/files/{seed.KNOWN_FILE['sha256']}").status_code == 200


def test_bob_without_view_data_gets_403(emu: Emulator) -> None:
    answer = machines(emu, user_token(emu, emu.bob), f"/api/domains/{seed.EVIL_DOMAIN}/machines")
    assert answer.status_code == 403 and "View Data" in answer.json()["error"]["message"]


def test_a_user_token_without_machine_read_gets_403_naming_the_scopes(emu: Emulator) -> None:
    assertion = emu.admin.user_token(emu.alice, audience=emu.noroles_client_id)
    app = confidential_app(emu, emu.noroles_client_id, emu.noroles_client_secret)
    token = app.acquire_token_on_behalf_of(assertion, [SCOPE])["access_token"]
    answer = machines(emu, token, "/api/machines?$top=1")
    assert answer.status_code == 403 and "Machine.Read" in answer.json()["error"]["message"]


GRAPH_SCOPE = "https://graph.microsoft.com/.default"
HUNT = {"Query": "DeviceNetworkEvents | summarize count() by DeviceId", "Timespan": "P30D"}


def hunt(emu: Emulator, user: str, client_id: str | None = None,
         secret: str | None = None) -> requests.Response:
    assertion = emu.admin.user_token(user, audience=client_id or emu.client_id)
    token = confidential_app(emu, client_id, secret).acquire_token_on_behalf_of(
        assertion, [GRAPH_SCOPE])["access_token"]
    return http(emu).post(f"{emu.base_url}/v1.0/security/runHuntingQuery", json=HUNT,
                          headers={"Authorization": f"Bearer {token}"})


def test_a_users_hunting_query_sees_only_the_devices_of_their_groups(emu: Emulator) -> None:
    machines_by_id = {m["id"]: m for m in machines(
        emu, app_token(emu), "/api/machines?$top=10000").json()["value"]}
    devices = {row["DeviceId"] for row in hunt(emu, emu.alice).json()["results"]}
    assert devices and all(machines_by_id[d]["rbacGroupName"] == "Finance" for d in devices)
    everyone = {row["DeviceId"] for row in hunt(emu, emu.dana).json()["results"]}
    assert devices < everyone and everyone - set(machines_by_id)  # dana: the groupless too


def test_hunting_as_a_user_needs_the_scope_and_view_data(emu: Emulator) -> None:
    assert hunt(emu, emu.bob).status_code == 403
    denied = hunt(emu, emu.alice, emu.noroles_client_id, emu.noroles_client_secret)
    assert denied.status_code == 403 and "ThreatHunting.Read.All" in denied.text
