"""Shared fixtures: one emulator per test session (HTTPS on 127.0.0.1), reset before each
test that uses it, and a check that every envelope the suite produces matches its schema.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import actions, schemas
from integration.emulator import Emulator
from integration.service import Enricher

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
            assert_valid_envelope(envelope)
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


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(state_dir=tmp_path_factory.mktemp("emulator")) as emulator:
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
