"""The boundary holds: every expected failure is an envelope (never a raise or a traceback),
the security defaults are tight, and people's input is read the way they write it.

Each test here reproduces one defect found by running the plugin as a new user would.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import actions, schemas
from integration.cli import main as cli_main
from integration.config import load_settings
from integration.emulator import Emulator, seed
from integration.errors import ConfigError
from integration.state import sqlite_path
from integration.values.indicators import parse_domain, parse_file_hash

DOCS_MACHINE = {"id": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
                "computerDnsName": "mymachine1.contoso.com", "riskScore": "Low"}


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any]:
    status = cli_main(list(argv))
    return status, json.loads(capsys.readouterr().out)


# --- machine records the plugin cannot read ------------------------------------------------


def test_a_machine_record_without_id_is_left_out_with_a_warning_not_raised(
        config: dict, emulator: Emulator) -> None:
    emulator.admin.add_fault(r"/api/domains/", {"status": 200, "body": {
        "value": [DOCS_MACHINE, {"computerDnsName": "no-id.contoso.com"}]}})
    envelope = actions.get_machines_for_domain({"domain": "odd.example"}, config)
    assert envelope["status"] == "success"
    assert [m["uid"] for m in envelope["machines"]] == [DOCS_MACHINE["id"]]
    assert "without an id" in envelope["warnings"][0]


def test_an_answer_with_unreadable_records_is_not_cached(config: dict,
                                                         emulator: Emulator) -> None:
    emulator.admin.add_fault(r"/api/domains/", {"status": 200, "body": {
        "value": [DOCS_MACHINE, {"computerDnsName": "no-id.contoso.com"}]}})
    first = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert first["summary"]["total_machines"] == 1 and first["warnings"]
    # The fault is gone; the next lookup, cache allowed, must see Defender's real answer.
    emulator.admin.clear_faults()
    again = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert again["summary"]["total_machines"] == 3
    assert again["summary"]["cached"] is False


# --- state ----------------------------------------------------------------------------------


def test_a_locked_sqlite_state_is_a_retryable_error_envelope(
        config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from integration.state import sqlite as sqlite_state

    monkeypatch.setattr(sqlite_state, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "locked.sqlite3"
    config = {**config, "state": f"sqlite://{path}"}
    actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)  # creates the file
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        envelope = actions.get_machines_for_domain(
            {"domain": seed.EVIL_DOMAIN, "use_cache": False}, {**config, "timeout_s": 5})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert envelope["status"] == "error"
    assert envelope["error"]["retryable"] is True
    assert "locked" in envelope["error"]["message"]


def test_the_state_file_and_its_folder_are_owner_only(config: dict, tmp_path: Path) -> None:
    path = tmp_path / "new-folder" / "state.sqlite3"
    actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN},
                                    {**config, "state": f"sqlite://{path}"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///tmp/x.db", "/tmp/x.db"),
    ("sqlite:////tmp/x.db", "/tmp/x.db"),
    ("sqlite:relative/x.db", "relative/x.db"),
    ("sqlite:///./x.db", "x.db"),
])
def test_sqlite_state_urls_name_the_file_users_mean(url: str, expected: str) -> None:
    assert sqlite_path(url) == Path(expected)


# --- the CLI --------------------------------------------------------------------------------


def test_run_test_connectivity_as_a_table_prints_the_result(capsys, config_file: Path) -> None:
    status = cli_main(["run", "test_connectivity", "--format", "table",
                       "--config", str(config_file)])
    assert status == 0
    assert "connectivity" in capsys.readouterr().out


def test_a_failed_sign_in_as_a_table_shows_the_real_error(capsys, config: dict,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump({**config, "client_secret": "wrong"}), encoding="utf-8")
    status = cli_main(["domain", seed.EVIL_DOMAIN, "--format", "table", "--config", str(path)])
    assert status == 3
    assert "auth_failed" in capsys.readouterr().out


def test_a_config_option_before_the_command_is_not_taken_for_a_command(
        capsys, config: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    status, envelopes = run_json(capsys, "--config", "file", "domain", seed.EVIL_DOMAIN,
                                 "--format", "json")
    assert status == 0
    assert envelopes[0]["action"] == "get_machines_for_domain"


def test_run_with_a_missing_config_prints_a_json_error_envelope(capsys, tmp_path: Path) -> None:
    status, envelopes = run_json(capsys, "run", "get_machines_for_domain", "--params",
                                 '{"domain": "evil.example"}', "--config",
                                 str(tmp_path / "missing.yaml"), "--format", "json")
    assert status == 2
    assert envelopes[0]["error"]["code"] == "config_error"


def test_a_closed_pipe_ends_the_output_without_a_traceback(tmp_path: Path) -> None:
    values = " ".join(f"bad..{n}.example" for n in range(3000))
    done = subprocess.run(f"{sys.executable} -m integration domain {values} --format json "
                          f"--config {tmp_path / 'none.yaml'} | head -1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_standard_input_skips_comments_and_blank_lines(capsys, config_file: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("# today's list\n\nevil.example\n  \n"))
    _, envelopes = run_json(capsys, "domain", "-", "--config", str(config_file))
    assert [e["indicator"]["value"] for e in envelopes] == ["evil.example"]


def test_no_configuration_at_all_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError, match=r"pass --config FILE .* or set MDE_CONFIG"):
        load_settings(environ={})


def test_an_unknown_config_key_is_named(config: dict) -> None:
    with pytest.raises(ConfigError, match="unknown key 'tennant_id'"):
        load_settings({**config, "tennant_id": "x"}, environ={})


def test_a_misspelled_required_key_is_named_with_its_likely_meaning(config: dict) -> None:
    misspelled = {("tennant_id" if key == "tenant_id" else key): value
                  for key, value in config.items()}
    with pytest.raises(ConfigError, match="'tennant_id' \\(did you mean 'tenant_id'\\?\\)"):
        load_settings(misspelled, environ={})


@pytest.mark.parametrize(("key", "value"), [("proxy", "ftp://user:PROXYPW@proxy:8080"),
                                            ("state", "redis:/:REDISPW@host:6379/0")])
def test_a_password_in_an_invalid_url_is_not_echoed(config: dict, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({**config, key: value}, environ={})
    assert "PW" not in refused.value.message and "***" in refused.value.message


def test_settings_never_show_a_proxy_or_redis_password(config: dict) -> None:
    settings = load_settings({**config, "proxy": "http://user:PROXYPW@proxy:8080",
                              "state": "redis://:REDISPW@127.0.0.1:6379/0"}, environ={})
    assert "PW" not in repr(settings)


def test_a_relative_sqlite_state_url_is_accepted(config: dict) -> None:
    assert load_settings({**config, "state": "sqlite:state.db"}, environ={}).state


@pytest.mark.parametrize(("password", "says"), [
    (None, "is encrypted: set config key 'client_certificate.password'"),
    ("wrong-password", "does not open the client certificate's private key")])
def test_a_certificate_key_that_does_not_open_is_a_config_error(
        emulator: Emulator, state_url: str, password: str | None, says: str) -> None:
    config = emulator.cert_config(state=state_url)
    config["client_certificate"] = {"path": emulator.client_cert_path,
                                    **({"password": password} if password else {})}
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert envelope["error"]["code"] == "config_error"
    assert says in envelope["error"]["message"]
    assert emulator.admin.token_calls() == []


# --- what entry points are given ------------------------------------------------------------


@pytest.mark.parametrize("value", [b"evil.example", {"evil.example"},
                                   dt.datetime(2026, 1, 1)], ids=["bytes", "set", "datetime"])
def test_odd_parameter_values_give_a_serializable_envelope(value: Any) -> None:
    envelope = actions.get_machines_for_domain({"domain": value})
    assert envelope["error"]["code"] == "invalid_input"
    json.dumps(envelope)


@pytest.mark.parametrize("config", ["tenant", ["tenant"], 42], ids=["str", "list", "int"])
def test_a_config_that_is_not_a_mapping_is_a_config_error(config: Any) -> None:
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert envelope["error"]["code"] == "config_error"


def test_a_huge_value_is_not_echoed_whole(config: dict) -> None:
    envelope = actions.get_machines_for_domain({"domain": "a" * 100_000}, config)
    assert len(json.dumps(envelope)) < 2_000


@pytest.mark.parametrize(("schema", "instance"), [
    ({"enum": [[1]]}, [True]),
    ({"const": {"a": 0}}, {"a": False}),
])
def test_the_quick_verdict_agrees_with_jsonschema_on_nested_booleans(
        schema: dict, instance: Any) -> None:
    from jsonschema import Draft202012Validator

    expected = Draft202012Validator(schema).is_valid(instance)
    assert schemas.quick_verdict(schema, instance, "test") is expected


# --- security -------------------------------------------------------------------------------


def test_a_wrong_secret_is_refused_even_with_a_cached_token(config: dict) -> None:
    assert actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN},
                                           config)["status"] == "success"
    wrong = {**config, "client_secret": "rotated-away"}
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN, "use_cache": False},
                                               wrong)
    assert envelope["error"]["code"] == "auth_failed"


def test_a_permanent_sign_in_error_is_asked_once_per_batch(config: dict,
                                                           emulator: Emulator) -> None:
    wrong = {**config, "client_secret": "wrong-for-this-batch"}
    for domain in ("a.example", "b.example", "c.example", "d.example"):
        actions.get_machines_for_domain({"domain": domain}, wrong)
    assert len(emulator.admin.token_calls()) == 1


def test_a_tls_verification_failure_is_a_config_error_naming_ca_bundle(
        config: dict, emulator: Emulator, tmp_path: Path) -> None:
    from integration.emulator.certs import ensure_key_material

    other_ca = ensure_key_material(tmp_path / "other").ca_path
    envelope = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN},
                                               {**config, "ca_bundle": str(other_ca)})
    assert envelope["error"]["code"] == "config_error"
    assert "certificate verify failed" in envelope["error"]["message"].lower()
    assert "ca_bundle" in envelope["error"]["message"]
    assert len(emulator.admin.requests_log()) == 0  # nothing got through, nothing retried


def test_a_long_429_pause_is_named_as_the_reason_with_its_end(config: dict,
                                                              emulator: Emulator) -> None:
    config = {**config, "max_retry_after_s": 300, "max_rate_wait_s": 1}
    emulator.admin.add_fault(r"/api/domains/", {"status": 429, "headers": {"Retry-After": "120"}})
    actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    envelope = actions.get_machines_for_domain({"domain": "other.example"}, config)
    assert envelope["error"]["code"] == "rate_limited"
    assert "429" in envelope["error"]["message"] and "until" in envelope["error"]["message"]


# --- analysts' input ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sha1:C07121AEAC933A1896924EBBB35DA036E82C4FCD",
                                  "SHA-1: c07121aeac933a1896924ebbb35da036e82c4fcd"])
def test_hash_prefixes_are_accepted(text: str) -> None:
    assert parse_file_hash(text).value == "c07121aeac933a1896924ebbb35da036e82c4fcd"


def test_a_hash_prefix_that_disagrees_with_the_length_is_refused() -> None:
    with pytest.raises(Exception, match="marked sha256"):
        parse_file_hash("sha256:c07121aeac933a1896924ebbb35da036e82c4fcd")


def test_underscores_in_host_labels_are_accepted() -> None:
    assert parse_domain("build_01.corp.example").value == "build_01.corp.example"


def test_analyst_lookup_given_a_hash_without_type_says_to_add_it(capsys,
                                                                 config_file: Path) -> None:
    status = cli_main(["playbook", "run", "analyst-lookup", "--indicator",
                       seed.KNOWN_FILE["sha1"], "--config", str(config_file), "--format", "json"])
    assert status == 2
    assert "--type file" in capsys.readouterr().err


# --- the emulator ---------------------------------------------------------------------------


def test_two_emulators_sharing_a_folder_write_their_own_configs(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    processes = [subprocess.Popen([sys.executable, "-m", "integration", "emulator",
                                   "--state-dir", str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True, env=env) for _ in range(2)]
    try:
        urls = [process.stdout.readline().split()[-1] for process in processes]  # type: ignore[union-attr]
        configs = sorted(tmp_path.glob("emulator-config*.yaml"))
        assert len(configs) == 2
        assert {yaml.safe_load(path.read_text())["api_base_url"] for path in configs} == set(urls)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
