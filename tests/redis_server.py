"""A real, throwaway redis-server on 127.0.0.1 for the tests.

`redis-server` is taken from PATH or installed with apt-get (Debian's package). It runs on a
fresh free port with no persistence, in the foreground as our child process, and is stopped at
the end. A server left over from an earlier run cannot matter: every run picks a new port and
checks that the server answering is the one it started.

Failures raise RedisUnavailable with a message saying what to do; the fixture turns that into
a test failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 15.0
INSTALL_TIMEOUT_S = 600.0
PORT_ATTEMPTS = 3


class RedisUnavailable(RuntimeError):
    pass


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=INSTALL_TIMEOUT_S, check=False)


def find_or_install_redis_server() -> str:
    """The path of redis-server, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise RedisUnavailable("redis-server is not on PATH and apt-get is not available to "
                               "install it; install Redis (>= 5) and rerun")
    result = _run([apt_get, "install", "-y", "redis-server"])
    if result.returncode != 0:  # maybe only the package lists are stale or missing
        update = _run([apt_get, "update"])
        result = _run([apt_get, "install", "-y", "redis-server"])
        if result.returncode != 0:
            raise RedisUnavailable(
                "redis-server is not on PATH and `apt-get install -y redis-server` failed "
                f"(apt-get update exit {update.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}")
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if found is None:
        raise RedisUnavailable("apt-get installed redis-server but it is not on PATH")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answering_pid(port: int) -> int | None:
    """The process id of the redis-server answering on the port, or None when none answers."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1,
                         socket_connect_timeout=1)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    problems = []
    for _ in range(PORT_ATTEMPTS):
        port = _free_port()
        log = workdir / f"redis-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                 "--port", str(port), "--daemonize", "no", "--dir", str(workdir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answering_pid(port) == process.pid:
                return process, port
            time.sleep(0.05)
        _stop(process)
        problems.append(f"port {port}: {log.read_text(errors='replace').strip()[-300:]}")
    raise RedisUnavailable(f"redis-server ({binary}) did not start: " + " | ".join(problems))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def running_redis() -> Iterator[str]:
    """Start a private redis-server and yield its URL (database 0); stop it afterwards."""
    binary = find_or_install_redis_server()
    with tempfile.TemporaryDirectory(prefix="mde-redis-") as workdir:
        process, port = _start(binary, Path(workdir))
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)
