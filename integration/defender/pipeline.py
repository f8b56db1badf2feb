"""The one request pipeline. Every authorized API request the plugin makes, to Defender or
to Microsoft Graph, is sent by `send()`:

    rate budget -> bearer token (one fresh token after a 401) -> retry policy -> transport

and every final answer is read by `answer()`, the one mapping from an HTTP status to our
error. A client is an `Api` (which service, where, with whose tokens, under which budget)
and the `Request`s it makes; a new client (another Graph call) or another principal (a
signed-in user's `TokenSource`) plugs into both without wiring anything again.

Errors raised here carry the HTTP status, the service, the request's path and the API calls
spent, and keep the exception that caused them as `__cause__`; never a token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from integration.errors import (
    AuthFailed,
    InvalidInput,
    PermissionDenied,
    PluginError,
    RateLimited,
    UpstreamError,
    service_message,
)

if TYPE_CHECKING:
    import requests

    from integration.defender.budget import Lane, RateBudget
    from integration.defender.retry import Outcome, RetryPolicy
    from integration.defender.transport import Transport

log = logging.getLogger("mde_enrich")


class TokenSource(Protocol):
    """Whose requests these are: the application's TokenProvider, or a signed-in user's."""

    def access_token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class Calls:
    """The requests one operation has sent so far (retries included), and its budget lane.
    One per operation: a client is shared by threads, a count is not."""

    __slots__ = ("count", "lane")

    def __init__(self, lane: Lane = "batch") -> None:
        self.count = 0
        self.lane = lane


class Api(NamedTuple):
    """One service as the pipeline sends to it."""

    service: str  # "Defender", "Graph": in messages, and on every error
    base_url: str
    transport: Transport
    policy: RetryPolicy
    tokens: TokenSource
    budget: Callable[[str], RateBudget]  # the rate budget of a call type

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url.rstrip("/") + path


class Request(NamedTuple):
    method: str
    path: str  # below the Api's base URL, or an absolute URL on its origin (a nextLink)
    call_type: str  # which rate budget it draws from
    params: Mapping[str, str] | None = None
    body: Any = None  # sent as JSON
    # How a refusal of this call reads: what was asked, and the permission a 403 lacks.
    what: str = "the call"
    permission: str | None = None
    missing_ok: bool = False  # a 404 means "none" (None), not a failure
    input_errors: bool = False  # a 400 is the caller's input (invalid_input), not ours


def send(api: Api, request: Request, calls: Calls) -> Outcome:
    """The answer `request` ended with, after the retry policy: the one function that sends
    an authorized API request. Each attempt first takes a call from the budget (a 429's
    Retry-After pauses everyone sharing it); the token is fetched before the retry loop, not
    in it, so a sign-in outage is retried by the sign-in's own policy only. A 401 drops that
    token everywhere and sends once more with a fresh one; a second 401 is the answer."""
    url = api.url(request.path)
    path = urlsplit(url).path
    if urlsplit(url)[:2] != urlsplit(api.base_url)[:2]:
        # A token is only ever sent to its own service. (Only a service's paging link, an
        # @odata.nextLink, hands us an absolute URL.)
        raise UpstreamError(f"{api.service}'s @odata.nextLink leaves {api.base_url} "
                            f"({url.split('?')[0]}); not followed", status=200,
                            service=api.service, path=path, api_calls=calls.count)
    budget = api.budget(request.call_type)
    headers = {} if request.body is None else {"Content-Type": "application/json"}
    data = None if request.body is None else json.dumps(request.body)

    def authorized(token: str) -> Outcome:
        def attempt(number: int) -> requests.Response:
            budget.take(calls.lane)
            calls.count += 1
            response = api.transport.request(
                request.method, url, params=request.params, data=data,
                headers={**headers, "Authorization": f"Bearer {token}"})
            log.info("%s %s -> %d (attempt %d)", request.method, path, response.status_code,
                     number)
            return response

        try:
            return api.policy.send(attempt, what=f"{request.method} {path}",
                                   on_throttled=budget.pause)
        except PluginError as error:
            raise error.replace(service=error.service or api.service, path=error.path or path,
                                api_calls=calls.count) from error.__cause__

    try:
        token = api.tokens.access_token()
        outcome = authorized(token)
        if outcome.status == 401:
            api.tokens.invalidate(token)
            outcome = authorized(api.tokens.access_token())
    except PluginError as error:  # a sign-in failure, or one of authorized()'s
        raise error.replace(api_calls=calls.count) from error.__cause__
    return outcome


def answer(api: Api, request: Request, outcome: Outcome, calls: Calls) -> Any:
    """The JSON body of a 200 (None for a 404 when the request allows it), or the error the
    final answer means: the one mapping from a status to our error."""
    status, body = outcome.status, outcome.body
    path = urlsplit(outcome.response.url or api.url(request.path)).path or request.path
    note = f" ({outcome.gave_up})" if outcome.gave_up else ""

    def error(kind: type[PluginError], message: str, retryable: bool | None = None
              ) -> PluginError:
        return kind(message, retryable=retryable, status=status, service=api.service,
                    path=path, api_calls=calls.count)

    if status == 200:
        if body is None:
            raise error(UpstreamError, f"{api.service} answered 200 with a body that is not "
                                       f"JSON ({path}){note}", retryable=True)
        return body
    if status == 404 and request.missing_ok:
        return None
    message = service_message(body, api.service)
    if status == 401:  # after send()'s fresh token
        raise error(AuthFailed, f"{api.service} refused a fresh token for {request.what}: "
                                f"{message}")
    if status == 403:
        needs = f" (it needs the {request.permission} permission)" if request.permission \
            else ""
        raise error(PermissionDenied, f"{api.service} denied {request.what}{needs}: {message}")
    if status == 400 and request.input_errors:
        raise error(InvalidInput, f"{api.service} rejected the request: {message}")
    if status == 429:
        raise error(RateLimited, f"{api.service} throttled {request.what}: {message}{note}")
    from integration.defender.retry import RETRY_STATUSES

    raise error(UpstreamError, f"{api.service} answered {status} to {request.what} ({path}): "
                               f"{message}{note}", retryable=status in RETRY_STATUSES)


def fetch(api: Api, request: Request, calls: Calls) -> Any:
    """send() then answer(): the JSON an authorized request got, or its error."""
    return answer(api, request, send(api, request, calls), calls)
