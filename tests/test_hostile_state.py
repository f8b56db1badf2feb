"""State rows and sign-in answers that are not what we wrote or expect: each is ignored (and
rewritten) or an error envelope, never a raise. The state is a real SQLite file corrupted
with sqlite3 the way a crash, another tool or a stepped-back clock would leave it; the
sign-in service is the emulator with scripted answers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator.seed import EVIL_DOMAIN, KNOWN_FILE
from integration.state.sqlite import SQLiteStore

TOKEN_ROWS = "msal-token-cache"


def state_file(config: dict[str, Any]) -> Path:
    return Path(config["state"].removeprefix("sqlite:///"))


def corrupt(config: dict[str, Any], sql: str, *params: Any) -> int:
    with sqlite3.connect(state_file(config)) as db:
        return db.execute(sql, params).rowcount


def rows(config: dict[str, Any], namespace: str) -> list[str]:
    with sqlite3.connect(state_file(config)) as db:
        return [row[0] for row in db.execute("SELECT value FROM kv WHERE namespace=?",
                                             (namespace,))]


def fresh_lookup(config: dict[str, Any], kind: str = "domain", value: str = EVIL_DOMAIN,
                 **options: Any) -> dict[str, Any]:
    """A lookup by a new process's Enricher: nothing in memory, everything from the state."""
    return new_enricher(load_settings(config)).lookup(  # type: ignore[arg-type]
        kind, value, **options).to_dict()


# --- the shared token cache ----------------------------------------------------------------


@pytest.mark.parametrize("blob", ["not json {", "[1, 2]", '{"AccessToken": []}',
                                  '{"AccessToken": {"k": 5}}',
                                  '{"AccessToken": {"k": {"secret": 7, "target": 3}}}'])
def test_a_token_cache_row_that_is_not_msals_is_ignored_and_rewritten(
        config: dict[str, Any], blob: str) -> None:
    assert fresh_lookup(config)["status"] == "success"
    assert corrupt(config, "UPDATE kv SET value=? WHERE namespace=?", blob, TOKEN_ROWS) == 1
    assert fresh_lookup(config, use_cache=False)["status"] == "success"
    assert "AccessToken" in json.loads(rows(config, TOKEN_ROWS)[0])  # msal's own again


def test_a_refused_token_is_dropped_even_when_the_token_row_is_corrupt(
        config: dict[str, Any], emulator: Any) -> None:
    enricher = new_enricher(load_settings(config))
    assert enricher.lookup("domain", EVIL_DOMAIN, use_cache=False).status == "success"
    emulator.admin.revoke_tokens()  # the next call is a 401: the token is invalidated
    corrupt(config, "UPDATE kv SET value='{broken' WHERE namespace=?", TOKEN_ROWS)
    assert enricher.lookup("domain", EVIL_DOMAIN, use_cache=False).status == "success"


# --- the result cache ----------------------------------------------------------------------


@pytest.mark.parametrize("row", ['{"machines": [1], "raws": [1]}',
                                 '{"machines": [], "raws": [], "warnings": 5}',
                                 '{"machines": [{"uid": 5}], "raws": [{}]}',
                                 '{"machines": [{"uid": "a", "mde": []}], "raws": [{}]}',
                                 '{"machines": [], "raws": [], "truncated": "yes"}'])
def test_a_results_row_of_the_wrong_shape_is_asked_again_and_rewritten(
        config: dict[str, Any], row: str) -> None:
    assert fresh_lookup(config)["status"] == "success"
    assert corrupt(config, "UPDATE kv SET value=? WHERE namespace='results'", row) == 1
    envelope = fresh_lookup(config)
    assert envelope["status"] == "success" and envelope["summary"]["cached"] is False
    assert rows(config, "results")[0] != row
    assert fresh_lookup(config)["summary"]["cached"] is True


def test_a_sha1_mapping_row_that_is_not_a_sha1_is_asked_again(config: dict[str, Any]) -> None:
    assert fresh_lookup(config, "file", KNOWN_FILE["sha256"])["status"] == "success"
    corrupt(config, "UPDATE kv SET value=? WHERE namespace='file-sha1'", KNOWN_FILE["sha256"])
    envelope = fresh_lookup(config, "file", KNOWN_FILE["sha256"], use_cache=True)
    assert envelope["status"] == "success"
    assert envelope["indicator"]["sha1"] == KNOWN_FILE["sha1"]


# --- the rate budget's rows ----------------------------------------------------------------


def test_a_call_time_stored_as_text_is_dropped_not_raised(config: dict[str, Any]) -> None:
    assert fresh_lookup(config, use_cache=False)["status"] == "success"
    assert corrupt(config, "UPDATE rate_calls SET at='yesterday'") >= 1
    assert fresh_lookup(config, use_cache=False)["status"] == "success"
    with sqlite3.connect(state_file(config)) as db:
        assert db.execute("SELECT count(*) FROM rate_calls WHERE typeof(at)='text'"
                          ).fetchone() == (0,)


