"""A local, faithful Microsoft Defender for Endpoint API + Entra ID sign-in emulator.

One HTTPS origin serves the OpenID discovery document, the v2 token endpoint, the Defender
API and `/_admin` control endpoints. Tests and the demo drive it only over HTTP::

    with Emulator(state_dir=tmp_path) as emu:
        config = emu.config()          # a ready plugin configuration
        emu.admin.add_fault("/api/", 503)

Layout: `backend` holds state and rules, `server` speaks HTTP, `certs` makes the CA and
keys, `seed` builds the default tenant, `admin` is the control client.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from integration.emulator import backend as _backend
from integration.emulator import delegated as _delegated
from integration.emulator import seed as _seed
from integration.emulator.admin import AdminClient, AdminError
from integration.emulator.backend import Backend, Settings, load_dataset_source
from integration.emulator.certs import KeyMaterial, ensure_key_material
from integration.emulator.server import EmulatorServer

__all__ = ["AdminClient", "AdminError", "Emulator", "default_state_dir", "serve_forever"]

DatasetSource = Mapping[str, Any] | str | os.PathLike[str] | None


def default_state_dir() -> Path:
    import platformdirs  # only needed when the caller gives no state_dir

    return Path(platformdirs.user_cache_dir("mde-enrich")) / "emulator"


class Emulator:
    """Runs the emulator on a background thread; use as a context manager or start()/stop()."""

    tenant_id = _seed.TENANT_ID
    client_id = _backend.CLIENT_ID
    client_secret = _backend.CLIENT_SECRET
    cert_client_id = _backend.CERT_CLIENT_ID
    noroles_client_id = _backend.NOROLES_CLIENT_ID
    noroles_client_secret = _backend.NOROLES_CLIENT_SECRET
    readwrite_client_id = _backend.READWRITE_CLIENT_ID  # holds only Machine.ReadWrite.All
    readwrite_client_secret = _backend.READWRITE_CLIENT_SECRET
    mi_system_client_id = _backend.MI_SYSTEM_CLIENT_ID  # the resource's managed identities
    mi_user_client_id = _backend.MI_USER_CLIENT_ID
    mi_user_resource_id = _backend.MI_USER_RESOURCE_ID
    mi_identity_header = _backend.MI_IDENTITY_HEADER  # App Service's IDENTITY_HEADER
    public_client_id = _backend.PUBLIC_CLIENT_ID  # device code; delegated Machine.Read
    public_noscope_client_id = _backend.PUBLIC_NOSCOPE_CLIENT_ID  # delegated Alert.Read only
    # Users: alice (View Data, Finance), bob (no Defender role), carol (View Data, The-A-Team
    # and Servers), dana (View Data, every device group).
    alice, bob, carol, dana = _delegated.ALICE, _delegated.BOB, _delegated.CAROL, _delegated.DANA

    def __init__(self, state_dir: str | os.PathLike[str] | None = None,
                 dataset: DatasetSource = None, page_size: int | None = None,
                 not_found: str = "404", port: int = 0, host: str = "127.0.0.1"):
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._dataset_source = dataset
        # Validate now, so a typo fails at construction rather than at first request.
        self._settings = Settings().updated({"page_size": page_size, "not_found": not_found})
        self._address = (host, port)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._keys: KeyMaterial | None = None
        self._admin: AdminClient | None = None
        self._bound_port: int | None = None  # kept after stop(), so URLs stay printable

    # -- lifecycle
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        keys = ensure_key_material(self.state_dir)
        dataset = load_dataset_source(self._dataset_source)
        state = Backend(dataset, self._settings, keys.signing_key, keys.client_certificate)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(keys.server_cert_path, keys.server_key_path)
        context.set_alpn_protocols(["http/1.1"])
        server = EmulatorServer(self._address, state, context)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=f"mde-emulator:{server.server_address[1]}", daemon=True)
        thread.start()
        self._server, self._thread, self._keys = server, thread, keys
        self._bound_port = server.server_address[1]
        self._admin = AdminClient(self.base_url, keys.ca_path)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._admin is not None:
            self._admin.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where and how to reach it
    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the emulator has not been started: call start() first")
        return self._bound_port

    @property
    def base_url(self) -> str:
        host = self._address[0]
        # The certificate names 127.0.0.1 and localhost; a wildcard bind is reached locally.
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"https://{host}:{self.port}"

    @property
    def ca_path(self) -> str:
        return self._key_material().ca_path

    @property
    def client_cert_path(self) -> str:
        """PEM with the certificate and its RSA key, encrypted with client_cert_password."""
        return self._key_material().client_cert_path

    @property
    def client_cert_pfx_path(self) -> str:
        return self._key_material().client_pfx_path

    @property
    def client_cert_password(self) -> str:
        return self._key_material().client_cert_password

    @property
    def client_cert_thumbprint(self) -> str:
        """SHA-1 thumbprint (hex) of the client certificate, as the Azure portal shows it."""
        return self._key_material().client_cert_sha1

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._admin

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A plugin configuration for the app with Machine.Read.All, secret-authenticated."""
        config: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_base_url": self.base_url,
            "graph_base_url": self.base_url,  # Graph's advanced hunting is served here too
            "authority_host": self.base_url,
            "ca_bundle": self.ca_path,
        }
        config.update(overrides)
        return config

    def cert_config(self, **overrides: Any) -> dict[str, Any]:
        """The same, for the certificate-authenticated app."""
        config = self.config(client_id=self.cert_client_id, client_certificate={
            "path": self.client_cert_path, "password": self.client_cert_password})
        del config["client_secret"]
        config.update(overrides)
        return config

    def managed_identity_config(self, **overrides: Any) -> dict[str, Any]:
        """The same, signing in with a managed identity through this emulator's IMDS
        endpoint: the system-assigned one, or add managed_identity_client_id."""
        config = self.config(auth="managed_identity", managed_identity_endpoint=self.base_url)
        for key in ("client_id", "client_secret", "authority_host"):
            del config[key]
        config.update(overrides)
        return config

    def device_code_config(self, **overrides: Any) -> dict[str, Any]:
        """The same, for an analyst signing in as themself (`mde-enrich login`) through the
        public client app."""
        config = self.config(auth="device_code", client_id=self.public_client_id)
        del config["client_secret"]
        config.update(overrides)
        return config

    def _key_material(self) -> KeyMaterial:
        if self._keys is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._keys


