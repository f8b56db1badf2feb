"""A small client for the emulator's `/_admin` endpoints, used by tests and the demo.

It talks HTTP like any other client (tests never reach into the emulator's memory) and
trusts only the emulator's CA, whatever REQUESTS_CA_BUNDLE says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import requests

# Entra's token endpoints, IMDS's /metadata/identity/oauth2/token and App Service's /msi/token.
_TOKEN_PATH = re.compile(r"/[^/]+/oauth2/(?:v2\.0/)?token$|^/msi/token$")
# Shorthands for add_fault(): 503 means {"status": 503}, "drop" means {"drop": True}.
_FLAG_FAULTS = frozenset({"drop", "truncate", "pass", "expire_token", "html"})


class AdminError(RuntimeError):
    """The emulator refused an admin call (bad settings, bad fault, bad dataset)."""


class AdminClient:
    def __init__(self, base_url: str, ca_path: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._ca_path = ca_path
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE must not replace our CA
        self._session.verify = ca_path

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._session.request(method, f"{self.base_url}/_admin/{path}",
                                         verify=self._ca_path, timeout=self._timeout_s, **kwargs)
        if response.status_code >= 400:
            raise AdminError(f"{method} /_admin/{path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()  # every admin endpoint answers an object
        return answer

    # -- request log
    def requests_log(self, path_prefix: str | None = None) -> list[dict[str, Any]]:
        params = {"path_prefix": path_prefix} if path_prefix else None
        return cast(list[dict[str, Any]], self._call("GET", "requests", params=params)["requests"])

    def clear_log(self) -> None:
        self._call("DELETE", "requests")

    def api_calls(self) -> list[dict[str, Any]]:
        return self.requests_log("/api/")

    def token_calls(self) -> list[dict[str, Any]]:
        return [e for e in self.requests_log() if _TOKEN_PATH.search(e["path"])]

    # -- state
    def health(self) -> bool:
        return bool(self._call("GET", "health").get("ok"))

    def reset(self) -> None:
        self._call("POST", "reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings (page_size, not_found, latency_s, token_lifetime_s, domain_cap,
        rate_limit, device_code_lifetime_s, device_code_interval_s); returns all settings
        now in force."""
        return self._call("POST", "config", json=settings)

    def settings(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def revoke_tokens(self) -> None:
        self._call("POST", "tokens/revoke")

    # -- faults
    def add_fault(self, path: str, *responses: Mapping[str, Any] | int | str,
                  method: str | None = None, repeat_last: bool = False) -> int:
        """Script failures for requests whose path matches the `path` regex.

        Each response is a fault dict, or a shorthand: an int status, or one of
        "drop", "truncate", "pass", "expire_token", "html".
        """
        steps = [_fault_step(r) for r in responses]
        spec = {"path": path, "method": method, "responses": steps, "repeat_last": repeat_last}
        return int(self._call("POST", "faults", json=spec)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # -- Graph security alerts and incidents
    def add_alerts(self, alerts: Sequence[Mapping[str, Any]] = (),
                   incidents: Sequence[Mapping[str, Any]] = ()) -> dict[str, int]:
        """Add or replace Graph alerts (alerts_v2) and incidents; an alert without
        lastUpdateDateTime is stamped now."""
        return cast(dict[str, int], self._call("POST", "alerts", json={
            "alerts": list(alerts), "incidents": list(incidents)}))

    def security_alerts(self) -> list[dict[str, Any]]:
        """Every alert as the emulator holds it now, comments included."""
        return cast(list[dict[str, Any]], self._call("GET", "alerts")["alerts"])

    def security_incidents(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "alerts")["incidents"])

    # -- users (the browser side of delegated sign-in)
    def users(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "users")["users"])

    def pending_device_codes(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "device-codes")["pending"])

    def approve_device_code(self, user_code: str, user: str) -> None:
        """The user signs in at the verification page and enters `user_code`."""
        self._call("POST", "device-codes", json={"user_code": user_code, "user": user})

    def decline_device_code(self, user_code: str) -> None:
        self._call("POST", "device-codes", json={"user_code": user_code, "decline": True})

    def user_token(self, user: str, audience: str, lifetime_s: int | None = None) -> str:
        """The token a platform holds for its signed-in analyst, issued to the app
        `audience`: what that app passes as the user assertion of on-behalf-of."""
        body: dict[str, Any] = {"user": user, "audience": audience}
        if lifetime_s is not None:
            body["lifetime_s"] = lifetime_s
        return str(self._call("POST", "users/token", json=body)["access_token"])

    def revoke_user_sessions(self, user: str | None = None) -> int:
        """End a user's (every user's) refresh tokens, as an admin revoking sessions."""
        return int(self._call("POST", "users/revoke", json={"user": user})["revoked"])

    # -- dataset
    def dataset_summary(self) -> dict[str, Any]:
        return self._call("GET", "dataset")

    def load_dataset(self, dataset: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "dataset", json=dict(dataset))


def _fault_step(response: Mapping[str, Any] | int | str) -> dict[str, Any]:
    if isinstance(response, bool):
        raise TypeError("a fault response is a dict, an int status or a flag name")
    if isinstance(response, int):
        return {"status": response}
    if isinstance(response, str):
        if response not in _FLAG_FAULTS:
            raise ValueError(f"unknown fault shorthand {response!r}; use one of "
                             f"{sorted(_FLAG_FAULTS)}")
        return {response: True}
    return dict(response)
