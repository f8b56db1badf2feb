"""A real TAXII 2.1 server on 127.0.0.1 for the tests: OASIS's `medallion` (a test extra)
with its memory backend, over HTTPS with a certificate from the emulator's CA, in a child
process on a fresh port, stopped at the end.

Objects are added through the TAXII API itself (taxii2-client's add_objects), so the server
stamps each with its own `date_added`, as a real collection does.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 20.0
API_ROOT = "intel"
COLLECTION_ID = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
USER, PASSWORD = "sweeper", "taxii-test-password"

# Runs in the child: medallion's app, served by werkzeug over TLS (medallion's own script
# has no TLS option).
_LAUNCHER = """
import json, sys
from medallion import application_instance, register_blueprints, set_config
config = json.load(open(sys.argv[1]))
for name in ("users", "taxii", "backend"):
    set_config(application_instance, name, config)
register_blueprints(application_instance)
application_instance.run(host="127.0.0.1", port=int(sys.argv[2]),
                         ssl_context=(sys.argv[3], sys.argv[4]))
"""


@dataclass
class TaxiiServer:
    base_url: str
    ca_path: str

    @property
    def collection_url(self) -> str:
        return f"{self.base_url}/{API_ROOT}/collections/{COLLECTION_ID}/"

    def add(self, objects: list[dict[str, Any]]) -> None:
        """Add objects through the TAXII API (one envelope), waiting for the server to
        finish: its date_added is the time it took them."""
        from taxii2client.common import _HTTPConnection
        from taxii2client.v21 import Collection

        connection = _HTTPConnection(user=USER, password=PASSWORD, verify=self.ca_path,
                                     version="2.1")
        connection.session.trust_env = False  # the tests' REQUESTS_CA_BUNDLE is not our CA
        collection = Collection(self.collection_url, conn=connection)
        status = collection.add_objects({"objects": objects}, wait_for_completion=True,
                                        poll_interval=0.2, timeout=20)
        assert status.failure_count == 0, status.failures
        time.sleep(0.01)  # the next addition gets a later date_added


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _data(base_url: str) -> dict[str, Any]:
    return {
        "/discovery": {"title": "mde-enrich test TAXII server",
                       "default": f"{base_url}/{API_ROOT}/",
                       "api_roots": [f"{base_url}/{API_ROOT}/"]},
        API_ROOT: {
            "information": {"title": "Threat intel", "versions": ["application/taxii+json;"
                                                                  "version=2.1"],
                            "max_content_length": 10_000_000},
            "status": [],
            "collections": [{"id": COLLECTION_ID, "title": "Indicators", "can_read": True,
                             "can_write": True,
                             "media_types": ["application/stix+json;version=2.1"],
                             "objects": [], "manifest": []}],
        },
    }


@contextmanager
def taxii_server(folder: Path, ca_path: str, cert_path: str, key_path: str
                 ) -> Iterator[TaxiiServer]:
    port = _free_port()
    base_url = f"https://127.0.0.1:{port}"
    data_path, config_path = folder / "taxii-data.json", folder / "taxii-config.json"
    data_path.write_text(json.dumps(_data(base_url)), encoding="utf-8")
    config_path.write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend", "filename": str(data_path)},
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": 100}}), encoding="utf-8")
    log = (folder / "taxii.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(config_path), str(port),
                                cert_path, key_path], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError("the TAXII server exited: "
                                   + (folder / "taxii.log").read_text(errors="replace")[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the TAXII server did not start") from None
                time.sleep(0.1)
        yield TaxiiServer(base_url, ca_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
