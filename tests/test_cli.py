"""The `mde-enrich` command: arguments, formats and exit statuses."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.cli import main as cli_main
from integration.emulator import Emulator, seed


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any]:
    status = cli_main(list(argv))
    out = capsys.readouterr().out
    try:
        return status, json.loads(out)
    except ValueError:
        return status, out


def test_domain_lookup_prints_a_json_array_and_exits_0(capsys, config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "domain", "hxxps://Evil[.]example/x",
                                "--config", str(config_file))
    assert status == 0
    assert [e["indicator"]["value"] for e in envelopes] == ["evil.example"]
    assert envelopes[0]["summary"]["total_machines"] == 3


def test_file_lookup_accepts_a_sha256(capsys, config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "file", seed.KNOWN_FILE["sha256"], "--config",
                                str(config_file))
    assert status == 0
    assert envelopes[0]["indicator"]["sha1"] == seed.KNOWN_FILE["sha1"]


def test_results_keep_the_input_order(capsys, config_file: Path) -> None:
    values = [seed.PHISH_DOMAIN, "never-seen.example", seed.EVIL_DOMAIN, seed.IDN_DOMAIN]
    _, envelopes = run_cli(capsys, "domain", *values, "--config", str(config_file))
    assert [e["indicator"]["original"] for e in envelopes] == values


def test_unknown_indicators_are_not_found_and_exit_0(capsys, config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "domain", "never-seen.example", "--config",
                                str(config_file))
    assert status == 0
    assert envelopes[0]["status"] == "not_found"


def test_bad_input_exits_2_and_sends_nothing(capsys, config_file: Path,
                                             emulator: Emulator) -> None:
    status, envelopes = run_cli(capsys, "file", "not-a-hash", "--config", str(config_file))
    assert status == 2
    assert envelopes[0]["error"]["code"] == "invalid_input"
    assert emulator.admin.requests_log() == []


def test_the_highest_exit_status_wins(capsys, config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "bad..example",
                                "--config", str(config_file))
    assert [e["status"] for e in envelopes] == ["success", "error"]
    assert status == 2


def test_options_may_follow_the_values_and_double_dash_ends_them(capsys,
                                                                 config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "domain", "--config", str(config_file), "--",
                                "-odd-value")
    assert status == 2
    assert envelopes[0]["indicator"]["original"] == "-odd-value"


def test_options_may_stand_before_the_command(capsys, config_file: Path) -> None:
    status, _ = run_cli(capsys, "--config", str(config_file), "domain", seed.EVIL_DOMAIN)
    assert status == 0


def test_a_lone_dash_reads_values_from_standard_input(capsys, config_file: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("evil.example\n\nphish.example\n"))
    _, envelopes = run_cli(capsys, "domain", "-", "--config", str(config_file))
    assert [e["indicator"]["value"] for e in envelopes] == ["evil.example", "phish.example"]


def test_table_format_lists_the_hosts(capsys, config_file: Path) -> None:
    status, out = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--format", "table",
                          "--config", str(config_file))
    assert status == 0
    assert "evil.example: 3 machines" in out
    assert "mymachine1.contoso.com" in out


def test_markdown_format_defangs_the_domain_and_links_the_portal(capsys,
                                                                 config_file: Path) -> None:
    _, out = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--format", "markdown",
                     "--config", str(config_file))
    assert "`evil[.]example`" in out
    assert "](https://security.microsoft.com/machines/" in out


def test_run_executes_an_action_by_id(capsys, config_file: Path) -> None:
    status, envelopes = run_cli(capsys, "run", "get_machines_for_domain", "--params",
                                json.dumps({"domain": seed.EVIL_DOMAIN}), "--config",
                                str(config_file))
    assert status == 0
    assert envelopes[0]["action"] == "get_machines_for_domain"


def test_run_unknown_action_exits_2(capsys, config_file: Path) -> None:
    status = cli_main(["run", "delete_everything", "--config", str(config_file)])
    assert status == 2
    assert "unknown action" in capsys.readouterr().err


def test_missing_config_file_is_config_error_exit_2(capsys, tmp_path: Path) -> None:
    status, envelopes = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--config",
                                str(tmp_path / "nope.yaml"))
    assert status == 2
    assert envelopes[0]["error"]["code"] == "config_error"


def test_environment_variable_overrides_a_key_and_is_named_when_wrong(
        capsys, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDE_TIMEOUT_S", "soon")
    status, envelopes = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--config",
                                str(config_file))
    assert status == 2
    assert "MDE_TIMEOUT_S" in envelopes[0]["error"]["message"]


def test_internal_suffixes_come_from_a_comma_separated_variable(
        capsys, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, envelopes = run_cli(capsys, "domain", "build01.corp", "--config", str(config_file))
    assert status == 2 and "not a public suffix" in envelopes[0]["error"]["message"]
    monkeypatch.setenv("MDE_INTERNAL_DOMAIN_SUFFIXES", "corp, lan")
    status, envelopes = run_cli(capsys, "domain", "build01.corp", "--config", str(config_file))
    assert status == 0 and envelopes[0]["status"] == "not_found"


def test_mde_config_names_the_config_file(capsys, config_file: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDE_CONFIG", str(config_file))
    status, _ = run_cli(capsys, "domain", seed.EVIL_DOMAIN)
    assert status == 0


def test_permission_denied_exits_3(capsys, emulator: Emulator, state_url: str,
                                   tmp_path: Path) -> None:
    path = tmp_path / "noroles.json"
    path.write_text(json.dumps(emulator.config(
        state=state_url, client_id=emulator.noroles_client_id,
        client_secret=emulator.noroles_client_secret)))
    status, _ = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--config", str(path))
    assert status == 3


def test_the_installed_command_runs_in_its_own_process(config_file: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "integration.cli", "domain",
                           "hxxps://Evil[.]example/x", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["status"] == "success"


def test_an_endless_outage_exits_4(capsys, emulator: Emulator, state_url: str,
                                   tmp_path: Path) -> None:
    path = tmp_path / "outage.json"
    path.write_text(json.dumps(emulator.config(state=state_url, max_attempts=3,
                                               backoff_base_s=0.02, backoff_cap_s=0.05)))
    emulator.admin.add_fault("/api/domains/", {"status": 503}, repeat_last=True)
    status, envelopes = run_cli(capsys, "domain", seed.EVIL_DOMAIN, "--config", str(path))
    assert status == 4
    assert envelopes[0]["error"] == {"code": "upstream_error", "http_status": 503,
                                     "retryable": True,
                                     "message": envelopes[0]["error"]["message"]}
    assert len(emulator.admin.api_calls()) == 3


def test_help_lists_every_command(capsys) -> None:
    assert cli_main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in ("domain", "file", "run", "playbook", "emulator", "demo", "export"):
        assert f"    {name} " in listed


def test_an_unknown_command_is_named_with_the_known_ones(capsys) -> None:
    assert cli_main(["lookup", "evil.example"]) == 2
    assert "invalid choice: 'lookup'" in capsys.readouterr().err
