"""Key material for the emulator: a private CA, its TLS server certificate, the token
signing key and an app's client certificate.

Everything lives in `state_dir` and is reused when present and still valid, so restarting
the emulator keeps the same CA (clients already told to trust it keep working) and costs
no key generation. Files are written atomically under a lock because several test
processes may start emulators on the same directory at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:  # POSIX only; on other systems concurrent first starts are simply not serialized
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# Not a secret: the emulator is a local test double and tests must be able to read it.
CLIENT_CERT_PASSWORD = "emulator-cert-password"

_VALIDITY = dt.timedelta(days=825)
# Regenerate well before expiry so a long-lived state_dir never serves an expired chain.
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class KeyMaterial:
    """Paths and loaded keys the server needs. Paths are strings for easy use in configs."""

    ca_path: str
    server_cert_path: str
    server_key_path: str
    client_cert_path: str  # PEM: the certificate and its password-encrypted RSA key
    client_pfx_path: str  # the same pair as PKCS#12, same password
    client_cert_password: str
    client_certificate: x509.Certificate
    signing_key: rsa.RSAPrivateKey

    @property
    def client_cert_sha1(self) -> str:
        # SHA-1 here is a certificate thumbprint (x5t), as Entra ID uses it, not a security hash.
        return self.client_certificate.fingerprint(hashes.SHA1()).hex()

    @property
    def client_cert_sha256(self) -> str:
        return self.client_certificate.fingerprint(hashes.SHA256()).hex()


def ensure_key_material(state_dir: str | os.PathLike[str]) -> KeyMaterial:
    """Load the key material from `state_dir`, creating or renewing what is missing."""
    root = Path(state_dir)
    # Owner-only, parents included: the folder holds keys, and the default one sits in the
    # same cache folder as the plugin's state (which holds tokens).
    for folder in (*reversed(root.parents), root):
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)  # another emulator may race us
    with _locked(root / ".certs.lock"):
        loaded = _load(root)
        if loaded is None:
            _generate(root)
            loaded = _load(root)
        if loaded is None:  # pragma: no cover - only if the disk lies to us
            raise RuntimeError(f"could not create emulator key material in {root}")
        return loaded


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _paths(root: Path) -> dict[str, Path]:
    return {
        "ca": root / "ca.pem",
        "ca_key": root / "ca-key.pem",
        "server_cert": root / "server.pem",
        "server_key": root / "server-key.pem",
        "signing_key": root / "token-signing-key.pem",
        "client_cert": root / "client-cert.pem",
        "client_pfx": root / "client-cert.pfx",
    }


def _load(root: Path) -> KeyMaterial | None:
    paths = _paths(root)
    if not all(p.exists() for p in paths.values()):
        return None
    try:
        ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
        server = x509.load_pem_x509_certificate(paths["server_cert"].read_bytes())
        client_pem = paths["client_cert"].read_bytes()
        client = x509.load_pem_x509_certificate(client_pem)
        signing_key = serialization.load_pem_private_key(
            paths["signing_key"].read_bytes(), password=None
        )
    except ValueError:
        return None  # a half-written or foreign file: start over
    horizon = dt.datetime.now(dt.timezone.utc) + _RENEW_BEFORE
    if any(c.not_valid_after_utc < horizon for c in (ca, server, client)):
        return None
    if server.issuer != ca.subject or not isinstance(signing_key, rsa.RSAPrivateKey):
        return None
    return KeyMaterial(
        ca_path=str(paths["ca"]),
        server_cert_path=str(paths["server_cert"]),
        server_key_path=str(paths["server_key"]),
        client_cert_path=str(paths["client_cert"]),
        client_pfx_path=str(paths["client_pfx"]),
        client_cert_password=CLIENT_CERT_PASSWORD,
        client_certificate=client,
        signing_key=signing_key,
    )


def _generate(root: Path) -> None:
    paths = _paths(root)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate clock skew
    password = CLIENT_CERT_PASSWORD.encode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mde-enrich emulator CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    # The SAN carries both names clients use; strict verifiers (Python 3.13's
    # VERIFY_X509_STRICT) also want the AKI and EKU extensions present.
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    # App certificates registered in Entra ID are usually self-signed; RSA because Entra
    # only accepts RSA keys for client assertions.
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "mde-enrich emulator client")]
    )
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(client_name)
        .issuer_name(client_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(client_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    encrypted = serialization.BestAvailableEncryption(password)
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(paths["ca_key"], ca_key.private_bytes(pem, pkcs8, plain))
    _write(paths["server_key"], server_key.private_bytes(pem, pkcs8, plain))
    # Private keys stay owner-only (the default); certificates are public.
    _write(paths["server_cert"], server_cert.public_bytes(pem) + ca_cert.public_bytes(pem),
           0o644)
    _write(paths["signing_key"], signing_key.private_bytes(pem, pkcs8, plain))
    _write(
        paths["client_cert"],
        client_cert.public_bytes(pem) + client_key.private_bytes(pem, pkcs8, encrypted),
    )
    _write(
        paths["client_pfx"],
        pkcs12.serialize_key_and_certificates(
            b"mde-enrich-emulator-client", client_key, client_cert, None, encrypted
        ),
    )
    # The CA goes last: its presence with valid partners is what _load trusts.
    _write(paths["ca"], ca_cert.public_bytes(pem), 0o644)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
