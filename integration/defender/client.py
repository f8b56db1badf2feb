"""DefenderClient: the Defender API calls, paging, and the mapping of each final answer to
a result or an error code. Sending goes through the transport, retrying through the policy,
and every call is taken from the shared rate budget first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from integration.defender import urls
from integration.defender.auth import send_authorized
from integration.errors import (
    AuthFailed,
    InvalidInput,
    PermissionDenied,
    PluginError,
    RateLimited,
    UpstreamError,
    service_message,
)
from integration.values.indicators import Indicator, parse_file_hash

if TYPE_CHECKING:
    import requests

    from integration.defender.auth import TokenProvider
    from integration.defender.budget import Budgets, CallType, Lane
    from integration.defender.retry import Outcome, RetryPolicy
    from integration.defender.transport import Transport

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
    """How many API calls one lookup has made so far, and the budget lane it draws from."""

    __slots__ = ("count", "lane")

    def __init__(self, lane: Lane) -> None:
        self.count = 0
        self.lane = lane


class DefenderClient:
    def __init__(self, api_base: str, *, transport: Transport, tokens: TokenProvider,
                 budgets: Budgets, policy: RetryPolicy) -> None:
        self._transport = transport
        self._tokens = tokens
        self._budgets = budgets
        self._policy = policy
        self._api_base = api_base
        self._origin = urlsplit(api_base)[:2]

    # -- the lookups -------------------------------------------------------------------------

    def machines_for_domain(self, domain: Indicator, lane: Lane = "batch") -> Lookup:
        calls = _Calls(lane)
        machines = self._list(urls.domain_machines(domain), calls, "domain_machines")
        if not machines:  # 404 and an empty 200 both mean "no machines"
            return Lookup(found=False, api_calls=calls.count)
        return Lookup(found=True, machines=machines, api_calls=calls.count,
                      truncated=len(machines) >= DOMAIN_ANSWER_CAP)

    def machines_for_file(self, sha1: Indicator, lane: Lane = "batch") -> Lookup:
        calls = _Calls(lane)
        machines = self._list(urls.file_machines(sha1), calls, "file_machines")
        return Lookup(found=bool(machines), machines=machines, api_calls=calls.count)

    def resolve_sha1(self, file_hash: Indicator,
                     lane: Lane = "batch") -> tuple[Indicator | None, int]:
        """The SHA-1 of the file a SHA-256 or MD5 names (None if Defender does not know it),
        and the calls that took: the machines call accepts only SHA-1."""
        calls = _Calls(lane)
        info = self._get(urls.file_info(file_hash), calls, "file_info")
        if info is None:
            return None, calls.count
        return self._resolved_sha1(info, file_hash), calls.count

    def first_machine(self) -> Lookup:
        """The cheapest authorized call there is: the connectivity check."""
        calls = _Calls("interactive")
        body = self._get(urls.MACHINES_LIST, calls, "machines_list", params={"$top": "1"})
        values = _values(body) if body is not None else []
        return Lookup(found=bool(values), machines=values, api_calls=calls.count)

    # -- HTTP ----------------------------------------------------------------------------------

    def _list(self, path: str, calls: _Calls, call_type: CallType) -> list[dict[str, Any]]:
        """Every machine of a list answer, following @odata.nextLink; [] for a 404."""
        body = self._get(path, calls, call_type)
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
            body = self._get(link, calls, call_type, absolute=True)
            if body is None:
                break
            machines.extend(_values(body))
        return machines

    def _get(self, path: str, calls: _Calls, call_type: CallType, *,
             params: dict[str, str] | None = None,
             absolute: bool = False) -> dict[str, Any] | None:
        """The JSON object at `path`; None for a 404. Errors carry the calls they cost."""
        url = path if absolute else self._api_base + path
        try:
            outcome = send_authorized(
                self._tokens, lambda token: self._send(url, params, calls, call_type, token))
            return _result(outcome, url.removeprefix(self._api_base))
        except PluginError as error:
            raise error.replace(api_calls=calls.count) from None

    def _send(self, url: str, params: dict[str, str] | None, calls: _Calls,
              call_type: CallType, token: str) -> Outcome:
        budget = self._budgets.for_call(call_type)
        path = url.removeprefix(self._api_base)  # for log lines: cheaper than urlsplit

        def attempt(number: int) -> requests.Response:
            budget.take(calls.lane)
            calls.count += 1
            response = self._transport.get(url, params=params,
                                           headers={"Authorization": f"Bearer {token}"})
            log.info("GET %s -> %d (attempt %d)", path, response.status_code, number)
            return response

        return self._policy.send(attempt, what=f"GET {path}", on_throttled=budget.pause)

    def _resolved_sha1(self, info: dict[str, Any], asked: Indicator) -> Indicator:
        value = info.get("sha1")
        try:
            return parse_file_hash(value if isinstance(value, str) else "")
        except PluginError:
            raise UpstreamError(f"Defender's file record for {asked.value} has no usable SHA-1"
                                ) from None


def _result(outcome: Outcome, path: str) -> dict[str, Any] | None:
    """The final answer as data, or the error it means."""
    status, body = outcome.status, outcome.body
    if status == 200:
        if not isinstance(body, dict):
            kind = "not JSON" if body is None else f"a JSON {type(body).__name__}"
            raise UpstreamError(f"Defender answered 200 with a body that is {kind} ({path})"
                                + (f" ({outcome.gave_up})" if outcome.gave_up else ""),
                                status=200, retryable=body is None)
        return body
    if status == 404:
        return None
    message = service_message(body, "Defender")
    if status == 401:  # after send_authorized's fresh token
        raise AuthFailed(f"Defender refused a fresh token: {message}", status=401)
    if status == 403:
        raise PermissionDenied(f"Defender denied the call: {message}", status=403)
    if status == 400:
        raise InvalidInput(f"Defender rejected the request: {message}", status=400)
    note = f" ({outcome.gave_up})" if outcome.gave_up else ""
    if status == 429:
        raise RateLimited(f"Defender throttled the call: {message}{note}", status=429)
    from integration.defender.retry import RETRY_STATUSES

    raise UpstreamError(f"Defender answered {status}: {message}{note}", status=status,
                        retryable=status in RETRY_STATUSES)


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    values = body.get("value")
    if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
        raise UpstreamError("Defender's answer has no list of records under 'value'", status=200)
    return values
