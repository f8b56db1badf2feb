"""The emulator's state and rules, with no HTTP in sight (moto's "backend").

`server.py` turns requests into calls on `Backend` and turns its answers and its two
exception types (`SignInError`, `ApiError`) into HTTP responses. Every public method is
thread-safe: the server answers many requests at once.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import idna
import jwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.emulator import delegated, seed
from integration.emulator.errors import ApiError
from integration.emulator.security import SecurityStore
from integration.emulator.seed import TENANT_DOMAIN, TENANT_ID

CLIENT_ID = "eb246f8a-6ba4-4c84-9004-d08e9f51215d"
CLIENT_SECRET = "Emu8Q~PUH1nl1t1R2ENZDByc4lEb5_D620A31ja5Q"  # fake, local-only, printable
CERT_CLIENT_ID = "96d7ca2b-5c94-45a1-9670-05ed214a26c6"
NOROLES_CLIENT_ID = "c412d1b6-7e1f-4b8f-970c-0dc2ac7b41b5"
NOROLES_CLIENT_SECRET = "Emu8Q~noRolesSecret-0000000000000000000"
READWRITE_CLIENT_ID = "4a029bac-c12d-4fe2-b458-c03b00a86f66"
READWRITE_CLIENT_SECRET = "Emu8Q~readWriteSecret-00000000000000000"
# Managed identities of the Azure resource the plugin is pretended to run on (IMDS and App
# Service token endpoints): one system-assigned, one user-assigned (by client or resource id).
MI_SYSTEM_CLIENT_ID = "639530ee-f779-4a70-9900-0056be7b8a91"
MI_USER_CLIENT_ID = "921412d7-21dc-4625-8c1d-5afbc08649b5"
MI_USER_RESOURCE_ID = ("/subscriptions/00000000-0000-4000-8000-0000000000e1/resourceGroups/soar"
                       "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mde-enrich")
MI_IDENTITY_HEADER = "emulator-identity-header"  # App Service's IDENTITY_HEADER value
# Public clients (no credential) for analysts signing in as themselves with a device code:
# one consented for Defender's Machine.Read, one only for Alert.Read.
PUBLIC_CLIENT_ID = "0bd2c4a1-3f1e-4c55-8a9e-6d1b2f3c4d5e"
PUBLIC_NOSCOPE_CLIENT_ID = "7f3e9b20-8c4d-4e1a-9b6f-2a5c8d7e1f30"

ACCEPTED_RESOURCES = (
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://securitycenter.onmicrosoft.us/windowsatpservice",
    "fc780465-2017-40d4-a0c5-307022471b92",  # the WindowsDefenderATP app id, also a valid scope
)
# Real resources of every tenant that are not Defender: asking for them by mistake gets a
# token (as in Entra ID) that the Defender API then refuses with 403.
OTHER_RESOURCES = ("https://graph.microsoft.com", "https://management.azure.com")
# Microsoft Graph's advanced hunting (runHuntingQuery) wants this role on the Graph resource.
GRAPH_RESOURCE = "https://graph.microsoft.com"
HUNTING_ROLE = "ThreatHunting.Read.All"
# Graph's security alerts and incidents (emulator/security.py): the main app may comment,
# the certificate app may only read (a write-back without the permission is a warning).
SECURITY_READ_WRITE = ("SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All")
SECURITY_READ = ("SecurityAlert.Read.All", "SecurityIncident.Read.All")
MACHINE_ROLES = frozenset({"Machine.Read.All", "Machine.ReadWrite.All"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_GRANTS = frozenset({"client_credentials", "refresh_token", delegated.DEVICE_CODE_GRANT,
                     delegated.JWT_BEARER_GRANT})
CALL_TYPES = ("domain_machines", "file_machines", "file_info", "machines_list")
FAULT_KEYS = frozenset({"status", "headers", "body", "delay_s", "drop", "truncate", "html",
                        "expire_token", "pass"})


class SignInError(Exception):
    """A token endpoint failure, shaped like Entra ID's AADSTS errors."""

    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(f"AADSTS{code}: {description}")
        self.status, self.error, self.code, self.description = status, error, code, description


