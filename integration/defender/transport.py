"""The one requests.Session shared by msal and the Defender client.

`trust_env` is off so that REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE cannot replace a configured
`ca_bundle` (requests lets them override a session's `verify`); the proxy therefore comes
from configuration only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from integration import USER_AGENT

if TYPE_CHECKING:
    import requests

    from integration.config import Settings


def build_session(settings: Settings) -> requests.Session:
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
    return session
