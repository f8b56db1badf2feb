"""HTTP side of the emulator (moto's "responses"): sign-in, Defender API and admin routes
over TLS, on one origin.

Stdlib only: a `ThreadingHTTPServer` whose connections are wrapped in TLS in their own
thread (so a slow handshake never blocks the accept loop), HTTP/1.1 keep-alive, and a
Content-Length on every answer so clients can reuse connections.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import gzip
import json
import logging
import re
import socket
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

from integration.emulator import graph, identity, security
from integration.emulator.backend import (
    CALL_TYPES,
    CLIENT_ID,
    Backend,
    SignInError,
    TokenExpired,
)
from integration.emulator.delegated import User
from integration.emulator.errors import ApiError
from integration.emulator.seed import TENANT_DOMAIN, TENANT_ID

logger = logging.getLogger(__name__)

_JSON = "application/json; charset=utf-8"
_ODATA = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
_MAX_BODY = 64 * 1024 * 1024
_MAX_TOP = 10_000
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_ANY_HASH = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_TENANT_PATH = re.compile(r"/([^/]+)/(?:v2\.0/)?\.well-known/openid-configuration")
_KEYS_PATH = re.compile(r"/([^/]+)/discovery/(?:v2\.0/)?keys")
_TOKEN_PATH = re.compile(r"/([^/]+)/oauth2/v2\.0/token")
_DEVICE_CODE_PATH = re.compile(r"/([^/]+)/oauth2/v2\.0/devicecode")
_FRONT_DOOR_502 = (
    "<!DOCTYPE html><html><head><title>502 - Web server received an invalid response while "
    "acting as a gateway or proxy server.</title></head><body><h1>Server Error</h1>"
    "<h2>502 - Web server received an invalid response while acting as a gateway or proxy "
    "server.</h2><p>There is a problem with the page you are looking for, and it cannot be "
    "displayed.</p></body></html>"
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    truncate: bool = False  # promise the whole body, send half, close

    @classmethod
    def json(cls, status: int, payload: Any, content_type: str = _JSON) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": content_type})


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Any  # http.client.HTTPMessage
    body: bytes
    origin: str  # scheme://host:port as the client addressed us; links point back there

    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # concurrency benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], backend: Backend, context: ssl.SSLContext):
        self.backend = backend
        self.context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)
        host, port = self.server_address[:2]
        self.base_url = f"https://{host!s}:{port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)  # a client that never finishes its handshake
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add 40 ms to every answer.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # e.g. a client that does not trust our CA: its problem, not ours
        with self._connections_lock:
            self._connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass  # the client went away mid-request
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            _close(conn)

    def close_connections(self) -> None:
        """Cut open keep-alive connections, so a stopped emulator really stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def token_endpoints(self, request_origin: str) -> set[str]:
        origins = {self.base_url, request_origin,
                   f"https://localhost:{self.server_address[1]}"}
        return {f"{origin}/{tenant}/oauth2/{version}token"
                for origin in origins for tenant in (TENANT_ID, TENANT_DOMAIN)
                for version in ("v2.0/", "")}


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mde-emulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections give their thread back eventually
    server: EmulatorServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr noise would drown test output

    # ------------------------------------------------------------------ plumbing

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True  # the body cannot be skipped reliably
            self._send(Response.json(400, {"error": "bad or oversized Content-Length"}))
            return
        host = self.headers.get("Host")
        request = Request(self.command, url.path, url.query, self.headers,
                          self.rfile.read(length) if length else b"",
                          f"https://{host}" if host else self.server.base_url)
        if request.path == "/_admin" or request.path.startswith("/_admin/"):
            self._send(admin(self.server.backend, request))
            return
        backend = self.server.backend
        seq, generation = backend.log.next_seq()
        arrived = time.time()  # retry tests measure the gaps between arrivals
        fault = backend.faults.take(request.method, request.path)
        response = self._faulted(fault, request) if fault else self._route(request)
        backend.log.add({
            "seq": seq,
            "time": arrived,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "status": None if response.drop else response.status,
            "client_id": _client_id(request),
            "user_agent": request.headers.get("User-Agent"),
            "accept_encoding": request.headers.get("Accept-Encoding"),
            "authorization": "Authorization" in request.headers,
            "fault": _fault_kind(fault),
        }, generation)
        self._send(response)

    def _faulted(self, fault: dict[str, Any], request: Request) -> Response:
        if fault.get("delay_s"):
            time.sleep(float(fault["delay_s"]))
        if fault.get("drop"):
            return Response(0, drop=True)
        if fault.get("pass"):
            response = self._route(request)
        elif fault.get("expire_token"):
            response = api_error(TokenExpired())
        elif fault.get("html"):
            page = fault["html"] if isinstance(fault["html"], str) else _FRONT_DOOR_502
            response = Response(int(fault.get("status", 502)), page.encode(),
                                {"Content-Type": "text/html"})
        elif "status" in fault or "body" in fault:
            response = _scripted(request, int(fault.get("status", 200)), fault.get("body"))
        else:  # only delay, headers or truncate: the real answer, altered
            response = self._route(request)
        response.headers.update({str(k): str(v) for k, v in (fault.get("headers") or {}).items()})
        response.truncate = bool(fault.get("truncate"))
        return response

    def _route(self, request: Request) -> Response:
        try:
            if request.path.startswith("/api/") or request.path == "/api":
                return defender_api(self.server, request)
            if security.is_security(request.path):  # Graph: alerts, incidents, comments
                return _security(self.server.backend, request)
            if graph.is_graph(request.path):  # Microsoft Graph: advanced hunting
                status, payload, headers = graph.answer(self.server.backend, request.method,
                                                        request.path, request.headers,
                                                        request.body)
                response = Response.json(status, payload)
                response.headers.update(headers)
                return response
            return sign_in(self.server, request)
        except ApiError as exc:
            return api_error(exc)
        except SignInError as exc:
            return sign_in_error(exc, request)
        except Exception:  # a bug in the emulator: answer like a server would, keep serving
            logger.exception("emulator failed on %s %s", request.method, request.path)
            return api_error(ApiError(500, "InternalServerError", "Emulator internal error."))

    def _send(self, response: Response) -> None:
        if response.drop:
            self.close_connection = True
            self._cut()
            return
        body = response.body
        headers = dict(response.headers)
        accepts = self.headers.get("Accept-Encoding", "")
        if body and not response.truncate and _accepts_gzip(accepts):
            body = gzip.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        self.send_response(response.status, _reason(response.status))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if response.truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self._cut()
            return
        self.wfile.write(body)
        self.wfile.flush()

    def _cut(self) -> None:
        # Close as a crashed front end would: TCP FIN after an orderly TLS close_notify,
        # so clients see "connection closed", not a TLS protocol error.
        try:
            self.wfile.flush()
            self.connection.settimeout(1)
            self.connection.unwrap()
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _client_id(request: Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return _unverified(auth[7:].strip()).get("appid")
    if request.method == "POST" and _TOKEN_PATH.fullmatch(request.path):
        form = _token_form(request)
        if form.get("client_id"):
            return form["client_id"]
        return _unverified(form.get("client_assertion", "")).get("iss")
    return None


def _unverified(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}


def _fault_kind(fault: dict[str, Any] | None) -> str | None:
    if not fault:
        return None
    for kind in ("drop", "truncate", "expire_token", "html", "pass"):
        if fault.get(kind):
            return kind
    if "status" in fault or "body" in fault:
        return f"status:{fault.get('status', 200)}"
    return "delay" if fault.get("delay_s") else "headers"


def _form(request: Request) -> dict[str, str]:
    text = request.body.decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _token_form(request: Request) -> dict[str, str]:
    form = _form(request)
    # client_secret_basic: Entra also takes the client id and secret in a Basic header.
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic" and "client_secret" not in form:
        try:
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, binascii.Error):
            return form
        form.setdefault("client_id", unquote(client_id))
        form["client_secret"] = unquote(secret)
    return form