class TokenExpired(ApiError):
    """401 for an expired token; the `expire_token` fault answers exactly this."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "The access token has expired.",
                         {"WWW-Authenticate": 'Bearer error="invalid_token", '
                                              'error_description="The access token expired"'})


# --------------------------------------------------------------------------- settings

@dataclasses.dataclass(frozen=True)
class RateLimit:
    per_minute: int = 100
    per_hour: int = 1500
    window_scale: float = 1.0  # shortens both windows so tests need not wait a minute


@dataclasses.dataclass(frozen=True)
class Settings:
    page_size: int | None = None
    not_found: str = "404"  # "404" or "empty": real tenants have been seen doing both
    latency_s: float = 0.0
    token_lifetime_s: int = 3599
    domain_cap: int = 500
    rate_limit: RateLimit | None = None
    device_code_lifetime_s: int = 900
    device_code_interval_s: int = 5  # Entra's polling interval

    def updated(self, changes: Mapping[str, Any]) -> Settings:
        """A copy with `changes` applied; ValueError names the offending key."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = dataclasses.asdict(self)
        values["rate_limit"] = self.rate_limit
        for key, value in changes.items():
            values[key] = _check_setting(key, value)
        return Settings(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_setting(key: str, value: Any) -> Any:
    def number(v: Any, minimum: float, integer: bool = False) -> Any:
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or v < minimum:
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{key} must be {kind} >= {minimum}, got {v!r}")
        return v

    if key == "page_size":
        return None if value is None else number(value, 1, integer=True)
    if key == "not_found":
        value = "404" if value == 404 else value  # a bare number, as YAML would give it
        if value not in ("404", "empty"):
            raise ValueError(f'not_found must be "404" or "empty", got {value!r}')
        return value
    if key == "latency_s":
        return float(number(value, 0))
    if key in ("token_lifetime_s", "domain_cap", "device_code_lifetime_s",
               "device_code_interval_s"):
        return number(value, 1 if key == "domain_cap" else 0, integer=True)
    # rate_limit
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"per_minute", "per_hour", "window_scale"}:
        raise ValueError("rate_limit must be null or {per_minute, per_hour, window_scale}")
    limit = RateLimit(**value)
    number(limit.per_minute, 1, integer=True)
    number(limit.per_hour, 1, integer=True)
    if number(limit.window_scale, 0) == 0:
        raise ValueError("rate_limit.window_scale must be > 0")
    return limit


# --------------------------------------------------------------------------- dataset

_HEX = re.compile(r"[0-9a-f]+")