def test_a_pause_stored_as_text_is_dropped_not_raised(config: dict[str, Any]) -> None:
    assert fresh_lookup(config, use_cache=False)["status"] == "success"
    corrupt(config, "INSERT OR REPLACE INTO rate_pauses SELECT DISTINCT bucket, 'soon' "
                    "FROM rate_calls")
    assert fresh_lookup(config, use_cache=False)["status"] == "success"


def test_calls_stamped_in_the_future_hold_the_budget_one_window_not_the_skew(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    limits = ((1.0, 2), (3600.0, 100))
    assert store.take_slot("b", limits) == 0.0 and store.take_slot("b", limits) == 0.0
    with sqlite3.connect(tmp_path / "state.db") as db:  # the clock was an hour ahead
        db.execute("UPDATE rate_calls SET at=at+3600")
    started = time.monotonic()
    while (wait := store.take_slot("b", limits)) > 0:
        assert time.monotonic() - started < 5, "the budget is held by calls from the future"
        time.sleep(wait)
    assert time.monotonic() - started < 2.5


def test_a_lease_whose_expiry_is_not_a_number_can_be_taken(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("INSERT INTO leases VALUES ('job', 'someone', 'never')")
    assert store.try_lease("job", "me", 10.0)


# --- the sign-in service's answers ---------------------------------------------------------


def test_a_token_endpoint_answering_an_array_is_an_upstream_error(
        config: dict[str, Any], emulator: Any) -> None:
    emulator.admin.add_fault(r"/oauth2/v2.0/token$", {"status": 200, "body": [1, 2]},
                             repeat_last=True)
    envelope = fresh_lookup(config, use_cache=False)
    assert envelope["status"] == "error"
    assert envelope["error"]["code"] == "upstream_error"
    assert "not a token answer" in envelope["error"]["message"]


def test_a_token_answer_with_a_garbled_expiry_is_an_upstream_error(
        config: dict[str, Any], emulator: Any) -> None:
    emulator.admin.add_fault(r"/oauth2/v2.0/token$", {"status": 200, "body": {
        "access_token": "x.y.z", "token_type": "Bearer", "expires_in": "soon"}},
        repeat_last=True)
    envelope = fresh_lookup(config, use_cache=False)
    assert envelope["error"]["code"] == "upstream_error"


def test_a_discovery_document_naming_a_foreign_token_endpoint_gets_no_secret(
        config: dict[str, Any], emulator: Any) -> None:
    discovery_path = f"/{emulator.tenant_id}/v2.0/.well-known/openid-configuration"
    document = requests.get(emulator.base_url + discovery_path, verify=emulator.ca_path,
                            timeout=10).json()
    # The same emulator under another name: a host msal would happily post the secret to.
    foreign = emulator.base_url.replace("127.0.0.1", "localhost") + "/stolen/token"
    emulator.admin.add_fault(r"openid-configuration$", {"status": 200, "body": {
        **document, "token_endpoint": foreign}}, repeat_last=True)
    envelope = fresh_lookup(config, use_cache=False)
    assert envelope["error"]["code"] == "auth_failed"
    assert "localhost" in envelope["error"]["message"]
    assert not [entry for entry in emulator.admin.requests_log() if "stolen" in entry["path"]]


# --- msal's own logging ----------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [False, True])
def test_msal_never_prints_a_token_endpoint_body_that_echoes_the_secret(
        config: dict[str, Any], emulator: Any, tmp_path: Path, verbose: bool) -> None:
    """A proxy's page answering the token request, echoing the form it was sent: msal logs
    such a body whole (ERROR, with a traceback), and Python prints that to stderr even in a
    process that never configured logging."""
    page = (f"<html><body>bad gateway; request was client_id={config['client_id']}&"
            f"client_secret={config['client_secret']}&grant_type=client_credentials"
            "</body></html>")
    emulator.admin.add_fault(r"/oauth2/v2.0/token$", {"html": page, "status": 200},
                             repeat_last=True)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({**config, "max_attempts": 1}), "utf-8")
    done = subprocess.run([sys.executable, "-m", "integration.cli", "domain", EVIL_DOMAIN,
                           "--config", str(path), "--format", "json",
                           *(["--verbose"] if verbose else [])],
                          capture_output=True, text=True, timeout=120, check=False)
    assert json.loads(done.stdout)[0]["error"]["code"] == "upstream_error"
    assert config["client_secret"] not in done.stdout + done.stderr
    if not verbose:
        assert done.stderr == ""
    else:
        assert "client_secret=***" in done.stderr  # msal spoke, scrubbed
