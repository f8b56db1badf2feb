"""The Defender + sign-in emulator, driven only over HTTPS (raw requests and real msal)."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.emulator import AdminError, Emulator, seed
from integration.emulator.seed import (
    CAPPED_DOMAIN,
    DOCS_MACHINE_ID,
    EMPTY_DOMAIN,
    EMPTY_FILE,
    EVIL_DOMAIN,
    IDN_DOMAIN,
    KNOWN_FILE,
    PHISH_DOMAIN,
    UNKNOWN_DOMAIN,
    UNKNOWN_FILE,
)

SCOPE = "https://api.securitycenter.microsoft.com/.default"
RESOURCES = [
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://securitycenter.onmicrosoft.us/windowsatpservice",
]


# ---------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(state_dir=tmp_path_factory.mktemp("emulator")) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").admin.reset()


@pytest.fixture
def http(emu: Emulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE is set here and must not win
    session.verify = emu.ca_path
    yield session
    session.close()


def token_response(http: requests.Session, emu: Emulator, **form: str) -> requests.Response:
    tenant = form.pop("tenant", emu.tenant_id)
    data = {"grant_type": "client_credentials", "client_id": emu.client_id,
            "client_secret": emu.client_secret, "scope": SCOPE, **form}
    return http.post(f"{emu.base_url}/{tenant}/oauth2/v2.0/token", data=data, timeout=5)


def get_token(http: requests.Session, emu: Emulator, **form: str) -> str:
    response = token_response(http, emu, **form)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(http: requests.Session, emu: Emulator, path: str, token: str | None = None,
        **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token is None:
        token = get_token(http, emu)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http.get(f"{emu.base_url}{path}", headers=headers, timeout=kwargs.pop("timeout", 5),
                    **kwargs)


def msal_app(emu: Emulator, http: requests.Session, client_id: str,
             credential: Any) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=f"{emu.base_url}/{emu.tenant_id}",
        instance_discovery=False, http_client=http)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def assert_aadsts(response: requests.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]


def assert_api_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    uuid.UUID(error["target"])
    return error


def client_assertion(emu: Emulator, *, key: Any = None, audience: str | None = None,
                     issuer: str | None = None, lifetime_s: int = 600) -> str:
    pem = Path(emu.client_cert_path).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    if key is None:
        key = serialization.load_pem_private_key(pem, emu.client_cert_password.encode())
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(
        cert.public_bytes(serialization.Encoding.DER)).digest()).decode()
    now = int(time.time())
    claims = {"aud": audience or f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token",
              "iss": issuer or emu.cert_client_id, "sub": issuer or emu.cert_client_id,
              "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime_s}
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": thumbprint})


# ---------------------------------------------------------------------- sign-in

@pytest.mark.parametrize("path", ["v2.0/.well-known/openid-configuration",
                                  ".well-known/openid-configuration"])
def test_discovery_document_names_the_v2_token_endpoint(emu, http, path):
    doc = http.get(f"{emu.base_url}/{emu.tenant_id}/{path}", timeout=5).json()
    assert doc["token_endpoint"] == f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].startswith(emu.base_url)
    assert http.get(doc["jwks_uri"], timeout=5).json()["keys"][0]["kty"] == "RSA"


def test_discovery_for_unknown_tenant_is_aadsts90002(emu, http):
    response = http.get(f"{emu.base_url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert_aadsts(response, 400, "invalid_tenant", 90002)


def test_msal_gets_token_with_client_secret(emu, http):
    result = msal_app(emu, http, emu.client_id, emu.client_secret).acquire_token_for_client(
        [SCOPE])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    claims = claims_of(result["access_token"])
    assert claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert claims["roles"] == ["Machine.Read.All"]
    assert claims["tid"] == emu.tenant_id and claims["appid"] == emu.client_id
    assert claims["exp"] - claims["iat"] == 3599


def test_msal_gets_token_with_certificate_thumbprint_rs256(emu, http):
    pem = Path(emu.client_cert_path).read_text()
    credential = {"private_key": pem, "thumbprint": emu.client_cert_thumbprint,
                  "passphrase": emu.client_cert_password}
    result = msal_app(emu, http, emu.cert_client_id, credential).acquire_token_for_client(
        [SCOPE])
    assert claims_of(result["access_token"])["appid"] == emu.cert_client_id


def test_msal_gets_token_with_certificate_pfx_ps256(emu, http):
    credential = {"private_key_pfx_path": emu.client_cert_pfx_path,
                  "passphrase": emu.client_cert_password}
    result = msal_app(emu, http, emu.cert_client_id, credential).acquire_token_for_client(
        [SCOPE])
    assert claims_of(result["access_token"])["appidacr"] == "2"


def test_wrong_secret_is_invalid_client_7000215(emu, http):
    assert_aadsts(token_response(http, emu, client_secret="wrong"), 401, "invalid_client",
                  7000215)


def test_msal_returns_the_aadsts_error_as_data(emu, http):
    result = msal_app(emu, http, emu.client_id, "wrong").acquire_token_for_client([SCOPE])
    assert result["error"] == "invalid_client" and 7000215 in result["error_codes"]


def test_unknown_client_is_unauthorized_client_700016(emu, http):
    assert_aadsts(token_response(http, emu, client_id=str(uuid.uuid4())), 400,
                  "unauthorized_client", 700016)


def test_unknown_tenant_is_invalid_request_90002(emu, http):
    assert_aadsts(token_response(http, emu, tenant=str(uuid.uuid4())), 400, "invalid_request",
                  90002)


def test_token_endpoint_accepts_client_secret_basic(emu, http):
    response = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token",
                         auth=(emu.client_id, emu.client_secret), timeout=5,
                         data={"grant_type": "client_credentials", "scope": SCOPE})
    assert response.status_code == 200, response.text


def test_unknown_resource_is_invalid_resource_500011(emu, http):
    assert_aadsts(token_response(http, emu, scope="https://example.invalid/.default"), 400,
                  "invalid_resource", 500011)


@pytest.mark.parametrize("problem", ["foreign key", "wrong audience", "expired", "wrong issuer"])
def test_bad_client_assertion_is_invalid_client_700027(emu, http, problem):
    options: dict[str, Any] = {
        "foreign key": {"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
        "wrong audience": {"audience": "https://login.example/token"},
        "expired": {"lifetime_s": -3600},
        "wrong issuer": {"issuer": emu.client_id},
    }[problem]
    form = {"client_id": emu.cert_client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(emu, **options)}
    response = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", timeout=5,
                         data={"grant_type": "client_credentials", "scope": SCOPE, **form})
    assert_aadsts(response, 401, "invalid_client", 700027)


def test_hand_made_rs256_assertion_is_accepted(emu, http):
    form = {"grant_type": "client_credentials", "scope": SCOPE, "client_id": emu.cert_client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(emu)}
    response = http.post(f"{emu.base_url}/{emu.tenant_id}/oauth2/v2.0/token", data=form)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_defender_resource_gives_a_working_token(emu, http, resource):
    token = get_token(http, emu, scope=f"{resource}/.default")
    assert claims_of(token)["aud"] == resource
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 200


# ---------------------------------------------------------------------- API authorization

def test_api_without_token_is_401(emu, http):
    assert_api_error(api(http, emu, "/api/machines", token=""), 401, "Unauthorized")


def test_api_with_forged_token_is_401(emu, http):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**claims_of(get_token(http, emu))}, key, algorithm="RS256")
    assert_api_error(api(http, emu, "/api/machines", forged), 401, "Unauthorized")


def test_expired_token_is_401(emu, http):
    emu.admin.configure(token_lifetime_s=0)
    assert_api_error(api(http, emu, "/api/machines"), 401, "Unauthorized")


def test_revoked_token_is_401_and_new_tokens_work(emu, http):
    old = get_token(http, emu)
    emu.admin.revoke_tokens()
    assert_api_error(api(http, emu, "/api/machines", old), 401, "Unauthorized")
    assert api(http, emu, "/api/machines?$top=1").status_code == 200


def test_app_without_machine_roles_is_403(emu, http):
    token = get_token(http, emu, client_id=emu.noroles_client_id,
                      client_secret=emu.noroles_client_secret)
    error = assert_api_error(api(http, emu, "/api/machines", token), 403, "Forbidden")
    assert error["message"] == ("Missing application roles. API required roles: "
                                "Machine.Read.All,Machine.ReadWrite.All")


def test_machine_readwrite_role_is_enough(emu, http):
    token = get_token(http, emu, client_id=emu.readwrite_client_id,
                      client_secret=emu.readwrite_client_secret)
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 200


def test_token_for_another_api_is_403(emu, http):
    token = get_token(http, emu, scope="https://graph.microsoft.com/.default")
    assert_api_error(api(http, emu, "/api/machines", token), 403, "Forbidden")


# ---------------------------------------------------------------------- Defender API

def test_domain_machines_lists_the_seeded_machines(emu, http):
    body = api(http, emu, f"/api/domains/{EVIL_DOMAIN}/machines").json()
    assert body["@odata.context"] == f"{emu.base_url}/api/$metadata#Machines"
    assert len(body["value"]) == 3
    assert "High" in {m["riskScore"] for m in body["value"]}
    assert DOCS_MACHINE_ID in {m["id"] for m in body["value"]}


def test_domain_segment_is_percent_decoded(emu, http):
    body = api(http, emu, "/api/domains/xn--bcher-kva%2Eexample/machines").json()
    assert len(body["value"]) == 2


@pytest.mark.parametrize("domain", ["bad domain", "-x.example", "a..example",
                                    "b%C3%BCcher.example", "a%2Fb.example", "x" * 64 + ".test"])
def test_invalid_domain_is_400(emu, http, domain):
    assert_api_error(api(http, emu, f"/api/domains/{domain}/machines"), 400,
                     "InvalidDomainName")


@pytest.mark.parametrize("domain", [UNKNOWN_DOMAIN, EMPTY_DOMAIN])
def test_domain_without_machines_is_404_by_default(emu, http, domain):
    assert_api_error(api(http, emu, f"/api/domains/{domain}/machines"), 404, "NotFound")


@pytest.mark.parametrize("domain", [UNKNOWN_DOMAIN, EMPTY_DOMAIN])
def test_domain_without_machines_is_empty_list_in_empty_mode(emu, http, domain):
    emu.admin.configure(not_found="empty")
    response = api(http, emu, f"/api/domains/{domain}/machines")
    assert response.status_code == 200 and response.json()["value"] == []


def test_domain_answer_is_capped(emu, http):
    assert len(api(http, emu, f"/api/domains/{CAPPED_DOMAIN}/machines").json()["value"]) == 500
    emu.admin.configure(domain_cap=20)
    assert len(api(http, emu, f"/api/domains/{CAPPED_DOMAIN}/machines").json()["value"]) == 20


def test_file_machines_accepts_sha1_in_any_case(emu, http):
    for sha1 in (KNOWN_FILE["sha1"], KNOWN_FILE["sha1"].upper()):
        assert len(api(http, emu, f"/api/files/{sha1}/machines").json()["value"]) == 4


@pytest.mark.parametrize("value", [KNOWN_FILE["sha256"], KNOWN_FILE["md5"], "z" * 40, "abc"])
def test_file_machines_rejects_anything_but_sha1(emu, http, value):
    assert_api_error(api(http, emu, f"/api/files/{value}/machines"), 400, "InvalidHashValue")


@pytest.mark.parametrize(("mode", "status"), [("404", 404), ("empty", 200)])
@pytest.mark.parametrize("sha1", [UNKNOWN_FILE["sha1"], EMPTY_FILE["sha1"]])
def test_file_without_machines_follows_not_found_mode(emu, http, mode, status, sha1):
    emu.admin.configure(not_found=mode)
    response = api(http, emu, f"/api/files/{sha1}/machines")
    assert response.status_code == status
    if status == 200:
        assert response.json()["value"] == []


@pytest.mark.parametrize("kind", ["sha1", "sha256", "md5"])
def test_file_info_resolves_every_hash_kind(emu, http, kind):
    body = api(http, emu, f"/api/files/{KNOWN_FILE[kind]}").json()
    assert {k: body[k] for k in ("sha1", "sha256", "md5")} == KNOWN_FILE
    for field in ("globalPrevalence", "size", "isPeFile", "signer", "determinationType"):
        assert field in body


def test_unknown_file_info_is_404_even_in_empty_mode(emu, http):
    emu.admin.configure(not_found="empty")
    assert_api_error(api(http, emu, f"/api/files/{UNKNOWN_FILE['sha256']}"), 404, "NotFound")


def test_malformed_file_hash_is_400(emu, http):
    assert_api_error(api(http, emu, "/api/files/not-a-hash"), 400, "InvalidHashValue")


def test_machines_list_honours_top_and_skip(emu, http):
    token = get_token(http, emu)
    first = api(http, emu, "/api/machines", token, params={"$top": 5}).json()["value"]
    second = api(http, emu, "/api/machines", token, params={"$top": 2, "$skip": 3}).json()
    assert [m["id"] for m in second["value"]] == [m["id"] for m in first[3:5]]


def test_machines_top_over_10000_is_400(emu, http):
    assert_api_error(api(http, emu, "/api/machines", params={"$top": 10001}), 400, "BadRequest")


def test_paging_follows_next_links_to_the_whole_answer(emu, http):
    token = get_token(http, emu)
    whole = api(http, emu, f"/api/domains/{PHISH_DOMAIN}/machines", token).json()["value"]
    emu.admin.configure(page_size=5)
    body = api(http, emu, f"/api/domains/{PHISH_DOMAIN}/machines", token).json()
    pages = [body]
    while "@odata.nextLink" in pages[-1]:
        link = pages[-1]["@odata.nextLink"]
        assert link.startswith(f"{emu.base_url}/api/domains/") and "$skiptoken=" in link
        pages.append(http.get(link, headers={"Authorization": f"Bearer {token}"}).json())
    assert [len(p["value"]) for p in pages] == [5, 5, 2]
    assert [m["id"] for p in pages for m in p["value"]] == [m["id"] for m in whole]


def test_paging_stops_at_the_domain_cap(emu, http):
    emu.admin.configure(page_size=200)
    token = get_token(http, emu)
    sizes, link = [], f"{emu.base_url}/api/domains/{CAPPED_DOMAIN}/machines"
    while link:
        body = http.get(link, headers={"Authorization": f"Bearer {token}"}).json()
        sizes.append(len(body["value"]))
        link = body.get("@odata.nextLink")
    assert sizes == [200, 200, 100]


def test_body_is_gzipped_only_when_accepted(emu, http):
    token = get_token(http, emu)
    path = f"/api/domains/{PHISH_DOMAIN}/machines"
    zipped = api(http, emu, path, token, headers={"Accept-Encoding": "gzip"}, stream=True)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(zipped.raw.read()))["value"]) == 12
    plain = api(http, emu, path, token, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert int(plain.headers["Content-Length"]) == len(plain.content)


def test_latency_is_served_concurrently(emu, http):
    token = get_token(http, emu)
    emu.admin.configure(latency_s=0.4)
    started = time.monotonic()

    def call(_: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            return api(session, emu, "/api/machines?$top=1", token, verify=emu.ca_path).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, range(16)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 16
    assert 0.4 <= elapsed < 1.6


# ---------------------------------------------------------------------- rate limiting

def test_rate_limit_answers_429_with_retry_after(emu, http):
    emu.admin.configure(rate_limit={"per_minute": 3, "per_hour": 100, "window_scale": 0.05})
    token = get_token(http, emu)
    statuses = [api(http, emu, "/api/machines?$top=1", token).status_code for _ in range(3)]
    throttled = api(http, emu, "/api/machines?$top=1", token)
    assert statuses == [200, 200, 200]
    assert_api_error(throttled, 429, "TooManyRequests")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 3


def test_rate_limit_is_per_call_type_and_per_app(emu, http):
    emu.admin.configure(rate_limit={"per_minute": 1, "per_hour": 100, "window_scale": 0.05})
    token = get_token(http, emu)
    other_app = get_token(http, emu, client_id=emu.readwrite_client_id,
                          client_secret=emu.readwrite_client_secret)
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 200
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 429
    assert api(http, emu, f"/api/domains/{EVIL_DOMAIN}/machines", token).status_code == 200
    assert api(http, emu, "/api/machines?$top=1", other_app).status_code == 200


def test_rate_limit_hour_window_gives_longer_retry_after(emu, http):
    emu.admin.configure(rate_limit={"per_minute": 100, "per_hour": 2, "window_scale": 0.05})
    token = get_token(http, emu)
    for _ in range(2):
        api(http, emu, "/api/machines?$top=1", token)
    throttled = api(http, emu, "/api/machines?$top=1", token)
    assert throttled.status_code == 429
    assert 3 < int(throttled.headers["Retry-After"]) <= 180


def test_rate_limit_slot_frees_after_retry_after(emu, http):
    emu.admin.configure(rate_limit={"per_minute": 1, "per_hour": 100, "window_scale": 0.02})
    token = get_token(http, emu)
    api(http, emu, "/api/machines?$top=1", token)
    throttled = api(http, emu, "/api/machines?$top=1", token)
    time.sleep(int(throttled.headers["Retry-After"]))
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 200


# ---------------------------------------------------------------------- faults

def test_fault_script_runs_in_order_then_serves_normally(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("^/api/machines$", 503, {"status": 429, "headers": {"Retry-After": "2"}})
    first = api(http, emu, "/api/machines?$top=1", token)
    second = api(http, emu, "/api/machines?$top=1", token)
    assert_api_error(first, 503, "ServiceUnavailable")
    assert second.status_code == 429 and second.headers["Retry-After"] == "2"
    assert api(http, emu, "/api/machines?$top=1", token).status_code == 200


def test_fault_drop_raises_connection_error(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", "drop")
    with pytest.raises(requests.ConnectionError):
        api(http, emu, "/api/machines?$top=1", token)


def test_fault_truncate_raises_chunked_encoding_error(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", "truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api(http, emu, "/api/machines?$top=5", token)


def test_fault_html_serves_a_front_door_error_page(emu, http):
    emu.admin.add_fault("/api/", "html")
    response = api(http, emu, "/api/machines")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text


def test_fault_expire_token_answers_like_a_real_expiry(emu, http):
    emu.admin.add_fault("/api/", "expire_token")
    injected = api(http, emu, "/api/machines")
    emu.admin.configure(token_lifetime_s=0)
    real = api(http, emu, "/api/machines")
    assert injected.status_code == real.status_code == 401
    assert injected.json()["error"]["message"] == real.json()["error"]["message"]


def test_fault_delay_makes_the_client_time_out(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", {"delay_s": 0.6})
    with pytest.raises(requests.exceptions.ReadTimeout):
        api(http, emu, "/api/machines?$top=1", token, timeout=0.2)


def test_fault_pass_lets_one_request_through(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", 500, "pass", 500)
    statuses = [api(http, emu, "/api/machines?$top=1", token).status_code for _ in range(4)]
    assert statuses == [500, 200, 500, 200]


def test_fault_repeat_last_repeats_forever(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", 200, 504, repeat_last=True)
    statuses = [api(http, emu, "/api/machines?$top=1", token).status_code for _ in range(4)]
    assert statuses == [200, 504, 504, 504]


def test_fault_method_filter_spares_other_methods(emu, http):
    emu.admin.add_fault("/oauth2/", 503, method="GET")
    assert token_response(http, emu).status_code == 200


def test_fault_on_token_endpoint_gives_an_aadsts_error(emu, http):
    emu.admin.add_fault("/oauth2/v2.0/token$", 503)
    assert_aadsts(token_response(http, emu), 503, "temporarily_unavailable", 90033)


def test_fault_body_may_be_a_string_or_json(emu, http):
    token = get_token(http, emu)
    emu.admin.add_fault("/api/", {"body": "not json"}, {"status": 500, "body": {"oops": 1}})
    assert api(http, emu, "/api/machines", token).text == "not json"
    assert api(http, emu, "/api/machines", token).json() == {"oops": 1}


def test_invalid_fault_is_refused(emu):
    with pytest.raises(AdminError, match="unknown key"):
        emu.admin.add_fault("/api/", {"explode": True})


# ---------------------------------------------------------------------- admin

def test_request_log_records_sign_in_and_api_calls(emu, http):
    token = get_token(http, emu)
    api(http, emu, "/api/machines?$top=1", token, headers={"User-Agent": "probe/1"})
    emu.admin.settings()  # admin calls are not logged
    token_call, api_call = emu.admin.token_calls()[0], emu.admin.api_calls()[0]
    assert token_call["client_id"] == emu.client_id and token_call["status"] == 200
    assert token_call["authorization"] is False
    assert api_call["path"] == "/api/machines" and api_call["query"] == "$top=1"
    assert api_call["client_id"] == emu.client_id and api_call["authorization"] is True
    assert api_call["user_agent"] == "probe/1" and api_call["seq"] > token_call["seq"]
    assert len(emu.admin.requests_log()) == 2


def test_clear_log_empties_the_log(emu, http):
    get_token(http, emu)
    emu.admin.clear_log()
    assert emu.admin.requests_log() == []


def test_reset_restores_the_start_state(emu, http):
    token = get_token(http, emu)
    emu.admin.configure(page_size=1, not_found="empty")
    emu.admin.add_fault("/api/", 500)
    emu.admin.revoke_tokens()
    emu.admin.load_dataset({"machines": []})
    emu.admin.reset()
    assert emu.admin.settings()["page_size"] is None
    assert emu.admin.faults() == [] and emu.admin.requests_log() == []
    assert emu.admin.dataset_summary()["machines"] == 800
    assert api(http, emu, f"/api/domains/{EVIL_DOMAIN}/machines", token).status_code == 200


def test_load_dataset_replaces_the_data(emu, http):
    machine = {"id": "ab" * 20, "computerDnsName": "only.contoso.com"}
    summary = emu.admin.load_dataset({"machines": [machine],
                                      "domains": {"Only.Example": [machine["id"]]}})
    assert summary == {"machines": 1, "domains": {"only.example": 1}, "files": []}
    body = api(http, emu, "/api/domains/only.example/machines").json()
    assert body["value"] == [machine]


def test_dataset_naming_unknown_machines_is_refused(emu):
    with pytest.raises(AdminError, match="unknown machine"):
        emu.admin.load_dataset({"machines": [], "domains": {"x.example": ["nope"]}})


def test_invalid_setting_is_refused(emu):
    with pytest.raises(AdminError, match="not_found"):
        emu.admin.configure(not_found="maybe")


def test_seed_has_the_named_domains_and_files(emu):
    summary = emu.admin.dataset_summary()
    assert summary["machines"] == 800
    domains = summary["domains"]
    assert (domains[EVIL_DOMAIN], domains[PHISH_DOMAIN], domains[CAPPED_DOMAIN],
            domains[IDN_DOMAIN], domains[EMPTY_DOMAIN]) == (3, 12, 700, 2, 0)
    assert 60 <= len(domains) <= 70 and UNKNOWN_DOMAIN not in domains
    files = {f["sha1"]: f for f in summary["files"]}
    assert files[KNOWN_FILE["sha1"]] == {**KNOWN_FILE, "machines": 4}
    assert files[EMPTY_FILE["sha1"]]["machines"] == 0
    assert UNKNOWN_FILE["sha1"] not in files


def test_seed_machines_cover_every_platform_and_null_field(emu, http):
    machines = api(http, emu, "/api/machines").json()["value"]
    platforms = {m.get("osPlatform") for m in machines}
    assert {"Windows10", "Windows11", "WindowsServer2016", "WindowsServer2019",
            "WindowsServer2022", "Linux", "macOS", "Android", "iOS"} <= platforms
    for field in ("riskScore", "osBuild", "aadDeviceId", "exposureLevel", "vmMetadata"):
        assert any(field in m and m[field] is None for m in machines), field
    assert any(isinstance(m.get("rbacGroupId"), str) for m in machines)
    assert any("agentVersion" in m for m in machines)
    assert any(set(m) == {"id", "computerDnsName"} for m in machines)
    docs = next(m for m in machines if m["id"] == DOCS_MACHINE_ID)
    assert docs["firstSeen"] == "2018-08-02T14:55:03.7791856Z"
    assert (docs["rbacGroupId"], docs["rbacGroupName"]) == (140, "The-A-Team")


def test_seed_is_deterministic():
    assert seed.build_dataset() == seed.build_dataset()


# ---------------------------------------------------------------------- lifecycle

def test_bad_constructor_setting_fails_at_once(tmp_path):
    with pytest.raises(ValueError, match="not_found"):
        Emulator(state_dir=tmp_path, not_found="sometimes")


def test_config_is_a_ready_plugin_configuration(emu):
    config = emu.config(timeout_s=5)
    assert config["api_base_url"] == config["authority_host"] == emu.base_url
    assert config["ca_bundle"] == emu.ca_path and config["timeout_s"] == 5
    assert config["client_secret"] == emu.client_secret


def test_tls_needs_the_emulator_ca(emu):
    with requests.Session() as session:
        session.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{emu.base_url}/_admin/health", verify=True, timeout=5)


def test_constructor_settings_and_yaml_dataset_survive_reset(tmp_path):
    machines = [{"id": f"{i:040x}", "computerDnsName": f"m{i}.contoso.com"} for i in range(3)]
    dataset_file = tmp_path / "dataset.yaml"
    dataset_file.write_text(yaml.safe_dump(
        {"machines": machines, "domains": {"a.example": [m["id"] for m in machines]}}))
    with Emulator(state_dir=tmp_path / "state", dataset=dataset_file, page_size=2,
                  not_found="empty") as emulator, requests.Session() as http:
        http.trust_env, http.verify = False, emulator.ca_path
        emulator.admin.reset()
        assert emulator.admin.settings()["page_size"] == 2
        assert api(http, emulator, "/api/domains/b.example/machines").json()["value"] == []
        body = api(http, emulator, "/api/domains/a.example/machines").json()
        assert len(body["value"]) == 2 and "@odata.nextLink" in body


def test_restart_reuses_the_ca_and_stop_cuts_keepalive_connections(tmp_path):
    with Emulator(state_dir=tmp_path) as first:
        ca = Path(first.ca_path).read_bytes()
        session = requests.Session()
        session.trust_env, session.verify = False, first.ca_path
        assert session.get(f"{first.base_url}/_admin/health", timeout=5).ok
    with pytest.raises(requests.ConnectionError):
        session.get(f"{first.base_url}/_admin/health", timeout=5)
    with Emulator(state_dir=tmp_path) as second:
        assert Path(second.ca_path).read_bytes() == ca


def test_python_m_runs_the_emulator_until_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "integration.emulator", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        base_url = process.stdout.readline().split()[-1]
        config = yaml.safe_load((tmp_path / "emulator-config.yaml").read_text())
        assert config["api_base_url"] == base_url
        with requests.Session() as session:
            session.trust_env = False
            assert session.get(f"{base_url}/_admin/health", verify=config["ca_bundle"],
                               timeout=5).ok
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _start_emulator_process(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.Popen([sys.executable, "-m", "integration", "emulator", "--state-dir",
                             str(state_dir), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_a_restarted_emulator_keeps_its_config_path_and_port(tmp_path: Path) -> None:
    urls = []
    for _ in range(2):
        process = _start_emulator_process(tmp_path)
        try:
            urls.append(process.stdout.readline().split()[-1])  # type: ignore[union-attr]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        config = yaml.safe_load((tmp_path / "emulator-config.yaml").read_text())  # kept
        assert config["api_base_url"] == urls[-1]
    assert urls[0] == urls[1]


@pytest.mark.parametrize("option", [["--page-size", "0"], ["--dataset", "/nonexistent.yaml"]])
def test_a_bad_emulator_option_is_one_line_and_exit_2(tmp_path: Path, option: list[str]) -> None:
    process = _start_emulator_process(tmp_path, *option)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