def _scripted(request: Request, status: int, body: Any) -> Response:
    """A fault's own status and body; without a body, the default error for the route."""
    if body is None:
        if status < 400:
            return Response(status, b"", {"Content-Type": _JSON})
        if _TOKEN_PATH.fullmatch(request.path):
            error = "temporarily_unavailable" if status >= 429 else "invalid_request"
            return sign_in_error(SignInError(status, error, 90033, "A transient error has "
                                             "occurred. Please try again."), request)
        code = _ERROR_CODES.get(status, "Error")
        return api_error(ApiError(status, code, f"Injected {status} response."))
    if isinstance(body, str):
        return Response(status, body.encode(), {"Content-Type": _JSON})
    return Response.json(status, body)


_ERROR_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
                503: "ServiceUnavailable", 504: "GatewayTimeout"}


# ---------------------------------------------------------------------- sign-in

def sign_in(server: EmulatorServer, request: Request) -> Response:
    backend = server.backend
    if match := _TENANT_PATH.fullmatch(request.path):
        tenant = match.group(1)
        if tenant.lower() not in (TENANT_ID, TENANT_DOMAIN):
            raise SignInError(400, "invalid_tenant", 90002,
                              f"Tenant '{tenant}' not found. Check to make sure you have the "
                              "correct tenant ID and are signing into the correct cloud.")
        return Response.json(200, discovery_document(request.origin))
    if _KEYS_PATH.fullmatch(request.path):
        return Response.json(200, backend.tokens.jwks())
    if match := _TOKEN_PATH.fullmatch(request.path):
        if request.method != "POST":
            raise SignInError(400, "invalid_request", 900561,
                              "The endpoint only accepts POST requests. Received a "
                              f"{request.method} request.")
        answer = backend.tokens.issue(match.group(1), _token_form(request),
                                      server.token_endpoints(request.origin),
                                      backend.settings.token_lifetime_s)
        response = Response.json(200, answer)
        response.headers.update({"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})
        return response
    if match := _DEVICE_CODE_PATH.fullmatch(request.path):
        if request.method != "POST":
            raise SignInError(400, "invalid_request", 900561,
                              "The endpoint only accepts POST requests. Received a "
                              f"{request.method} request.")
        return Response.json(200, backend.tokens.start_device_code(
            match.group(1), _form(request), request.origin, backend.settings))
    if request.path == "/devicelogin":  # where the person would type the code
        return Response(200, _DEVICE_LOGIN_PAGE.encode(), {"Content-Type": "text/html"})
    if request.path in identity.PATHS:  # managed identity: IMDS and App Service style
        status, payload = identity.managed_identity_token(backend, request.method, request.path,
                                                          request.params(), request.headers)
        return Response.json(status, payload)
    raise ApiError(404, "NotFound", f"No route for {request.path}.")


_DEVICE_LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Enter code</title></head><body><h1>Enter code</h1>"
    "<p>This is the Defender emulator: there is no browser sign-in here. Approve or decline "
    "the code through the admin endpoint: <code>POST /_admin/device-codes</code> with "
    "<code>{\"user_code\": ..., \"user\": \"alice@contoso-emulator.onmicrosoft.com\"}</code> "
    "or <code>{\"user_code\": ..., \"decline\": true}</code>.</p></body></html>")


def discovery_document(origin: str) -> dict[str, Any]:
    base = f"{origin}/{TENANT_ID}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{origin}/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                             "tid", "ver", "at_hash", "c_hash"],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def sign_in_error(exc: SignInError, request: Request) -> Response:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (f"AADSTS{exc.code}: {exc.description} Trace ID: {trace} "
                   f"Correlation ID: {correlation} Timestamp: {now}")
    return Response.json(exc.status, {
        "error": exc.error,
        "error_description": description,
        "error_codes": [exc.code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{request.origin}/error?code={exc.code}",
    })


# ---------------------------------------------------------------------- Defender API

def api_error(exc: ApiError) -> Response:
    response = Response.json(exc.status, {"error": {"code": exc.code, "message": exc.message,
                                                    "target": str(uuid.uuid4())}})
    response.headers.update(exc.headers)
    return response


def defender_api(server: EmulatorServer, request: Request) -> Response:
    backend = server.backend
    settings = backend.settings
    if settings.latency_s:
        time.sleep(settings.latency_s)
    claims = backend.tokens.check(request.headers.get("Authorization"))
    viewer = backend.tokens.visible_to(claims)
    route = _api_route(request.path)
    if route is None:
        raise ApiError(404, "ResourceNotFound", f"Resource not found: {request.path}")
    call_type, answer = route
    if request.method != "GET":
        raise ApiError(405, "MethodNotAllowed",
                       f"The requested resource does not support http method '{request.method}'.")
    if call_type:
        backend.rate_check(claims, call_type)
    return answer(server, request, viewer)


# The answer to one route; a user's (the viewer's) lists hold only their device groups.
_Answer = Callable[[EmulatorServer, Request, "User | None"], Response]


def _api_route(path: str) -> tuple[str | None, _Answer] | None:
    parts = path.split("/")  # split before decoding: %2F stays inside its segment
    if len(parts) == 5 and parts[2] == "domains" and parts[4] == "machines":
        return CALL_TYPES[0], lambda s, r, v: _domain_machines(s, r, v, unquote(parts[3]))
    if len(parts) == 5 and parts[2] == "files" and parts[4] == "machines":
        return CALL_TYPES[1], lambda s, r, v: _file_machines(s, r, v, unquote(parts[3]))
    if len(parts) == 4 and parts[2] == "files":  # a file's facts: not per device group
        return CALL_TYPES[2], lambda s, r, v: _file_info(s, r, unquote(parts[3]))
    if len(parts) == 3 and parts[2] == "machines":
        return CALL_TYPES[3], _machines_list
    if len(parts) == 4 and parts[2] == "machines":
        return None, lambda s, r, v: _machine(s, r, v, unquote(parts[3]))
    return None


def _not_found(server: EmulatorServer, request: Request, message: str) -> Response:
    if server.backend.settings.not_found == "empty":
        return _page(server, request, [], 0, 0)
    raise ApiError(404, "NotFound", message)


def _visible(machines: list[dict[str, Any]] | None,
             viewer: User | None) -> list[dict[str, Any]] | None:
    if viewer is None or machines is None:
        return machines
    return [machine for machine in machines if viewer.sees(machine)]


def _domain_machines(server: EmulatorServer, request: Request, viewer: User | None,
                     domain: str) -> Response:
    if len(domain) > 253 or not _DOMAIN.fullmatch(domain.lower()):
        raise ApiError(400, "InvalidDomainName", f"Invalid domain name: '{domain}'.")
    machines = _visible(server.backend.dataset.domain_machines(domain), viewer)
    if not machines:
        return _not_found(server, request, f"Domain '{domain}' was not found.")
    end = min(len(machines), server.backend.settings.domain_cap)
    return _page(server, request, machines, 0, end)


def _file_machines(server: EmulatorServer, request: Request, viewer: User | None,
                   file_hash: str) -> Response:
    if not _SHA1.fullmatch(file_hash):
        raise ApiError(400, "InvalidHashValue", f"Invalid hash value: '{file_hash}'. "
                                                "Only SHA-1 hashes are supported.")
    machines = _visible(server.backend.dataset.file_machines(file_hash), viewer)
    if not machines:
        return _not_found(server, request, f"File '{file_hash}' was not found.")
    return _page(server, request, machines, 0, len(machines))


def _file_info(server: EmulatorServer, request: Request, file_hash: str) -> Response:
    if not _ANY_HASH.fullmatch(file_hash):
        raise ApiError(400, "InvalidHashValue", f"Invalid hash value: '{file_hash}'.")
    info = server.backend.dataset.file_info(file_hash)
    if info is None:  # an entity lookup: always 404, whatever not_found says
        raise ApiError(404, "NotFound", f"File '{file_hash}' was not found.")
    context = f"{request.origin}/api/$metadata#Files/$entity"
    return Response.json(200, {"@odata.context": context, **info}, _ODATA)


def _machine(server: EmulatorServer, request: Request, viewer: User | None,
             machine_id: str) -> Response:
    machine = server.backend.dataset.machine(machine_id)
    if machine is None or (viewer is not None and not viewer.sees(machine)):
        raise ApiError(404, "NotFound", f"Machine '{machine_id}' was not found.")
    context = f"{request.origin}/api/$metadata#Machines/$entity"
    return Response.json(200, {"@odata.context": context, **machine}, _ODATA)


def _security(backend: Backend, request: Request) -> Response:
    claims = backend.tokens.graph_claims(request.headers.get("Authorization"))
    backend.rate_check(claims, "security")
    try:
        body = json.loads(request.body) if request.body else None
    except ValueError:
        raise ApiError(400, "BadRequest", "The request body is not valid JSON.") from None
    payload = security.answer(backend.security, request.method, request.path, request.params(),
                              claims.get("roles") or [], body, request.origin)
    return Response.json(200, payload, _ODATA)


def _machines_list(server: EmulatorServer, request: Request, viewer: User | None) -> Response:
    params = request.params()
    top = _int_param(params, "$top", _MAX_TOP)
    skip = _int_param(params, "$skip", 0)
    if top > _MAX_TOP:
        raise ApiError(400, "BadRequest", f"Invalid $top value: {top}. Max value is {_MAX_TOP}.")
    machines = _visible(server.backend.dataset.machines, viewer) or []
    return _page(server, request, machines, min(skip, len(machines)),
                 min(skip + top, len(machines)))


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(400, "BadRequest", f"Invalid {name} value: '{params[name]}'.")
    return value


def _page(server: EmulatorServer, request: Request, items: list[dict[str, Any]],
          start: int, end: int) -> Response:
    """One OData page of items[start:end]; with page_size set, a nextLink to the rest."""
    token = request.params().get("$skiptoken")
    if token is not None:
        start, end = _decode_skiptoken(token)
        end = min(end, len(items))
    page_size = server.backend.settings.page_size
    stop = end if page_size is None else min(end, start + page_size)
    body: dict[str, Any] = {"@odata.context": f"{request.origin}/api/$metadata#Machines",
                            "value": items[start:stop]}
    if stop < end:
        token = base64.urlsafe_b64encode(json.dumps([stop, end]).encode()).decode()
        body["@odata.nextLink"] = f"{request.origin}{request.path}?$skiptoken={token}"
    return Response.json(200, body, _ODATA)


def _decode_skiptoken(token: str) -> tuple[int, int]:
    try:
        start, end = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(start, int) and isinstance(end, int) and 0 <= start <= end:
            return start, end
    except (ValueError, TypeError, binascii.Error):
        pass
    raise ApiError(400, "BadRequest", "Invalid $skiptoken value.")


# ---------------------------------------------------------------------- admin

def admin(backend: Backend, request: Request) -> Response:
    """Unauthenticated control endpoints; never logged, never faulted."""
    route = (request.method, request.path.rstrip("/"))
    try:
        payload = json.loads(request.body) if request.body else {}
    except ValueError:
        return Response.json(400, {"error": "body is not JSON"})
    try:
        return _admin_route(backend, request, route, payload)
    except ValueError as exc:
        return Response.json(400, {"error": str(exc)})


def _admin_route(backend: Backend, request: Request, route: tuple[str, str],
                 payload: Any) -> Response:
    ok = Response.json(200, {"ok": True})
    if route == ("GET", "/_admin/health"):
        return ok
    if route == ("GET", "/_admin/requests"):
        prefix = request.params().get("path_prefix")
        return Response.json(200, {"requests": backend.log.entries(prefix)})
    if route == ("DELETE", "/_admin/requests"):
        backend.log.clear()
        return ok
    if route == ("POST", "/_admin/reset"):
        backend.reset()
        return ok
    if route == ("GET", "/_admin/config"):
        return Response.json(200, backend.settings.to_dict())
    if route == ("POST", "/_admin/config"):
        if not isinstance(payload, dict):
            raise ValueError("config body must be an object")
        return Response.json(200, backend.configure(payload).to_dict())
    if route == ("GET", "/_admin/faults"):
        return Response.json(200, {"faults": backend.faults.list()})
    if route == ("POST", "/_admin/faults"):
        if not isinstance(payload, dict):
            raise ValueError("fault body must be an object")
        return Response.json(200, {"id": backend.faults.add(payload)})
    if route == ("DELETE", "/_admin/faults"):
        backend.faults.clear()
        return ok
    if route == ("POST", "/_admin/tokens/revoke"):
        backend.tokens.revoke_all()
        return ok
    if route == ("POST", "/_admin/alerts"):
        if not isinstance(payload, dict):
            raise ValueError("alerts body must be {alerts: [...], incidents: [...]}")
        return Response.json(200, backend.security.add(payload))
    if route == ("GET", "/_admin/alerts"):
        return Response.json(200, {"alerts": backend.security.alerts(),
                                   "incidents": backend.security.incidents(False)})
    if route == ("GET", "/_admin/dataset"):
        return Response.json(200, backend.dataset.summary())
    if route == ("POST", "/_admin/dataset"):
        if not isinstance(payload, dict):
            raise ValueError("dataset body must be an object")
        return Response.json(200, backend.load_dataset(payload).summary())
    answer = _admin_users(backend, route, payload)
    if answer is not None:
        return answer
    known = {"/_admin/health", "/_admin/requests", "/_admin/reset", "/_admin/config",
             "/_admin/faults", "/_admin/tokens/revoke", "/_admin/dataset", "/_admin/users",
             "/_admin/users/token", "/_admin/users/revoke", "/_admin/device-codes",
             "/_admin/alerts"}
    if route[1] in known:
        return Response.json(405, {"error": f"{route[0]} not allowed on {route[1]}"})
    return Response.json(404, {"error": f"no admin route {route[1]}"})


def _admin_users(backend: Backend, route: tuple[str, str], payload: Any) -> Response | None:
    """The users' side of the browser: approve or decline a device code, the token a
    platform holds for its analyst, and ending a user's sessions."""
    tokens = backend.tokens
    if route == ("GET", "/_admin/users"):
        return Response.json(200, {"users": [u.to_dict() for u in tokens.users.values()]})
    if route == ("GET", "/_admin/device-codes"):
        return Response.json(200, {"pending": tokens.device_codes.pending()})
    if route[0] != "POST" or route[1] not in ("/_admin/device-codes", "/_admin/users/token",
                                              "/_admin/users/revoke"):
        return None
    if not isinstance(payload, dict):
        raise ValueError("body must be an object")
    if route[1] == "/_admin/users/revoke":
        upn = payload.get("user")
        if upn is not None and upn not in tokens.users:
            raise ValueError(f"no user {upn!r}")
        return Response.json(200, {"revoked": tokens.refresh_tokens.revoke(upn)})
    if route[1] == "/_admin/users/token":
        lifetime = payload.get("lifetime_s", backend.settings.token_lifetime_s)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise ValueError("lifetime_s must be an integer")
        token = tokens.user_assertion(str(payload.get("user")),
                                      str(payload.get("audience") or CLIENT_ID), lifetime)
        return Response.json(200, {"access_token": token})
    user_code = payload.get("user_code")
    if not isinstance(user_code, str):
        raise ValueError("user_code must be a string")
    if payload.get("decline"):
        tokens.device_codes.decide(user_code, None)
    else:
        user = tokens.users.get(str(payload.get("user")))
        if user is None:
            raise ValueError(f"no user {payload.get('user')!r}; known: {sorted(tokens.users)}")
        tokens.device_codes.decide(user_code, user)
    return Response.json(200, {"ok": True})
