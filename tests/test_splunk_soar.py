"""The generated Splunk SOAR app, called the way the platform calls it: a fresh Python 3.13
process per action run, `app.handle(<input JSON>)` with the asset's secret encrypted, the
results read from the SDK's action results; against the emulator.

The SDK needs Python 3.13, so a venv `.venv-soar/` at the repository root holds
splunk-soar-sdk 7 and this checkout (editable: the app runs the working tree's code). It is
built once and reused while its stamp matches. No Python 3.13 is a failure, never a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration import actions
from integration.emulator import Emulator, seed
from integration.platforms import ADVANCED_FIELD, config_fields
from integration.platforms.python313 import HOW_TO_GET, find_python313
from integration.platforms.splunk_soar import APP_ID, app_source, write_splunk_app

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-soar"
STAMP = VENV / ".mde-enrich-stamp"
SDK = "splunk-soar-sdk>=7,<8"
MARKER = "@@RESULTS@@"
CALLS_MARKER = "@@CALLS@@"

# Runs in .venv-soar: builds the platform's input JSON (sensitive asset fields encrypted with
# the asset id as salt, as SOAR stores them) and prints the action results.
DRIVER = r'''
import json, sys
from soar_sdk.shims.phantom_common.encryption.encryption_manager_factory import (
    platform_encryption_backend,
)
app_dir, request = sys.argv[1], json.load(sys.stdin)
sys.path.insert(0, app_dir)
import src.app as module

asset_id = "42"
secret = module.Asset.fields_requiring_decryption()
config = {"app_version": "0.1.0", "directory": app_dir, "main_module": "src/app.py",
          "appname": "-"}
for key, value in request["asset"].items():
    config[key] = platform_encryption_backend.encrypt(value, asset_id) if key in secret else value
identifier = request["identifier"]
# Record each entry point call the app makes: (action, the parameters it passed).
import integration.actions as actions
calls = []
for name in ("get_machines_for_domain", "get_machines_for_file_hash", "test_connectivity"):
    def recording(params, config=None, _name=name, _real=getattr(actions, name)):
        calls.append([_name, dict(params)])
        return _real(params, config)
    setattr(actions, name, recording)
module.app.handle(json.dumps({
    "action": identifier, "identifier": identifier, "asset_id": asset_id,
    "container_id": 7, "action_run_id": 1, "config": config,
    "parameters": request["parameters"], "environment_variables": {}}))
results = [{"status": r.get_status(), "message": r.get_message(), "param": r.get_param(),
            "summary": r.get_summary(), "data": r.get_data()}
           for r in module.app.actions_manager.get_action_results()]
print("@@RESULTS@@" + json.dumps(results, default=str))
print("@@CALLS@@" + json.dumps(calls, default=str))
'''


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n"
                    f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}", pytrace=False)
    return done


@pytest.fixture(scope="session")
def python313() -> str:
    found = find_python313()
    if found is None:
        pytest.fail(HOW_TO_GET, pytrace=False)
    return found


@pytest.fixture(scope="session")
def soar_venv(python313: str) -> Path:
    """.venv-soar with the SDK and this checkout; rebuilt only when the stamp changes."""
    stamp = json.dumps({"python": python313, "sdk": SDK, "root": str(ROOT),
                        "pyproject": hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
                        .hexdigest()}, sort_keys=True)
    if STAMP.is_file() and STAMP.read_text(encoding="utf-8") == stamp:
        return VENV
    _run([python313, "-m", "venv", "--clear", str(VENV)])
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, SDK, "uv", "setuptools>=77", "wheel"])
    _run([*pip, "--no-build-isolation", "--editable", str(ROOT)])
    STAMP.write_text(stamp, encoding="utf-8")
    return VENV


@pytest.fixture(scope="session")
def soar_app(soar_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    app_dir = tmp_path_factory.mktemp("soar") / "mde_enrich_soar"
    write_splunk_app(app_dir)
    (app_dir.parent / "driver.py").write_text(DRIVER, encoding="utf-8")
    return app_dir


def run_action(app_dir: Path, identifier: str, parameters: list[dict[str, Any]],
               asset: dict[str, Any]) -> list[dict[str, Any]]:
    """One action run in a fresh process, as the platform does it; the action results."""
    return run_action_and_calls(app_dir, identifier, parameters, asset)[0]


def run_action_and_calls(app_dir: Path, identifier: str, parameters: list[dict[str, Any]],
                         asset: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The action results and the entry point calls the app made: [[action, params], ...]."""
    request = {"identifier": identifier, "parameters": parameters, "asset": asset}
    done = subprocess.run(
        [str(VENV / "bin" / "python"), str(app_dir.parent / "driver.py"), str(app_dir)],
        input=json.dumps(request), capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert lines, f"no results (exit {done.returncode}):\n{done.stdout[-2000:]}\n" \
                  f"{done.stderr[-3000:]}"
    calls = [line for line in done.stdout.splitlines() if line.startswith(CALLS_MARKER)]
    return (json.loads(lines[-1].removeprefix(MARKER)),
            json.loads(calls[-1].removeprefix(CALLS_MARKER)))


@pytest.fixture
def asset(config: dict[str, Any]) -> dict[str, Any]:
    """The emulator's plugin configuration as the asset holds it: the form's fields, and the
    host overrides the emulator needs in the advanced settings' JSON."""
    shown = {field.name for field in config_fields() if field.essential}
    fields = {key: value for key, value in config.items() if key in shown}
    advanced = {key: value for key, value in config.items() if key not in shown}
    assert advanced, "the emulator's host overrides are advanced settings"
    return {**fields, ADVANCED_FIELD: json.dumps(advanced)}


def test_generated_source_compiles_and_names_every_action() -> None:
    source = app_source()
    compile(source, "app.py", "exec")
    for identifier in ("get_machines_for_domain", "get_machines_for_file_hash",
                       "test_connectivity"):
        assert f"def {identifier}(" in source
    assert "client_secret: str | None = AssetField(" in source
    assert "sensitive=True" in source.split("client_certificate_password:")[1].split("\n")[0]


def test_domain_with_machines(soar_app: Path, emulator: Emulator, asset: dict[str, Any],
                              config: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "get_machines_for_domain",
                          [{"domain": seed.EVIL_DOMAIN}], asset)
    assert result["status"] is True, result["message"]
    expected = actions.get_machines_for_domain({"domain": seed.EVIL_DOMAIN}, config)
    assert [row["uid"] for row in result["data"]] == [m["uid"] for m in expected["machines"]]
    for row, machine in zip(result["data"], expected["machines"], strict=True):
        assert row["hostname"] == machine["hostname"]
        assert row["mde"]["portal_url"] == machine["mde"]["portal_url"]
        assert row["os"]["name"] == machine["os"]["name"]
    # Fields the envelope left out (hunting_calls without --contact) come back as None.
    given = {key: value for key, value in result["summary"].items() if value is not None}
    assert given | {"api_calls": 0} == {
        "status": "success", "indicator_type": "domain", "indicator_value": seed.EVIL_DOMAIN,
        "total_machines": 3, "truncated": False, "cached": False, "api_calls": 0,
        # Splunk SOAR passes no analyst identity: the application answered.
        "principal_type": "application", "principal_name": emulator.client_id}
    assert result["summary"]["api_calls"] >= 1
    assert result["message"] == f"Found 3 machine(s) for domain {seed.EVIL_DOMAIN}"


def test_file_hash(soar_app: Path, emulator: Emulator, asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "get_machines_for_file_hash",
                          [{"file_hash": seed.KNOWN_FILE["sha256"]}], asset)
    assert result["status"] is True, result["message"]
    assert len(result["data"]) == seed.KNOWN_FILE_MACHINES
    assert result["summary"]["indicator_type"] == "sha256"


def test_the_domain_action_takes_a_url_artifact(soar_app: Path, emulator: Emulator,
                                                asset: dict[str, Any]) -> None:
    url = f"https://{seed.EVIL_DOMAIN}/payload/drop.exe?x=1"
    [result] = run_action(soar_app, "get_machines_for_domain", [{"domain": url}], asset)
    assert result["status"] is True, result["message"]
    assert result["summary"]["indicator_value"] == seed.EVIL_DOMAIN
    assert len(result["data"]) == 3


def test_a_manual_run_is_interactive_and_a_playbook_says_batch(
        soar_app: Path, emulator: Emulator, asset: dict[str, Any]) -> None:
    # The run action dialog sends what the analyst filled in; the asset's contact setting
    # applies to a run that does not say.
    _, manual = run_action_and_calls(soar_app, "get_machines_for_domain",
                                     [{"domain": seed.EVIL_DOMAIN}], asset)
    _, playbook = run_action_and_calls(
        soar_app, "get_machines_for_domain",
        [{"domain": seed.EVIL_DOMAIN, "priority": "batch",
          "context": {"artifact_id": 12}}], asset)
    assert [params["priority"] for _, params in manual + playbook] == ["interactive", "batch"]
    assert "contact" not in manual[0][1]


def test_bad_advanced_settings_are_a_failed_result_saying_why(
        soar_app: Path, emulator: Emulator, asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "get_machines_for_domain", [{"domain": seed.EVIL_DOMAIN}],
                          asset | {ADVANCED_FIELD: "{timeout_s: 60"})
    assert result["status"] is False
    assert "config_error: advanced_settings: not valid JSON" in result["message"]
    assert emulator.admin.api_calls() == []


def test_unknown_domain_is_a_success_without_rows(soar_app: Path, emulator: Emulator,
                                                  asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "get_machines_for_domain",
                          [{"domain": seed.UNKNOWN_DOMAIN}], asset)
    assert result["status"] is True, result["message"]
    assert result["data"] == []
    assert result["summary"]["status"] == "not_found"
    assert result["summary"]["total_machines"] == 0
    assert result["message"] == f"No machines found for domain {seed.UNKNOWN_DOMAIN}"


def test_bad_input_is_a_failed_result_saying_why(soar_app: Path, emulator: Emulator,
                                                 asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "get_machines_for_file_hash",
                          [{"file_hash": "not-a-hash!!"}], asset)
    assert result["status"] is False
    assert "invalid_input: " in result["message"]
    assert "Traceback" not in result["message"]
    assert result["data"] == []
    assert emulator.admin.api_calls() == []


def test_connectivity(soar_app: Path, emulator: Emulator, asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "test_connectivity", [{}], asset)
    assert result["status"] is True, result["message"]
    assert "successful" in result["message"].lower()
    assert len(emulator.admin.api_calls()) == 1


def test_connectivity_with_a_wrong_secret_fails(soar_app: Path, emulator: Emulator,
                                                asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "test_connectivity", [{}],
                          asset | {"client_secret": "not-the-secret"})
    assert result["status"] is False
    assert "auth_failed: " in result["message"]


def test_connectivity_names_a_missing_hunting_permission(soar_app: Path, emulator: Emulator,
                                                         asset: dict[str, Any]) -> None:
    [result] = run_action(soar_app, "test_connectivity", [{}], asset | {
        "client_id": emulator.readwrite_client_id,
        "client_secret": emulator.readwrite_client_secret, "contact": True})
    assert result["status"] is False
    assert "missing permission: ThreatHunting.Read.All on Microsoft Graph" in result["message"]


def test_soarapps_manifest(soar_venv: Path, python313: str, tmp_path: Path) -> None:
    """`soarapps manifests create` on the generated project: needs a uv.lock, and locking
    resolves the SDK's dependencies on PyPI (CI has it)."""
    bin_dir = soar_venv / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
          "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(ROOT)])
    [wheel] = (tmp_path / "dist").glob("mde_enrich-*.whl")
    app_dir = tmp_path / "mde_enrich_soar"
    write_splunk_app(app_dir, wheel=wheel)
    env = {**os.environ, "UV_PYTHON": python313, "UV_PYTHON_DOWNLOADS": "never"}
    locked = subprocess.run([str(bin_dir / "uv"), "lock"], cwd=app_dir, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    if locked.returncode != 0:
        pytest.fail("`uv lock` failed; it needs PyPI (https://pypi.org/simple):\n"
                    f"{locked.stderr[-3000:]}", pytrace=False)
    _run([str(bin_dir / "soarapps"), "manifests", "create", str(tmp_path / "app.json"),
          str(app_dir)], cwd=tmp_path)
    app_json = json.loads((tmp_path / "app.json").read_text(encoding="utf-8"))

    assert app_json["appid"] == APP_ID
    assert app_json["python_version"] == "3.13"
    by_id = {action["identifier"]: action for action in app_json["actions"]}
    assert {"get_machines_for_domain", "get_machines_for_file_hash",
            "test_connectivity"} <= set(by_id)
    domain = by_id["get_machines_for_domain"]
    assert domain["action"] == "get machines for domain"
    # A URL artifact offers the action too: it looks up the URL's host.
    assert domain["parameters"]["domain"]["contains"] == ["domain", "url"]
    assert domain["parameters"]["domain"]["primary"] is True
    # The run action dialog is an analyst waiting.
    assert domain["parameters"]["priority"]["default"] == "interactive"
    assert domain["parameters"]["priority"]["value_list"] == ["interactive", "batch"]
    file_hash = by_id["get_machines_for_file_hash"]["parameters"]["file_hash"]
    assert file_hash["contains"] == ["sha1", "sha256", "md5", "hash"]
    outputs = {out["data_path"]: out for out in domain["output"]}
    assert outputs["action_result.data.*.hostname"]["contains"] == ["host name"]
    assert outputs["action_result.data.*.ip"]["contains"] == ["ip"]
    assert "action_result.summary.total_machines" in outputs
    configuration = app_json["configuration"]
    # The essential settings and one JSON field; retries, backoff and limits keep their
    # defaults out of the form.
    assert set(configuration) == {field.name for field in config_fields()
                                  if field.essential} | {ADVANCED_FIELD}
    assert "max_attempts" not in configuration and "backoff_base_s" not in configuration
    assert configuration["client_secret"]["data_type"] == "password"
    assert configuration["client_certificate_password"]["data_type"] == "password"
    assert configuration["tenant_id"]["required"] is True
    assert configuration["tenant_id"]["data_type"] == "string"
    wheels = [w["module"] for w in app_json["pip313_dependencies"]["wheel"]]
    assert "mde-enrich" in wheels or "mde_enrich" in wheels


# -- finding a Python 3.13 ---------------------------------------------------------------------

FINDER = ROOT / "integration" / "platforms" / "python313.py"


def run_finder(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The finder as the Makefile runs it: a bare python3, no venv, a given environment."""
    return subprocess.run([sys.executable, str(FINDER)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_package_outside_the_sdk_venv_says_which_python_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from integration.platforms.splunk_soar import main

    (tmp_path / "uv.lock").write_text("")
    monkeypatch.setitem(sys.modules, "soar_sdk", None)  # as in a venv without the SDK
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(SystemExit) as stopped:
        main(["package", str(tmp_path), str(tmp_path / "app.tgz")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "splunk-soar-sdk" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_package_without_a_lock_file_says_how_to_make_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from integration.platforms.splunk_soar import main

    with pytest.raises(SystemExit) as stopped:
        main(["package", str(tmp_path), str(tmp_path / "app.tgz")])
    assert stopped.value.code == 2 and "uv lock" in capsys.readouterr().err


def test_a_python313_in_any_users_pyenv_is_found(python313: str, tmp_path: Path) -> None:
    home = tmp_path / "someone"
    versions = home / ".pyenv" / "versions" / "3.13.9" / "bin"
    versions.mkdir(parents=True)
    (versions / "python3.13").symlink_to(python313)
    done = run_finder({"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(versions / "python3.13")


def test_py313_chooses_the_python(python313: str, tmp_path: Path) -> None:
    done = run_finder({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PY313": python313})
    assert done.stdout.strip() == python313


def test_without_a_python313_the_finder_says_how_to_get_one(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    # A pyenv shim that exists but fails: found on the PATH, refused because it does not run.
    (fake / "python3.13").write_text("#!/bin/sh\nexit 127\n")
    (fake / "python3.13").chmod(0o755)
    done = run_finder({"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stdout == ""
    assert "uv python install 3.13" in done.stderr and "pyenv install 3.13" in done.stderr
