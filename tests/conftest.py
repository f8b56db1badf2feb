"""Shared fixtures: one emulator per test session (HTTPS on 127.0.0.1), reset before each
test that uses it, and a check that every envelope the suite produces matches its schema.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import actions, schemas
from integration.emulator import Emulator
from integration.lookup.service import Enricher
from integration.values.envelope import Envelope

# Fast retries in tests: the policy's shape is under test, not its production pace.
FAST_RETRIES = {"backoff_base_s": 0.02, "backoff_cap_s": 0.1}

OUTPUT_SCHEMA_BY_ACTION = {
    "get_machines_for_domain": "envelope.schema.json",
    "get_machines_for_file_hash": "envelope.schema.json",
    "test_connectivity": "connectivity.output.schema.json",
}


def assert_valid_envelope(envelope: dict[str, Any]) -> None:
    schema = OUTPUT_SCHEMA_BY_ACTION[envelope["action"]]
    problems = schemas.errors(schema, envelope)
    assert not problems, f"envelope does not match {schema}: {problems[:3]}"


@pytest.fixture(autouse=True)
def every_envelope_matches_its_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap the two places envelopes leave the plugin so each one is checked as it goes."""

    def checked(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            envelope = function(*args, **kwargs)
            assert_valid_envelope(envelope.to_dict() if isinstance(envelope, Envelope)
                                  else envelope)
            return envelope
        return wrapper

    monkeypatch.setattr(Enricher, "lookup", checked(Enricher.lookup))
    for name in ("get_machines_for_domain", "get_machines_for_file_hash", "test_connectivity"):
        monkeypatch.setattr(actions, name, checked(getattr(actions, name)))


@pytest.fixture(autouse=True)
def no_ambient_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own MDE_* variables must not leak into the tests."""
    import os

    for variable in [name for name in os.environ if name.startswith("MDE_")]:
        monkeypatch.delenv(variable)


# Secrets of the running emulator's apps; every test's logs are checked for them.
KNOWN_SECRETS: set[str] = set()


@pytest.fixture(autouse=True)
def secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every library's log output at DEBUG, for every test, must hold no secret or token."""
    from integration.defender.auth import TokenProvider

    caplog.set_level(logging.DEBUG)
    handed_out: list[str] = []
    original = TokenProvider.access_token

    def recording(self: TokenProvider) -> str:
        token = original(self)
        handed_out.append(token)
        return token

    monkeypatch.setattr(TokenProvider, "access_token", recording)
    yield
    # The emulator is the other side of the wire: its own log may name what it issued.
    text = "\n".join(record.getMessage() for record in caplog.records
                     if not record.name.startswith("integration.emulator"))
    for secret in KNOWN_SECRETS | set(handed_out):
        assert secret not in text, "a secret or an access token reached the logs"


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(state_dir=tmp_path_factory.mktemp("emulator")) as emulator:
        KNOWN_SECRETS.update({emulator.client_secret, emulator.noroles_client_secret,
                              emulator.client_cert_password})
        yield emulator


@pytest.fixture
def emulator(emulator_session: Emulator) -> Emulator:
    emulator_session.admin.reset()
    return emulator_session


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite3'}"


@pytest.fixture
def config(emulator: Emulator, state_url: str) -> dict[str, Any]:
    return emulator.config(state=state_url, **FAST_RETRIES)


@pytest.fixture
def config_file(config: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# --- redis (state backends) ---
# A real redis-server (tests/redis_server.py): found on PATH or installed with apt-get, started
# on a fresh port for the session. Missing Redis fails the tests that need it; it never skips.


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis://127.0.0.1:<port>/0 of a private redis-server that lives for the session."""
    import contextlib

    from redis_server import RedisUnavailable, running_redis

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(running_redis())
        except RedisUnavailable as exc:
            pytest.fail(f"these tests need a real Redis: {exc}", pytrace=False)
        yield url


@pytest.fixture
def redis_state_url(redis_url: str) -> str:
    """The session's Redis, emptied: a state URL for one test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url
# --- end redis (state backends) ---
