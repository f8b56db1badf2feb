"""DefenderClient: one requests.Session, timeouts, the retry policy, the rate budget, paging,
and the mapping of every failure to an error code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from integration.defender import urls
from integration.defender.retry import RETRY_STATUSES, Retryable, RetryPolicy, parse_retry_after
from integration.errors import (
    AuthFailed,
    InvalidInput,
    NetworkError,
    PermissionDenied,
    PluginError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from integration.lookup.indicators import Indicator, parse_file_hash

if TYPE_CHECKING:
    import requests

    from integration.config import Settings
    from integration.defender.auth import TokenProvider
    from integration.state import StateStore

log = logging.getLogger("mde_enrich")

# The newest documentation caps a domain's answer at 500 machines.
DOMAIN_ANSWER_CAP = 500
# Paging is undocumented for these calls; a bound keeps a looping nextLink from running forever.
MAX_PAGES = 200


class Lookup(NamedTuple):
    """What Defender said about one indicator (a NamedTuple: cheap to define at start-up)."""

    found: bool
    machines: list[dict[str, Any]] = []  # never mutated, so one shared default is safe
    api_calls: int = 0
    truncated: bool = False


class _Calls:
    """How many API calls one lookup has made so far."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class DefenderClient:
    def __init__(self, settings: Settings, *, session: requests.Session, tokens: TokenProvider,
                 store: StateStore, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._settings = settings
        self._session = session
        self._tokens = tokens
        self._store = store
        self._policy = policy
        self._sleep = sleep
        self._api_base = settings.endpoints.api_base
        self._origin = urlsplit(self._api_base)[:2]
        # Defender's limits are per application and tenant; every process using this state
        # draws from the same budget.
        self._budget_bucket = f"{settings.tenant_id}|{settings.client_id}"
        self._limits = ((60.0, settings.per_minute), (3600.0, settings.per_hour))

    # -- the lookups -------------------------------------------------------------------------

    def machines_for_domain(self, domain: Indicator) -> Lookup:
        calls = _Calls()
        machines = self._list(urls.domain_machines(domain), calls)
        if not machines:  # 404 and an empty 200 both mean "no machines"
            return Lookup(found=False, api_calls=calls.count)
        return Lookup(found=True, machines=machines, api_calls=calls.count,
                      truncated=len(machines) >= DOMAIN_ANSWER_CAP)

    def machines_for_file(self, sha1: Indicator) -> Lookup:
        calls = _Calls()
        machines = self._list(urls.file_machines(sha1), calls)
        return Lookup(found=bool(machines), machines=machines, api_calls=calls.count)

    def resolve_sha1(self, file_hash: Indicator) -> tuple[Indicator | None, int]:
        """The SHA-1 of the file a SHA-256 or MD5 names (None if Defender does not know it),
        and the calls that took: the machines call accepts only SHA-1."""
        calls = _Calls()
        info = self._get(urls.file_info(file_hash), calls)
        if info is None:
            return None, calls.count
        return self._resolved_sha1(info, file_hash), calls.count

    def first_machine(self) -> Lookup:
        """The cheapest authorized call there is: the connectivity check."""
        calls = _Calls()
        body = self._get(urls.MACHINES_LIST, calls, params={"$top": "1"})
        values = _values(body) if body is not None else []
        return Lookup(found=bool(values), machines=values, api_calls=calls.count)

    # -- HTTP ----------------------------------------------------------------------------------

    def _list(self, path: str, calls: _Calls) -> list[dict[str, Any]]:
        """Every machine of a list answer, following @odata.nextLink; [] for a 404."""
        body = self._get(path, calls)
        if body is None:
            return []
        machines = _values(body)
        seen_links: set[str] = set()
        while (link := body.get("@odata.nextLink")) and len(seen_links) < MAX_PAGES:
            if link in seen_links:
                raise UpstreamError(f"Defender's @odata.nextLink repeats itself ({path})")
            seen_links.add(link)
            if urlsplit(link)[:2] != self._origin:
                raise UpstreamError(f"Defender's @odata.nextLink leaves {self._api_base}; "
                                    "not followed")
            body = self._get(link, calls, absolute=True)
            if body is None:
                break
            machines.extend(_values(body))
        return machines

    def _get(self, path: str, calls: _Calls, *, params: dict[str, str] | None = None,
             absolute: bool = False) -> dict[str, Any] | None:
        url = path if absolute else self._api_base + path
        state = {"refreshed_token": False}
        try:
            return self._policy.run(
                lambda attempt: self._attempt(url, params, calls, attempt, state),
                what=f"GET {urlsplit(url).path}")
        except PluginError as error:
            error.api_calls = calls.count  # the envelope reports what the failure cost
            raise

    def _attempt(self, url: str, params: dict[str, str] | None, calls: _Calls, attempt: int,
                 state: dict[str, bool]) -> dict[str, Any] | None:
        import requests

        self._take_budget()
        token = self._tokens.access_token()
        calls.count += 1
        path = urlsplit(url).path
        started = time.monotonic()
        try:
            response = self._session.get(url, params=params, timeout=self._settings.timeout_s,
                                         verify=self._session.verify,
                                         headers={"Authorization": f"Bearer {token}"})
            # Read now: a broken body must fail inside this attempt. Bytes, not `.text`: with
            # no charset in the answer, requests would guess one over the whole body.
            body = response.content
        except requests.Timeout:
            log.info("GET %s -> timeout (attempt %d)", path, attempt)
            raise Retryable(Timeout(f"Defender did not answer within "
                                    f"{self._settings.timeout_s:g} s ({path})")) from None
        except requests.RequestException as exc:
            log.info("GET %s -> %s (attempt %d)", path, type(exc).__name__, attempt)
            raise Retryable(NetworkError(f"connection to Defender failed ({path}): "
                                         f"{type(exc).__name__}")) from None
        status = response.status_code
        log.info("GET %s -> %d (attempt %d, %.0f ms)", path, status, attempt,
                 (time.monotonic() - started) * 1000)
        if status == 200:
            return _json_object(body, path)
        if status == 404:
            return None
        message = _defender_message(body)
        if status == 401:
            if not state["refreshed_token"]:
                # A token the API no longer accepts: drop it everywhere, fetch one, try once more.
                state["refreshed_token"] = True
                self._tokens.invalidate(token)
                raise Retryable(AuthFailed(f"Defender refused the token: {message}", status=401),
                                immediate=True)
            raise AuthFailed(f"Defender refused a fresh token: {message}", status=401)
        if status == 403:
            raise PermissionDenied(f"Defender denied the call: {message}", status=403)
        if status == 400:
            raise InvalidInput(f"Defender rejected the request: {message}", status=400)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            if retry_after is not None:
                # Every process sharing this state holds off until Defender's window reopens.
                self._store.pause(self._budget_bucket,
                                  min(retry_after, self._policy.max_retry_after_s))
            raise Retryable(RateLimited(f"Defender throttled the call: {message}", status=429),
                            retry_after_s=retry_after)
        error = UpstreamError(f"Defender answered {status}: {message}", status=status)
        if status in RETRY_STATUSES:
            raise Retryable(error, retry_after_s=retry_after)
        raise error

    def _take_budget(self) -> None:
        """Wait for a call from the shared budget, or give up without sending anything."""
        waited = 0.0
        while (wait := self._store.take_slot(self._budget_bucket, self._limits)) > 0:
            limit = self._settings.max_rate_wait_s
            if waited + wait > limit:
                raise RateLimited(
                    f"the rate budget ({self._settings.per_minute} calls a minute, "
                    f"{self._settings.per_hour} an hour) has no free call within "
                    f"max_rate_wait_s ({limit:g} s); nothing was sent", retryable=True)
            log.info("rate budget: waiting %.2f s for a free call", wait)
            self._sleep(wait)
            waited += wait

    def _resolved_sha1(self, info: dict[str, Any], asked: Indicator) -> Indicator:
        value = info.get("sha1")
        try:
            return parse_file_hash(value if isinstance(value, str) else "")
        except PluginError:
            raise UpstreamError(f"Defender's file record for {asked.value} has no usable SHA-1"
                                ) from None


def _json_object(text: bytes, path: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        raise Retryable(UpstreamError(f"Defender answered 200 with a body that is not JSON "
                                      f"({path})", status=200)) from None
    if not isinstance(body, dict):
        raise UpstreamError(f"Defender answered with a JSON {type(body).__name__}, "
                            f"not an object ({path})", status=200)
    return body


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    values = body.get("value")
    if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
        raise UpstreamError("Defender's answer has no list of records under 'value'", status=200)
    return values


def _defender_message(text: bytes) -> str:
    """Defender's own words from an error body; a short note when the body is not its JSON."""
    try:
        error = json.loads(text).get("error", {})
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        return "the body is not Defender's JSON" if text.strip() else "empty body"
    return ": ".join(str(part) for part in (code, message) if part) or "no details"
