"""Users of the emulated tenant and the delegated grants that sign them in (no HTTP here).

Entra ID's side: users with their Defender role ("View Data" or not) and the device groups
Defender's RBAC lets them see; the device-code flow (RFC 8628) with pending codes that an
admin endpoint approves or declines, as the user would in a browser; refresh tokens; and the
on-behalf-of grant (a middle-tier app trading the user's token for a Defender one).
Defender's side: which machines a user's token may see.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from integration.emulator.seed import TENANT_DOMAIN

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
VIEW_DATA = "View Data"
# Defender's delegated permissions for the two machine calls.
MACHINE_SCOPES = frozenset({"Machine.Read", "Machine.ReadWrite"})
OPENID_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# A refresh token lives 90 days in Entra; the emulator's need only outlive a test session.
REFRESH_TOKEN_LIFETIME_S = 90 * 24 * 3600
# RFC 8628 3.5: a client that polls faster than the interval is told to slow down.
POLL_TOLERANCE_S = 0.5
_USER_CODE_ALPHABET = string.ascii_uppercase.replace("O", "").replace("I", "") + "23456789"


@dataclasses.dataclass(frozen=True)
class User:
    upn: str
    display_name: str
    defender_roles: tuple[str, ...]
    # Device group ids the user's Defender role reaches; None means every group.
    device_groups: tuple[int, ...] | None

    @property
    def object_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{self.upn}"))

    @property
    def can_view_data(self) -> bool:
        return VIEW_DATA in self.defender_roles

    def sees(self, machine: Mapping[str, Any]) -> bool:
        if self.device_groups is None:
            return True
        try:  # rbacGroupId is a number, sometimes a string
            group = int(machine.get("rbacGroupId"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False  # a machine in no group: only users of every group see it
        return group in self.device_groups

    def to_dict(self) -> dict[str, Any]:
        return {"upn": self.upn, "object_id": self.object_id, "name": self.display_name,
                "defender_roles": list(self.defender_roles),
                "device_groups": None if self.device_groups is None
                else list(self.device_groups)}


ALICE = f"alice@{TENANT_DOMAIN}"  # View Data, Finance only
BOB = f"bob@{TENANT_DOMAIN}"  # signs in fine, but holds no Defender role
CAROL = f"carol@{TENANT_DOMAIN}"  # View Data, The-A-Team and Servers
DANA = f"dana@{TENANT_DOMAIN}"  # View Data, every device group


def default_users() -> dict[str, User]:
    users = [User(ALICE, "Alice Analyst", (VIEW_DATA,), (96,)),
             User(BOB, "Bob Builder", (), (96,)),
             User(CAROL, "Carol Responder", (VIEW_DATA,), (140, 81)),
             User(DANA, "Dana Admin", (VIEW_DATA,), None)]
    return {user.upn: user for user in users}


@dataclasses.dataclass
class PendingCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval_s: int
    last_poll: float | None = None
    decision: str | None = None  # "approved" | "declined"
    user: User | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"user_code": self.user_code, "client_id": self.client_id, "scope": self.scope,
                "expires_in": max(0, round(self.expires_at - time.time())),
                "decision": self.decision}


class Refusal(Exception):
    """A delegated grant refused: (status, error, AADSTS code, description) for SignInError."""

    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(description)
        self.args4 = (status, error, code, description)


class DeviceCodes:
    """Pending device codes, from the app's request to the user's decision and redemption."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_device: dict[str, PendingCode] = {}

    def start(self, client_id: str, scope: str, lifetime_s: int, interval_s: int,
              origin: str) -> dict[str, Any]:
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        code = PendingCode(secrets.token_urlsafe(48), user_code, client_id, scope,
                           time.time() + lifetime_s, interval_s)
        with self._lock:
            self._forget_stale()
            self._by_device[code.device_code] = code
        uri = f"{origin}/devicelogin"
        return {"user_code": user_code, "device_code": code.device_code,
                "verification_uri": uri, "expires_in": lifetime_s, "interval": interval_s,
                "message": f"To sign in, use a web browser to open the page {uri} and enter "
                           f"the code {user_code} to authenticate."}

    def decide(self, user_code: str, user: User | None) -> None:
        """The user's answer in the browser: approve as `user`, or decline (None)."""
        wanted = user_code.strip().upper().replace("-", "")
        with self._lock:
            code = next((c for c in self._by_device.values() if c.user_code == wanted), None)
            if code is None or code.expires_at < time.time():
                raise ValueError(f"no pending device code {user_code!r}")
            if code.decision is not None:
                raise ValueError(f"device code {user_code!r} was already {code.decision}")
            code.decision, code.user = ("approved", user) if user else ("declined", None)

    def pending(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [c.to_dict() for c in self._by_device.values()
                    if c.decision is None and c.expires_at >= now]

    def redeem(self, device_code: str, client_id: str) -> PendingCode:
        """The approved code (used up), or the Refusal Entra answers while it is not."""
        now = time.time()
        with self._lock:
            code = self._by_device.get(device_code)
            if code is None or code.client_id != client_id:
                raise Refusal(400, "bad_verification_code", 70019,
                              "Verification code was not recognized.")
            if code.expires_at < now:
                del self._by_device[device_code]
                raise Refusal(400, "expired_token", 70020,
                              "The provided value for the input parameter 'device_code' is "
                              "not valid. This device code has expired.")
            too_soon = code.last_poll is not None and \
                now - code.last_poll < code.interval_s - POLL_TOLERANCE_S
            code.last_poll = now
            if code.decision == "declined":
                del self._by_device[device_code]
                raise Refusal(400, "authorization_declined", 70000,
                              "The user declined to authorize the application (the sign-in "
                              "request was denied).")
            if code.decision is None:
                if too_soon:
                    code.interval_s += 5
                    raise Refusal(400, "slow_down", 70016,
                                  "OAuth 2.0 device flow error. The client is polling too "
                                  "fast: slow down.")
                raise Refusal(400, "authorization_pending", 70016,
                              "OAuth 2.0 device flow error. Authorization is pending. "
                              "Continue polling.")
            del self._by_device[device_code]
            return code

    def clear(self) -> None:
        with self._lock:
            self._by_device.clear()

    def _forget_stale(self) -> None:
        now = time.time()
        for key in [k for k, c in self._by_device.items() if c.expires_at < now - 60]:
            del self._by_device[key]


@dataclasses.dataclass(frozen=True)
class Grant:
    """What a refresh token stands for."""

    upn: str
    client_id: str
    resource: str
    expires_at: float


class RefreshTokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}

    def issue(self, upn: str, client_id: str, resource: str) -> str:
        token = "0.EmuRT." + secrets.token_urlsafe(64)
        with self._lock:
            self._grants[token] = Grant(upn, client_id, resource,
                                        time.time() + REFRESH_TOKEN_LIFETIME_S)
        return token

    def redeem(self, token: str, client_id: str) -> Grant:
        """The grant behind a refresh token, which is used up (Entra rotates them)."""
        with self._lock:
            grant = self._grants.pop(token, None)
        if grant is None or grant.client_id != client_id:
            raise Refusal(400, "invalid_grant", 70008,
                          "The provided authorization code or refresh token has expired due to "
                          "inactivity or was revoked. Send a new interactive authorization "
                          "request for this user and resource.")
        if grant.expires_at < time.time():
            raise Refusal(400, "invalid_grant", 700082,
                          "The refresh token has expired due to inactivity.")
        return grant

    def revoke(self, upn: str | None = None) -> int:
        """Revoke a user's refresh tokens (every user's without `upn`): their sessions end."""
        with self._lock:
            gone = [t for t, g in self._grants.items() if upn is None or g.upn == upn]
            for token in gone:
                del self._grants[token]
        return len(gone)


def requested_scopes(scope: str | None) -> list[str]:
    """The resource scopes of a delegated request (msal adds the OpenID ones)."""
    return [s for s in (scope or "").split() if s not in OPENID_SCOPES]
