"""A hostile HTTPS server on 127.0.0.1 for tests: each request is answered by a function that
writes raw bytes to the socket (a gzip bomb, one byte a second, a body 100,000 deep), with
the emulator's server certificate so the plugin's real TLS stack trusts it. Started by the
test that needs it, stopped when the test ends; every answer ends by itself."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

Answer = Callable[[str, socket.socket], None]  # (request path with query, client socket)


@contextmanager
def hostile_server(answer: Answer, cert_path: str, key_path: str) -> Iterator[str]:
    """The base URL (https://127.0.0.1:PORT) of a server answering every request with
    `answer`, for the duration of the block."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(client: socket.socket) -> None:
        try:
            with context.wrap_socket(client, server_side=True) as tls:
                tls.settimeout(30)
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    data = tls.recv(4096)
                    if not data:
                        return
                    request += data
                path = request.split(b" ", 2)[1].decode("latin-1")
                answer(path, tls)
        except (OSError, ssl.SSLError):
            pass  # the plugin hung up (its cap or deadline): that is the point

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def head(status: int = 200, length: int | None = None, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_answer(body: bytes, status: int = 200) -> Answer:
    def answer(_: str, client: socket.socket) -> None:
        client.sendall(head(status, len(body)) + body)
    return answer


@cache
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of `inflated_bytes` of JSON whitespace: about 1 MiB per GiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1024 * 1024)
    parts = [compressor.compress(b'{"value": [')]
    for _ in range(inflated_bytes // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(b"]}"))
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb_answer(inflated_bytes: int) -> Answer:
    bomb = gzip_bomb(inflated_bytes)

    def answer(_: str, client: socket.socket) -> None:
        client.sendall(head(200, len(bomb), Content_Encoding="gzip") + bomb)
    return answer


def drip_answer(body: bytes, *, headers_too: bool, every_s: float = 1.0,
                limit_s: float = 60.0) -> Answer:
    """The answer one byte every `every_s` (the headers at once unless `headers_too`);
    stops by itself after `limit_s`."""
    def answer(_: str, client: socket.socket) -> None:
        whole = head(200, len(body)) + body
        if not headers_too:
            client.sendall(whole[: len(whole) - len(body)])
            whole = body
        started = time.monotonic()
        for byte in whole:
            if time.monotonic() - started > limit_s:
                return
            client.sendall(bytes([byte]))
            time.sleep(every_s)
    return answer


def pages_answer(pages: dict[str, Any]) -> Answer:
    """JSON by request path (with query); a path not listed is a 404."""
    import json

    def answer(path: str, client: socket.socket) -> None:
        if path in pages:
            body = json.dumps(pages[path]).encode()
            client.sendall(head(200, len(body)) + body)
        else:
            body = b'{"error": {"code": "NotFound", "message": "gone"}}'
            client.sendall(head(404, len(body)) + body)
    return answer
