"""Many processes, one state: the token is fetched once and the rate budget holds for all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.emulator import Emulator, seed


@pytest.fixture(params=["sqlite", "redis"])
def shared_state(request: pytest.FixtureRequest, state_url: str) -> str:
    """The same multi-process behaviour on both state backends."""
    return state_url if request.param == "sqlite" else request.getfixturevalue("redis_state_url")


@pytest.fixture
def shared_config_file(emulator: Emulator, shared_state: str, tmp_path: Path) -> Path:
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(emulator.config(state=shared_state)))
    return path


def cli(config_path: Path, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "integration.cli", *argv, "--config",
                             str(config_path), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, json.loads(out), err


def test_cli_processes_in_a_row_fetch_one_token_between_them(shared_config_file: Path,
                                                             emulator: Emulator) -> None:
    for value in (seed.EVIL_DOMAIN, seed.PHISH_DOMAIN, seed.IDN_DOMAIN):
        status, _, err = finish(cli(shared_config_file, "domain", value))
        assert status == 0, err
    assert len(emulator.admin.token_calls()) == 1


def test_a_repeat_lookup_in_a_new_process_within_the_ttl_makes_no_api_call(
        shared_config_file: Path, emulator: Emulator) -> None:
    finish(cli(shared_config_file, "domain", seed.EVIL_DOMAIN))
    emulator.admin.clear_log()
    _, envelopes, _ = finish(cli(shared_config_file, "domain", seed.EVIL_DOMAIN))
    assert envelopes[0]["summary"]["cached"] is True
    assert emulator.admin.requests_log() == []


def test_four_processes_stay_inside_one_shared_budget(emulator: Emulator, shared_state: str,
                                                      tmp_path: Path) -> None:
    domains = sorted(emulator.admin.dataset_summary()["domains"])[:40]
    assert len(set(domains)) == 40
    config = emulator.config(state=shared_state, rate_limit={"per_minute": 30, "per_hour": 1500},
                             max_rate_wait_s=2)
    config_path = tmp_path / "budget.yaml"
    config_path.write_text(yaml.safe_dump(config))
    processes = [cli(config_path, "domain", *domains[i::4]) for i in range(4)]
    envelopes = [envelope for process in processes for envelope in finish(process)[1]]

    calls = sorted(call["time"] for call in emulator.admin.api_calls())
    busiest = max(sum(1 for t in calls if start <= t < start + 60) for start in calls)
    assert busiest <= 30
    outcomes = {e["status"] if e["status"] != "error" else e["error"]["code"] for e in envelopes}
    assert outcomes <= {"success", "not_found", "rate_limited"}, \
        [e["error"]["message"] for e in envelopes if e["status"] == "error"]
    assert len(envelopes) == 40
    assert sum(e["status"] != "error" for e in envelopes) == 30


@pytest.mark.parametrize("flow", ["wrong-secret", "success", "certificate"])
def test_no_secret_reaches_output_or_verbose_logs(emulator: Emulator, state_url: str,
                                                  tmp_path: Path, flow: str) -> None:
    sentinel = "SENTINEL-s3cr3t-value-4c0ffee"
    secrets = [emulator.client_secret, emulator.client_cert_password, sentinel]
    config = emulator.config(state=state_url)
    if flow == "wrong-secret":
        config["client_secret"] = sentinel
    elif flow == "certificate":
        del config["client_secret"]
        config.update(client_id=emulator.cert_client_id, client_certificate={
            "path": emulator.client_cert_path, "password": emulator.client_cert_password})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = cli(path, "domain", seed.EVIL_DOMAIN, "--verbose")
    status, envelopes, err = finish(process)
    captured = json.dumps(envelopes) + err
    assert status == (3 if flow == "wrong-secret" else 0)
    assert "GET /api/domains/evil.example/machines" in err or flow == "wrong-secret"
    for secret in secrets:
        assert secret not in captured
    assert "eyJ" not in captured  # no JWT: an access token or a client assertion
    pem = Path(emulator.client_cert_path).read_text()
    key_line = pem[pem.index("PRIVATE KEY-----"):].splitlines()[1]
    assert key_line not in captured
