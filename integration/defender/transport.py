"""The one transport: a two-method HTTP client (`get`, `post`) over one requests.Session,
shared by msal (its `http_client`) and the Defender client, like msal's own seam.

It turns requests' exceptions into ours at the one place they can happen, so neither the
sign-in nor the API code handles `requests` directly:
- a timeout is `Timeout`, any other connection failure `NetworkError` (both retryable);
- a TLS certificate that does not verify is a `ConfigError` naming `ca_bundle`: retrying
  cannot cure it, and the words "certificate verify failed" are what an operator looks for.

`trust_env` is off so that REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cannot replace a configured
`ca_bundle` (requests lets them override a session's `verify`); the proxy therefore comes
from configuration only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from integration import USER_AGENT
from integration.errors import ConfigError, NetworkError, PluginError, Timeout

if TYPE_CHECKING:
    import requests

    from integration.config import Settings

log = logging.getLogger("mde_enrich")


class Transport:
    """`get` and `post` with our timeout, TLS settings and error mapping."""

    def __init__(self, session: requests.Session, timeout_s: float, ca_bundle: str | None,
                 *, log_answers: bool = False) -> None:
        self.session = session
        self._timeout_s = timeout_s
        self._ca_bundle = ca_bundle
        self._log_answers = log_answers

    def logging_answers(self) -> Transport:
        """The same transport (one session, one pool) logging each answer: for msal, whose
        requests no code of ours sees. The API clients log theirs with the attempt number."""
        return Transport(self.session, self._timeout_s, self._ca_bundle, log_answers=True)

    def get(self, url: str, params: Any = None, headers: Any = None,
            **kwargs: Any) -> requests.Response:
        return self._send("GET", url, params=params, headers=headers, **kwargs)

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kwargs: Any) -> requests.Response:
        return self._send("POST", url, params=params, data=data, headers=headers, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Any method: the request pipeline's way in (msal uses `get` and `post`)."""
        return self._send(method, url, **kwargs)

    def close(self) -> None:
        """The session outlives any one user of it (msal calls this): nothing to do."""

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        import requests

        kwargs.setdefault("timeout", self._timeout_s)
        kwargs.setdefault("verify", self.session.verify)
        try:
            response = self.session.request(method, url, **kwargs)
            # Read now: a broken body must fail inside this attempt.
            _ = response.content
        except requests.RequestException as exc:
            raise self._failure(method, url, exc) from exc
        if self._log_answers:
            log.debug("%s %s -> %d", method, urlsplit(url).path, response.status_code)
        return response

    def _failure(self, method: str, url: str, exc: Exception) -> PluginError:
        """The plugin's error for what requests raised."""
        import requests

        host, path = urlsplit(url).netloc, urlsplit(url).path
        log.info("%s %s -> %s", method, path, type(exc).__name__)
        if isinstance(exc, requests.Timeout):
            return Timeout(f"{host} did not answer within {self._timeout_s:g} s ({path})")
        if isinstance(exc, requests.exceptions.SSLError) and \
                "certificate verify failed" in str(exc).lower():
            trusted = f"ca_bundle ({self._ca_bundle})" if self._ca_bundle else \
                "the system's CAs (set ca_bundle to the CA that signed it)"
            return ConfigError(f"TLS certificate verify failed for {host}: it is not signed "
                               f"by {trusted}; check the config key 'ca_bundle'")
        what = "TLS connection" if isinstance(exc, requests.exceptions.SSLError) \
            else "connection"
        return NetworkError(f"{what} to {host} failed ({path}): {type(exc).__name__}")


def build_transport(settings: Settings) -> Transport:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    session.verify = settings.ca_bundle or True
    if settings.proxy:
        session.proxies = {"https": settings.proxy, "http": settings.proxy}
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip",
                            "Accept": "application/json"})
    # One pooled connection per concurrent lookup, so parallel calls reuse TLS sessions.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, settings.max_concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return Transport(session, settings.timeout_s, settings.ca_bundle)