STABLE_CONFIG = "emulator-config.yaml"


def serve_forever(host: str = "127.0.0.1", port: int = 0,
                  state_dir: str | os.PathLike[str] | None = None,
                  dataset: DatasetSource = None, page_size: int | None = None,
                  not_found: str = "404") -> None:
    """Run the emulator in the foreground until Ctrl-C or SIGTERM (`mde-enrich emulator`).

    The first emulator of a state folder keeps its config at a stable path
    (`emulator-config.yaml`, kept after it stops) and, restarted, serves on the port that
    file names when it is free, so MDE_CONFIG pointing there still works. Another emulator
    running on the same folder at once writes `emulator-config-PORT.yaml`, removed at stop.
    """
    folder = Path(state_dir) if state_dir is not None else default_state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _first_of_folder(folder) as first:
        stable = folder / STABLE_CONFIG
        wanted = port or (_port_in(stable) if first else 0)
        emulator = Emulator(state_dir=folder, dataset=dataset, page_size=page_size,
                            not_found=not_found, port=wanted, host=host)
        try:
            emulator.start()
        except OSError:
            if port or not wanted:
                raise  # the port asked for is taken: say so
            emulator = Emulator(state_dir=folder, dataset=dataset, page_size=page_size,
                                not_found=not_found, port=0, host=host).start()
        try:
            config_path = stable if first else \
                folder / f"emulator-config-{emulator.base_url.rsplit(':', 1)[-1]}.yaml"
            _serve(emulator, config_path)
        finally:
            emulator.stop()
            if not first:
                config_path.unlink(missing_ok=True)
    print("Emulator stopped.", file=sys.stderr)


def _serve(emulator: Emulator, config_path: Path) -> None:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = emulator.config()
    # It holds the emulator app's secret: owner-only, like every secret on disk.
    descriptor = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(yaml.safe_dump(config, sort_keys=False))
    # A local test double: printing its own fake secret is the point.
    print(f"Defender emulator listening on {emulator.base_url}")
    print(f"CA certificate: {emulator.ca_path}")
    print(f"Plugin config:  {config_path}")
    print(yaml.safe_dump(config, sort_keys=False), end="")
    print(f"Certificate app: client_id {emulator.cert_client_id}, "
          f"cert {emulator.client_cert_path} (password {emulator.client_cert_password})")
    print(f"Try: mde-enrich domain evil.example --config {config_path}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _port_in(config_path: Path) -> int:
    """The port of the api_base_url a stable config names (0 when there is none)."""
    try:
        url = yaml.safe_load(config_path.read_text(encoding="utf-8"))["api_base_url"]
        return int(str(url).rsplit(":", 1)[-1])
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return 0


@contextlib.contextmanager
def _first_of_folder(folder: Path) -> Iterator[bool]:
    """True while this process is the only emulator on `folder` (an exclusive lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: one emulator per folder is assumed
        yield True
        return
    with open(folder / "emulator.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