def load_dataset_source(
    source: Mapping[str, Any] | str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The dataset dict for `Emulator(dataset=...)`: a dict, a YAML/JSON file, or the seed."""
    if source is None:
        return seed.build_dataset()
    if isinstance(source, Mapping):
        return dict(source)
    text = Path(source).read_text(encoding="utf-8")
    data = yaml.safe_load(text)  # YAML is a superset of JSON
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a dataset file must hold a mapping")
    return data


class Dataset:
    """A validated, indexed, read-only view of a dataset dict."""

    def __init__(self, raw: Mapping[str, Any]):
        machines = raw.get("machines") or []
        if not isinstance(machines, list) or not all(
            isinstance(m, dict) and isinstance(m.get("id"), str) for m in machines
        ):
            raise ValueError("dataset.machines must be a list of objects, each with a string id")
        self.machines: list[dict[str, Any]] = machines
        self._by_id = {m["id"]: m for m in machines}
        self._domains: dict[str, list[dict[str, Any]]] = {}
        for name, ids in (raw.get("domains") or {}).items():
            self._domains[normalize_domain(str(name))] = self._resolve(ids, f"domains.{name}")
        self._files: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._file_list: list[dict[str, Any]] = []
        for index, entry in enumerate(raw.get("files") or []):
            where = f"files[{index}]"
            if not isinstance(entry, dict) or not _is_hex(entry.get("sha1"), 40):
                raise ValueError(f"{where} must be an object with a 40-hex sha1")
            info = {k: v for k, v in entry.items() if k != "machines"}
            for kind, length in (("sha1", 40), ("sha256", 64), ("md5", 32)):
                if info.get(kind) is not None:
                    if not _is_hex(info[kind], length):
                        raise ValueError(f"{where}.{kind} is not {length} hex digits")
                    info[kind] = info[kind].lower()
            record = (info, self._resolve(entry.get("machines") or [], f"{where}.machines"))
            self._file_list.append(info)
            for kind in ("sha1", "sha256", "md5"):
                if info.get(kind):
                    self._files[info[kind]] = record
        # Advanced hunting's event tables (Graph's runHuntingQuery), with the moment `ago()`
        # counts from: a seeded dataset's own "now", so its events stay in the window.
        hunting = raw.get("hunting") or {}
        tables = hunting.get("tables") if isinstance(hunting, dict) else None
        if not isinstance(tables, (dict, type(None))) or not all(
                isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
                for rows in (tables or {}).values()):
            raise ValueError("dataset.hunting must be {reference_now, tables: {name: [rows]}}")
        self.hunting_tables: dict[str, list[dict[str, Any]]] = dict(tables or {})
        self.hunting_now: str | None = hunting.get("reference_now")

    def _resolve(self, ids: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(ids, list):
            raise ValueError(f"{where} must be a list of machine ids")
        missing = [i for i in ids if i not in self._by_id]
        if missing:
            raise ValueError(f"{where} names unknown machine id(s): {missing[:3]}")
        return [self._by_id[i] for i in ids]

    def domain_machines(self, domain: str) -> list[dict[str, Any]] | None:
        return self._domains.get(normalize_domain(domain))

    def file_machines(self, sha1: str) -> list[dict[str, Any]] | None:
        record = self._files.get(sha1.lower())
        return record[1] if record and record[0]["sha1"] == sha1.lower() else None

    def file_info(self, file_hash: str) -> dict[str, Any] | None:
        record = self._files.get(file_hash.lower())
        return record[0] if record else None

    def machine(self, machine_id: str) -> dict[str, Any] | None:
        return self._by_id.get(machine_id.lower()) or self._by_id.get(machine_id)

    def summary(self) -> dict[str, Any]:
        return {
            "machines": len(self.machines),
            "domains": {name: len(ms) for name, ms in self._domains.items()},
            "files": [{"sha1": info["sha1"], "sha256": info.get("sha256"),
                       "md5": info.get("md5"), "machines": len(self._files[info["sha1"]][1])}
                      for info in self._file_list],
        }


def normalize_domain(domain: str) -> str:
    name = domain.strip().lower().removesuffix(".")
    if not name.isascii():
        # Dataset files may name IDN domains in Unicode; Defender is asked in A-labels.
        # An invalid name stays as it is, and unmatched: requests arrive ASCII-only.
        with contextlib.suppress(idna.IDNAError):
            name = idna.encode(name, uts46=True).decode("ascii")
    return name


def _is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and bool(_HEX.fullmatch(value.lower()))


# --------------------------------------------------------------------------- apps & tokens

@dataclasses.dataclass(frozen=True)
class App:
    client_id: str
    roles: tuple[str, ...]
    secret: str | None = None
    certificate: x509.Certificate | None = None
    graph_roles: tuple[str, ...] = ()  # application roles on Microsoft Graph
    delegated: tuple[str, ...] = ()  # delegated permissions on Defender, consented
    graph_delegated: tuple[str, ...] = ()  # delegated permissions on Microsoft Graph
    public: bool = False  # "Allow public client flows": device code without a credential

    @property
    def object_id(self) -> str:
        # The service principal's object id: stable per app, distinct from the client id.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{self.client_id}"))


def default_apps(client_certificate: x509.Certificate) -> dict[str, App]:
    apps = [
        App(CLIENT_ID, ("Machine.Read.All",), secret=CLIENT_SECRET,
            graph_roles=(HUNTING_ROLE, *SECURITY_READ_WRITE), delegated=("Machine.Read",),
            graph_delegated=(HUNTING_ROLE,)),
        App(CERT_CLIENT_ID, ("Machine.Read.All",), certificate=client_certificate,
            graph_roles=(HUNTING_ROLE, *SECURITY_READ)),
        App(NOROLES_CLIENT_ID, ("Alert.Read.All",), secret=NOROLES_CLIENT_SECRET,
            delegated=("Alert.Read",)),
        App(PUBLIC_CLIENT_ID, (), delegated=("Machine.Read", "User.Read"),
            graph_delegated=(HUNTING_ROLE,), public=True),
        App(PUBLIC_NOSCOPE_CLIENT_ID, (), delegated=("Alert.Read",), public=True),
        App(READWRITE_CLIENT_ID, ("Machine.ReadWrite.All",), secret=READWRITE_CLIENT_SECRET),
    ]
    return {app.client_id: app for app in apps}


class TokenService:
    """Issues and checks access tokens; verifies client assertions (RFC 7523)."""

    def __init__(self, signing_key: rsa.RSAPrivateKey, apps: Mapping[str, App]):
        self._key = signing_key
        self.apps = dict(apps)
        der = signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:20]).decode().rstrip("=")
        self._lock = threading.Lock()
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        # Managed identities are not apps with credentials: only the token endpoints of the
        # Azure resource they are attached to issue their tokens.
        self.identities = {client_id: App(client_id, ("Machine.Read.All",))
                           for client_id in (MI_SYSTEM_CLIENT_ID, MI_USER_CLIENT_ID)}
        self.users = delegated.default_users()
        self.device_codes = delegated.DeviceCodes()
        self.refresh_tokens = delegated.RefreshTokens()

    @property
    def issuer(self) -> str:
        # App tokens for Defender are v1 tokens: their issuer is sts.windows.net.
        return f"https://sts.windows.net/{TENANT_ID}/"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "x5t": self.kid}]}

    def issue(self, tenant: str, form: Mapping[str, str], token_endpoints: set[str],
              lifetime_s: int) -> dict[str, Any]:
        """The token endpoint: client credentials, device code, refresh token and
        on-behalf-of grants. Raises SignInError in Entra's order of checks."""
        _check_tenant(tenant)
        grant = form.get("grant_type")
        if not grant:
            raise _missing("grant_type")
        if grant not in _GRANTS:
            raise SignInError(400, "unsupported_grant_type", 70003,
                              f"The app requested an unsupported grant type '{grant}'.")
        try:
            if grant == delegated.DEVICE_CODE_GRANT:
                return self._redeem_device_code(form, token_endpoints, lifetime_s)
            if grant == "refresh_token":
                return self._redeem_refresh_token(form, token_endpoints, lifetime_s)
            if grant == delegated.JWT_BEARER_GRANT:
                return self._on_behalf_of(form, token_endpoints, lifetime_s)
        except delegated.Refusal as refusal:
            raise SignInError(*refusal.args4) from None
        app, auth_method = self._client(form, token_endpoints)
        resource = _resource(form.get("scope"))
        return self._mint(app, resource, auth_method, lifetime_s)

    def _client(self, form: Mapping[str, str], token_endpoints: set[str],
                public_ok: bool = False) -> tuple[App, str]:
        """The app the request authenticates as, and Entra's appidacr for how it did:
        "0" a public client (no credential), "1" a secret, "2" a certificate."""
        assertion = form.get("client_assertion")
        client_id = form.get("client_id") or (_unverified_claims(assertion).get("iss")
                                              if assertion else None)
        if not client_id:
            raise _missing("client_id")
        app = self._app(client_id)
        if assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise SignInError(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: "
                                  "'client_assertion_type'.")
            _verify_assertion(app, assertion, token_endpoints)
            return app, "2"
        if form.get("client_secret") is not None:
            if app.secret is None or not hmac.compare_digest(
                form["client_secret"].encode(), app.secret.encode()
            ):
                raise SignInError(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure the secret being sent "
                                  "in the request is the client secret value, not the client "
                                  f"secret ID, for a secret added to app '{client_id}'.")
            return app, "1"
        if public_ok and app.public:
            return app, "0"
        raise SignInError(401, "invalid_client", 7000218,
                          "The request body must contain the following parameter: "
                          "'client_assertion' or 'client_secret'.")

    def _app(self, client_id: str) -> App:
        app = self.apps.get(client_id)
        if app is None:
            raise SignInError(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the "
                              f"directory '{TENANT_DOMAIN}'. This can happen if the application "
                              "has not been installed by the administrator of the tenant or "
                              "consented to by any user in the tenant. You may have sent your "
                              "authentication request to the wrong tenant.")
        return app

    def start_device_code(self, tenant: str, form: Mapping[str, str], origin: str,
                          settings: Settings) -> dict[str, Any]:
        """The device authorization endpoint: a user code for the person, a device code
        for the app to poll with."""
        _check_tenant(tenant)
        app = self._app(_required(form, "client_id"))
        if not app.public:
            raise SignInError(400, "invalid_client", 7000218,
                              "The request body must contain the following parameter: "
                              "'client_assertion' or 'client_secret'. (The application is not "
                              "a public client: enable 'Allow public client flows'.)")
        _delegated_resource(form.get("scope"))
        return self.device_codes.start(app.client_id, form.get("scope") or "",
                                       settings.device_code_lifetime_s,
                                       settings.device_code_interval_s, origin)

    def _redeem_device_code(self, form: Mapping[str, str], token_endpoints: set[str],
                            lifetime_s: int) -> dict[str, Any]:
        device_code = _required(form, "device_code")
        app, auth_method = self._client(form, token_endpoints, public_ok=True)
        code = self.device_codes.redeem(device_code, app.client_id)
        assert code.user is not None  # redeem returns approved codes only
        return self._user_answer(app, code.user, _delegated_resource(code.scope),
                                 auth_method, lifetime_s)

    def _redeem_refresh_token(self, form: Mapping[str, str], token_endpoints: set[str],
                              lifetime_s: int) -> dict[str, Any]:
        token = _required(form, "refresh_token")
        app, auth_method = self._client(form, token_endpoints, public_ok=True)
        grant = self.refresh_tokens.redeem(token, app.client_id)
        user = self.users.get(grant.upn)
        if user is None:
            raise delegated.Refusal(400, "invalid_grant", 50034,
                                    "The user account does not exist in the directory.")
        resource = _delegated_resource(form.get("scope")) if form.get("scope") \
            else grant.resource
        return self._user_answer(app, user, resource, auth_method, lifetime_s)

    def _on_behalf_of(self, form: Mapping[str, str], token_endpoints: set[str],
                      lifetime_s: int) -> dict[str, Any]:
        """The middle-tier app presents the user's token (issued to it) and gets one for
        Defender, for the same user."""
        app, auth_method = self._client(form, token_endpoints)
        if form.get("requested_token_use") != "on_behalf_of":
            raise _missing("requested_token_use")
        assertion = _required(form, "assertion")
        try:
            claims = jwt.decode(assertion, self._key.public_key(), algorithms=["RS256"],
                                options={"verify_aud": False, "require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise delegated.Refusal(400, "invalid_grant", 500133,
                                    "Assertion is not within its valid time range. Ensure that "
                                    "the access token is not expired before using it for user "
                                    "assertion.") from None
        except jwt.InvalidTokenError:
            raise delegated.Refusal(400, "invalid_grant", 50013,
                                    "Assertion failed signature validation.") from None
        if str(claims.get("aud")) not in (app.client_id, f"api://{app.client_id}"):
            raise delegated.Refusal(400, "invalid_grant", 50013,
                                    "Assertion audience does not match the Client app "
                                    "presenting the assertion. The audience in the assertion "
                                    f"was '{claims.get('aud')}' and the expected audience is "
                                    f"'{app.client_id}'.")
        user = self._user_of(claims)
        if user is None or claims.get("idtyp") == "app":
            raise delegated.Refusal(400, "invalid_grant", 50013,
                                    "The assertion is not a user's token.")
        return self._user_answer(app, user, _delegated_resource(form.get("scope")),
                                 auth_method, lifetime_s)

    def _user_answer(self, app: App, user: delegated.User, resource: str, auth_method: str,
                     lifetime_s: int) -> dict[str, Any]:
        """A delegated answer as msal expects it: access, refresh and ID tokens, client_info
        (the account's home id) and the granted scopes."""
        scopes = [f"{resource}/{name}" for name in _consented(app, resource)] + \
            [f"{resource}/.default"]
        token = self._mint_user(app, user, resource, auth_method, lifetime_s)
        now = int(time.time())
        id_token = jwt.encode({
            "aud": app.client_id, "iss": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
            "iat": now, "nbf": now, "exp": now + lifetime_s, "name": user.display_name,
            "oid": user.object_id, "preferred_username": user.upn, "sub": user.object_id,
            "tid": TENANT_ID, "ver": "2.0"}, self._key, algorithm="RS256",
            headers={"kid": self.kid})
        client_info = base64.urlsafe_b64encode(json.dumps(
            {"uid": user.object_id, "utid": TENANT_ID}).encode()).decode().rstrip("=")
        return {"token_type": "Bearer", "scope": " ".join(scopes), "expires_in": lifetime_s,
                "ext_expires_in": lifetime_s, "access_token": token,
                "refresh_token": self.refresh_tokens.issue(user.upn, app.client_id, resource),
                "id_token": id_token, "client_info": client_info}

    def _mint_user(self, app: App, user: delegated.User, resource: str, auth_method: str,
                   lifetime_s: int) -> str:
        now = int(time.time())
        token_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        claims: dict[str, Any] = {
            "aud": resource, "iss": self.issuer, "iat": now, "nbf": now,
            "exp": now + lifetime_s, "acr": "1", "amr": ["pwd", "mfa"], "appid": app.client_id,
            "appidacr": auth_method, "idtyp": "user", "name": user.display_name,
            "oid": user.object_id, "scp": " ".join(_consented(app, resource)),
            "sub": user.object_id,
            "tid": TENANT_ID, "unique_name": user.upn, "upn": user.upn, "uti": token_id,
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256",
                           headers={"kid": self.kid, "x5t": self.kid})
        with self._lock:
            self._issued.add(token_id)
        return token

    def user_assertion(self, upn: str, audience: str, lifetime_s: int) -> str:
        """The token a platform holds for its signed-in analyst: issued to the platform's
        app (`audience`), which may trade it on behalf of the user (admin endpoint)."""
        user = self.users.get(upn)
        if user is None:
            raise ValueError(f"no user {upn!r}; known: {sorted(self.users)}")
        app = App(audience, (), delegated=("user_impersonation",))
        return self._mint_user(app, user, audience, "0", lifetime_s)

    def _user_of(self, claims: Mapping[str, Any]) -> delegated.User | None:
        oid = claims.get("oid")
        return next((u for u in self.users.values() if u.object_id == oid), None)

    def _mint(self, app: App, resource: str, auth_method: str, lifetime_s: int) -> dict[str, Any]:
        now = int(time.time())
        token_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        claims: dict[str, Any] = {
            "aud": resource, "iss": self.issuer, "iat": now, "nbf": now,
            "exp": now + lifetime_s, "aio": "E2Emulator", "appid": app.client_id,
            "appidacr": auth_method, "azp": app.client_id, "azpacr": auth_method,
            "idp": self.issuer, "idtyp": "app", "oid": app.object_id, "rh": "0.Emulator.",
            "sub": app.object_id, "tid": TENANT_ID, "uti": token_id, "ver": "1.0",
        }
        # Entra leaves the claim out when the app holds no role on that resource.
        roles = app.roles if resource in ACCEPTED_RESOURCES else \
            app.graph_roles if resource == GRAPH_RESOURCE else ()
        if roles:
            claims["roles"] = list(roles)
        token = jwt.encode(claims, self._key, algorithm="RS256",
                           headers={"kid": self.kid, "x5t": self.kid})
        with self._lock:
            self._issued.add(token_id)
        return {"token_type": "Bearer", "expires_in": lifetime_s,
                "ext_expires_in": lifetime_s, "access_token": token}

    def issue_for_managed_identity(self, resource: str | None, selector: Mapping[str, str],
                                   lifetime_s: int) -> dict[str, Any]:
        """A token for one of the resource's managed identities, as IMDS and App Service
        issue them; `selector` is the request's client_id / object_id / resource id, if any.
        Raises SignInError with IMDS's wording; the server reshapes it per endpoint."""
        if not resource:
            raise SignInError(400, "invalid_request", 0,
                              "Required audience parameter not specified")
        known = _canonical_resource(resource, ACCEPTED_RESOURCES + OTHER_RESOURCES)
        if known is None:
            raise SignInError(400, "invalid_resource", 500011,
                              f"AADSTS500011: The resource principal named {resource} was not "
                              f"found in the tenant named {TENANT_DOMAIN}.")
        identity = self._managed_identity(selector)
        if identity is None:
            raise SignInError(400, "invalid_request", 0, "Identity not found")
        answer = self._mint(identity, known, "2", lifetime_s)
        answer["client_id"] = identity.client_id  # IMDS and Arc echo the identity they used
        return answer

    def _managed_identity(self, selector: Mapping[str, str]) -> App | None:
        if not selector:  # no selector: the system-assigned identity
            return self.identities[MI_SYSTEM_CLIENT_ID]
        ((kind, value),) = selector.items()
        for identity in self.identities.values():
            if kind == "client_id" and value.lower() == identity.client_id:
                return identity
            if kind == "object_id" and value.lower() == identity.object_id:
                return identity
            if kind == "resource_id" and identity.client_id == MI_USER_CLIENT_ID \
                    and value.lower() == MI_USER_RESOURCE_ID.lower():
                return identity
        return None

    def revoke_all(self) -> None:
        """Every token issued so far stops working, and every user's session ends."""
        with self._lock:
            self._revoked |= self._issued
        self.refresh_tokens.revoke()

    def clear_revocations(self) -> None:
        with self._lock:
            self._revoked.clear()

    def check(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid bearer token, or ApiError 401/403 as Defender answers."""
        claims = self._verified(authorization)
        if _canonical_resource(str(claims.get("aud", ""))) is None:
            raise ApiError(403, "Forbidden", "The access token audience is not valid for this "
                                             "API.")
        if claims.get("idtyp") == "user":
            self._check_user(claims)
            return claims
        if not MACHINE_ROLES & set(claims.get("roles") or []):
            raise ApiError(403, "Forbidden", "Missing application roles. API required roles: "
                                             "Machine.Read.All,Machine.ReadWrite.All")
        return claims

    def _check_user(self, claims: Mapping[str, Any]) -> None:
        """A delegated call needs the permission (scp) and a Defender role for the user."""
        if not delegated.MACHINE_SCOPES & set(str(claims.get("scp", "")).split()):
            raise ApiError(403, "Forbidden", "Missing delegated permissions (scopes). API "
                                             "required scopes: Machine.Read,Machine.ReadWrite")
        user = self._user_of(claims)
        if user is None or not user.can_view_data:
            raise ApiError(403, "Forbidden", f"The user {claims.get('upn')} has no Microsoft "
                                             "Defender role with the 'View Data' permission.")

    def visible_to(self, claims: Mapping[str, Any]) -> delegated.User | None:
        """The user whose device groups limit the answer; None for an application."""
        return self._user_of(claims) if claims.get("idtyp") == "user" else None

    def graph_claims(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid Graph token (audience graph.microsoft.com), or Graph's 401."""
        claims = self._verified(authorization)
        if str(claims.get("aud", "")).rstrip("/").lower() != GRAPH_RESOURCE:
            raise ApiError(401, "InvalidAuthenticationToken",
                           "Access token validation failure. Invalid audience.", _CHALLENGE)
        return claims

    def check_graph(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid Graph token with the hunting role, or ApiError 401/403 as Graph
        answers (its 403 code is Forbidden too)."""
        claims = self.graph_claims(authorization)
        if claims.get("idtyp") == "user":
            # Delegated hunting: the scope, and a Defender role that may view data.
            user = self._user_of(claims)
            if HUNTING_ROLE not in str(claims.get("scp", "")).split():
                raise ApiError(403, "Forbidden", "Missing scope permissions on the request. "
                                                 f"API requires one of '{HUNTING_ROLE}'.")
            if user is None or not user.can_view_data:
                raise ApiError(403, "Forbidden", f"The user {claims.get('upn')} has no "
                                                 "Microsoft Defender role with the 'View "
                                                 "Data' permission.")
            return claims
        if HUNTING_ROLE not in (claims.get("roles") or []):
            raise ApiError(403, "Forbidden", "Missing role permissions on the request. API "
                                             f"requires one of '{HUNTING_ROLE}'.")
        return claims

    def _verified(self, authorization: str | None) -> dict[str, Any]:
        """The claims of a bearer token we issued, still valid and not revoked."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Unauthorized", "Authorization header is missing or is not a "
                                                "Bearer token.", _CHALLENGE)
        try:
            claims = jwt.decode(token.strip(), self._key.public_key(), algorithms=["RS256"],
                                issuer=self.issuer,
                                options={"verify_aud": False, "require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.InvalidTokenError:
            raise ApiError(401, "Unauthorized", "The access token is invalid.",
                           _CHALLENGE) from None
        with self._lock:
            revoked = claims.get("uti") in self._revoked
        if revoked or claims.get("tid") != TENANT_ID:
            raise ApiError(401, "Unauthorized", "The access token is invalid.", _CHALLENGE)
        return claims


_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _check_tenant(tenant: str) -> None:
    if tenant.lower() not in (TENANT_ID, TENANT_DOMAIN):
        raise SignInError(400, "invalid_request", 90002,
                          f"Tenant '{tenant}' not found. Check to make sure you have the "
                          "correct tenant ID and are signing into the correct cloud.")


def _consented(app: App, resource: str) -> tuple[str, ...]:
    """The delegated permissions an app was consented on a resource."""
    return app.graph_delegated if resource == GRAPH_RESOURCE else app.delegated


def _delegated_resource(scope: str | None) -> str:
    """The resource of a delegated request's scopes: one resource, Defender's or Graph's (its
    .default, or permissions by name, which the app then gets as consented)."""
    scopes = delegated.requested_scopes(scope)
    if not scopes:
        raise _missing("scope")
    resources = {s.rpartition("/")[0] for s in scopes}
    known = {_canonical_resource(r, (*ACCEPTED_RESOURCES, GRAPH_RESOURCE)) for r in resources}
    if len(resources) != 1 or None in known:
        raise SignInError(400, "invalid_resource", 500011,
                          f"The resource principal named {' '.join(sorted(resources))} was not "
                          f"found in the tenant named {TENANT_DOMAIN}, or the scopes name "
                          "more than one resource.")
    return known.pop()  # type: ignore[return-value]


def _required(form: Mapping[str, str], parameter: str) -> str:
    value = form.get(parameter)
    if not value:
        raise _missing(parameter)
    return value


def _missing(parameter: str) -> SignInError:
    return SignInError(400, "invalid_request", 900144,
                       f"The request body must contain the following parameter: '{parameter}'.")


def _canonical_resource(resource: str, known: tuple[str, ...] = ACCEPTED_RESOURCES) -> str | None:
    wanted = resource.rstrip("/").lower()
    return next((r for r in known if r.lower() == wanted), None)


def _resource(scope: str | None) -> str:
    if not scope:
        raise _missing("scope")
    # msal may add the OpenID scopes; the client credentials grant ignores them.
    scopes = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise SignInError(400, "invalid_scope", 1002012,
                          f"The provided value for scope {scope} is not valid. Client credential "
                          "flows must have a scope value with /.default suffixed to the resource "
                          "identifier (application ID URI).")
    requested = scopes[0].removesuffix("/.default")
    resource = _canonical_resource(requested, ACCEPTED_RESOURCES + OTHER_RESOURCES)
    if resource is None:
        raise SignInError(400, "invalid_resource", 500011,
                          f"The resource principal named {requested} was not found in the "
                          f"tenant named {TENANT_DOMAIN}. This can happen if the application has "
                          "not been installed by the administrator of the tenant or consented "
                          "to by any user in the tenant. You might have sent your authentication "
                          "request to the wrong tenant.")
    return resource


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}


def _verify_assertion(app: App, assertion: str, token_endpoints: set[str]) -> None:
    """Checks what Entra checks: the key by thumbprint, signature, aud, iss/sub, lifetime.

    msal signs PS256 with an `x5t#S256` header when it knows the certificate, and RS256 with
    a SHA-1 `x5t` when given only a thumbprint; both are accepted, as Entra does.
    """
    def fail(reason: str) -> SignInError:
        return SignInError(401, "invalid_client", 700027,
                           f"Client assertion failed signature validation. [Reason - {reason}]")

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise fail("The client assertion is not a well-formed JWT.") from None
    cert = app.certificate
    if cert is None:
        raise fail("The key was not found. The application has no certificate credential.")
    thumbprints = {"x5t": _b64_thumbprint(cert, "sha1"),
                   "x5t#S256": _b64_thumbprint(cert, "sha256")}
    presented = {k: header[k] for k in thumbprints if k in header}
    if not presented:
        raise fail("The client assertion header carries no x5t or x5t#S256 thumbprint.")
    if any(thumbprints[k] != v.rstrip("=") for k, v in presented.items()):
        shown = ", ".join(f"{k} '{v}'" for k, v in presented.items())
        raise fail(f"The key was not found., Thumbprint of key used by client: {shown}")
    if header.get("alg") not in ("RS256", "PS256"):
        raise fail(f"The algorithm '{header.get('alg')}' is not supported.")
    try:
        claims = jwt.decode(assertion, cert.public_key(),  # type: ignore[arg-type]  # RSA only
                            algorithms=[header["alg"]],
                            audience=sorted(token_endpoints), leeway=300,
                            options={"require": ["aud", "iss", "sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise fail("The client assertion has expired.") from None
    except jwt.InvalidAudienceError:
        raise fail("The audience of the client assertion is not the token endpoint.") from None
    except jwt.InvalidSignatureError:
        raise fail("The signature does not match the registered certificate.") from None
    except jwt.InvalidTokenError as exc:
        raise fail(f"The client assertion is invalid: {exc}.") from None
    if claims["iss"] != app.client_id or claims["sub"] != app.client_id:
        raise fail("The iss and sub claims of the client assertion must be the client id.")


def _b64_thumbprint(cert: x509.Certificate, algorithm: str) -> str:
    digest = hashlib.new(algorithm, cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# --------------------------------------------------------------------------- rate limits

class RateLimiter:
    """Two sliding windows (a minute, an hour) per key, counting only admitted calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, ...], list[float]] = {}

    def admit(self, key: tuple[str, ...], limit: RateLimit) -> int | None:
        """None when admitted (and counted), else the Retry-After seconds."""
        minute, hour = 60 * limit.window_scale, 3600 * limit.window_scale
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, [])
            del calls[: bisect.bisect_right(calls, now - hour)]
            waits = [0.0]
            in_minute = len(calls) - bisect.bisect_right(calls, now - minute)
            if in_minute >= limit.per_minute:
                waits.append(calls[len(calls) - limit.per_minute] + minute - now)
            if len(calls) >= limit.per_hour:
                waits.append(calls[len(calls) - limit.per_hour] + hour - now)
            if len(waits) > 1:
                return max(1, math.ceil(max(waits)))
            calls.append(now)
            return None

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


# --------------------------------------------------------------------------- faults

@dataclasses.dataclass
class FaultScript:
    pattern: re.Pattern[str]
    method: str | None
    responses: list[dict[str, Any]]
    repeat_last: bool
    used: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.pattern.pattern, "method": self.method,
                "responses": self.responses, "repeat_last": self.repeat_last,
                "used": self.used}


class FaultBook:
    """Scripts of failures; each matching request takes the next step of the first script
    that still has one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[FaultScript] = []

    def add(self, spec: Mapping[str, Any]) -> int:
        try:
            pattern = re.compile(str(spec["path"]))
        except (KeyError, re.error) as exc:
            raise ValueError(f"fault needs a valid 'path' regex: {exc}") from None
        responses = spec.get("responses")
        if not isinstance(responses, list) or not responses:
            raise ValueError("fault needs a non-empty 'responses' list")
        for index, step in enumerate(responses):
            if not isinstance(step, dict) or not step:
                raise ValueError(f"responses[{index}] must be a non-empty object")
            _check_fault_step(step, f"responses[{index}]")
        method = spec.get("method")
        script = FaultScript(pattern, method.upper() if method else None, list(responses),
                             bool(spec.get("repeat_last", False)))
        with self._lock:
            self._scripts.append(script)
            return len(self._scripts) - 1

    def take(self, method: str, path: str) -> dict[str, Any] | None:
        with self._lock:
            for script in self._scripts:
                if script.method not in (None, method) or not script.pattern.search(path):
                    continue
                if script.used < len(script.responses):
                    script.used += 1
                    return script.responses[script.used - 1]
                if script.repeat_last:
                    script.used += 1
                    return script.responses[-1]
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.to_dict() for s in self._scripts]

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()


def _check_fault_step(step: dict[str, Any], where: str) -> None:
    unknown = set(step) - FAULT_KEYS
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {sorted(unknown)}; "
                         f"known: {sorted(FAULT_KEYS)}")
    status = step.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"{where}.status must be an HTTP status code, got {status!r}")
    delay = step.get("delay_s", 0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"{where}.delay_s must be a number >= 0, got {delay!r}")
    if not isinstance(step.get("headers", {}), dict):
        raise ValueError(f"{where}.headers must be an object")
    if not isinstance(step.get("html", ""), (str, bool)):
        raise ValueError(f"{where}.html must be a string or true")


# --------------------------------------------------------------------------- request log

class RequestLog:
    """Entries in arrival order. A request still in flight when the log is cleared is not
    logged when it ends: a slow request of one test must not show up in the next one's log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._seq = 0
        self._generation = 0

    def next_seq(self) -> tuple[int, int]:
        """The arriving request's sequence number and the log generation it belongs to."""
        with self._lock:
            self._seq += 1
            return self._seq, self._generation

    def add(self, entry: dict[str, Any], generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._entries.append(entry)

    def entries(self, path_prefix: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = sorted(self._entries, key=lambda e: e["seq"])
        if path_prefix:
            entries = [e for e in entries if e["path"].startswith(path_prefix)]
        return entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1


# --------------------------------------------------------------------------- the backend

class Backend:
    """Everything the emulator knows; `reset()` returns it to how it started."""

    def __init__(self, dataset: Mapping[str, Any], settings: Settings,
                 signing_key: rsa.RSAPrivateKey, client_certificate: x509.Certificate):
        self._initial_dataset = Dataset(dataset)
        self._initial_settings = settings
        self._lock = threading.Lock()
        self.dataset = self._initial_dataset
        self.settings = settings
        self.tokens = TokenService(signing_key, default_apps(client_certificate))
        self.limiter = RateLimiter()
        self.faults = FaultBook()
        self.log = RequestLog()
        self.security = SecurityStore()

    def reset(self) -> None:
        with self._lock:
            self.dataset = self._initial_dataset
            self.settings = self._initial_settings
        self.faults.clear()
        self.log.clear()
        self.limiter.clear()
        self.tokens.clear_revocations()
        self.security.clear()
        self.tokens.device_codes.clear()

    def configure(self, changes: Mapping[str, Any]) -> Settings:
        with self._lock:
            self.settings = self.settings.updated(changes)
            if "rate_limit" in changes:
                self.limiter.clear()  # new limits start from an empty window
            return self.settings

    def load_dataset(self, raw: Mapping[str, Any]) -> Dataset:
        dataset = Dataset(raw)
        with self._lock:
            self.dataset = dataset
        return dataset

    def rate_check(self, claims: Mapping[str, Any], call_type: str) -> None:
        limit = self.settings.rate_limit
        if limit is None:
            return
        key = (str(claims.get("tid")), str(claims.get("appid")), call_type)
        retry_after = self.limiter.admit(key, limit)
        if retry_after is not None:
            raise ApiError(429, "TooManyRequests",
                           f"Rate limit exceeded. Try again in {retry_after} seconds.",
                           {"Retry-After": str(retry_after)})
