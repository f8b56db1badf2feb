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

Every answer is read bounded, whatever the server does:
- in size: decompressed as it streams in, and refused (`upstream_error`) past
  `bounded.ANSWER.max_bytes`, so a small gzip answer that inflates to gigabytes costs no
  more memory than the cap;
- in time: inside the retry policy's `deadline_s` (`deadline_within`), a request that has not
  finished, headers and body, when the deadline comes has its socket shut by a watchdog and
  ends as `timeout`. A per-read timeout alone lets a server send one byte a second forever.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from integration import USER_AGENT
from integration.bounded import ANSWER
from integration.errors import ConfigError, NetworkError, PluginError, Timeout, UpstreamError

if TYPE_CHECKING:
    import requests

    from integration.config import Settings

log = logging.getLogger("mde_enrich")

CHUNK_BYTES = 64 * 1024
# When the requests sent in this context must have finished (time.monotonic()), if ever.
_DEADLINE: ContextVar[float | None] = ContextVar("mde_enrich_request_deadline", default=None)
# The request this thread is sending: its connection registers itself here (see
# _WatchedConnection), so the watchdog can shut the socket of exactly that request.
_sending = threading.local()


@contextlib.contextmanager
def deadline_within(seconds: float) -> Iterator[None]:
    """Every request sent inside this block ends within `seconds` from now (an earlier
    deadline of an enclosing block stays)."""
    moment = time.monotonic() + max(0.0, seconds)
    current = _DEADLINE.get()
    token = _DEADLINE.set(moment if current is None else min(current, moment))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


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

        deadline = _DEADLINE.get()
        timeout = self._timeout_s
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._past_deadline(url)
            timeout = min(timeout, remaining)
        kwargs.setdefault("timeout", timeout)
        kwargs.setdefault("verify", self.session.verify)
        watchdog = _Watchdog(deadline)
        try:
            response = self.session.request(method, url, stream=True, **kwargs)
            # Read now, bounded: a broken or endless body must fail inside this attempt.
            self._read_body(response, url, deadline)
        except requests.RequestException as exc:
            if watchdog.fired:
                raise self._past_deadline(url) from exc
            raise self._failure(method, url, exc) from exc
        finally:
            watchdog.stop()
        if self._log_answers:
            log.debug("%s %s -> %d", method, urlsplit(url).path, response.status_code)
        return response

    def _read_body(self, response: requests.Response, url: str, deadline: float | None
                   ) -> None:
        """The whole body into `response.content`, decompressed as it arrives; refused past
        the size cap (before reading, when Content-Length says so) or the deadline."""
        limit = ANSWER.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise self._too_large(response, url, limit)
        body = bytearray()
        for chunk in response.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                response.close()
                raise self._too_large(response, url, limit)
            if deadline is not None and time.monotonic() > deadline:
                response.close()
                raise self._past_deadline(url)
        response._content = bytes(body)  # what requests' .content serves from now on
        response._content_consumed = True  # type: ignore[attr-defined]

    def _too_large(self, response: requests.Response, url: str, limit: int) -> PluginError:
        host, path = urlsplit(url).netloc, urlsplit(url).path
        return UpstreamError(f"{host} answered more than {limit // (1024 * 1024)} MiB "
                             f"({path}); the answer was not read further",
                             status=response.status_code)

    def _past_deadline(self, url: str) -> PluginError:
        host, path = urlsplit(url).netloc, urlsplit(url).path
        return Timeout(f"{host} did not finish answering within the request's deadline "
                       f"(deadline_s) ({path})")

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


class _Deadlines:
    """One daemon thread fires every request's watchdog at its deadline. A threading.Timer
    per request started a thread for each call: about 0.85 ms, most of a warm lookup."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watchdog]] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._count = 0

    def watch(self, deadline: float, watchdog: _Watchdog) -> None:
        with self._wake:
            self._count += 1
            heapq.heappush(self._due, (deadline, self._count, watchdog))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mde-deadlines",
                                                daemon=True)
                self._thread.start()
            elif self._due[0][2] is watchdog:
                self._wake.notify()  # the new deadline is the nearest: wake up earlier

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    # A finished request is dropped when its time comes: stop() is cheap.
                    timeout = (self._due[0][0] - time.monotonic()) if self._due else None
                    self._wake.wait(timeout)
                _, _, watchdog = heapq.heappop(self._due)
            watchdog._fire()


_deadlines = _Deadlines()


class _Watchdog:
    """Shuts the socket of this thread's request when the deadline comes; the blocked read
    then fails and the request ends as a timeout."""

    def __init__(self, deadline: float | None) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self.sock: Any = None  # set by the Watched connections' request()
        _sending.request = self
        if deadline is not None:
            _deadlines.watch(deadline, self)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            sock = self.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    # The TCP socket under the TLS one: ssl.SSLSocket.shutdown() would drop
                    # its TLS state and let the blocked read go on reading raw bytes.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def stop(self) -> None:
        with self._lock:
            self._done = True
            self.sock = None  # the shared thread keeps this object until its deadline
        if getattr(_sending, "request", None) is self:
            _sending.request = None


def _watched_adapter(**options: Any) -> Any:
    """requests' HTTPAdapter whose connections tell the watchdog which socket is theirs."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    # The socket is taken once the request is sent (connected by then): http.client lets go
    # of it when the answer says "Connection: close", but the answer keeps reading from it.
    class WatchedHTTPConnection(HTTPConnection):
        def request(self, *args: Any, **kwargs: Any) -> None:
            super().request(*args, **kwargs)
            _register(self.sock)

    class WatchedHTTPSConnection(HTTPSConnection):
        def request(self, *args: Any, **kwargs: Any) -> None:
            super().request(*args, **kwargs)
            _register(self.sock)

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: Any, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    return WatchedAdapter(**options)


def _register(sock: Any) -> None:
    request = getattr(_sending, "request", None)
    if request is not None:
        request.sock = sock


def build_transport(settings: Settings) -> Transport:
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = settings.ca_bundle or True
    if settings.proxy:
        session.proxies = {"https": settings.proxy, "http": settings.proxy}
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip",
                            "Accept": "application/json"})
    # One pooled connection per concurrent lookup, so parallel calls reuse TLS sessions.
    adapter = _watched_adapter(pool_connections=4,
                               pool_maxsize=max(10, settings.max_concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return Transport(session, settings.timeout_s, settings.ca_bundle)
