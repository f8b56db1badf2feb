"""The Cortex analyzer, run the way Cortex runs it: `<command> <job dir>` in a fresh process,
JOBDIR/input/input.json in, JOBDIR/output/output.json out, against the emulator.

Needs `cortexutils` in the test environment (the `test` extra); without it these tests fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.emulator import Emulator, seed
from integration.platforms import config_fields
from integration.platforms.cortex import (
    ACTION_BY_DATA_TYPE,
    FLAVOR_NAME,
    taxonomy_level,
    write_cortex_analyzer,
)

FLAVOR_REQUIRED = ("name", "version", "author", "url", "license", "description",
                   "dataTypeList", "command", "baseConfig")
ITEM_REQUIRED = ("name", "description", "type", "multi", "required")


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The written program: the real command Cortex would run."""
    try:
        import cortexutils  # noqa: F401
    except ImportError:
        pytest.fail("cortexutils is not installed: pip install 'cortexutils>=2.2,<3' "
                    "(it belongs in the `test` extra)", pytrace=False)
    written = write_cortex_analyzer(tmp_path_factory.mktemp("cortex"))
    return next(path for path in written if path.suffix == ".py")


def run_job(program: Path, job_dir: Path, data_type: str, data: str,
            config: dict[str, Any], tlp: int = 2) -> dict[str, Any]:
    (job_dir / "input").mkdir(parents=True)
    cortex_config = {**config, "check_tlp": True, "max_tlp": 2, "check_pap": True,
                     "max_pap": 2, "auto_extract": True, "proxy": {}}
    job = {"data": data, "dataType": data_type, "tlp": tlp, "pap": 2, "message": "case-1",
           "parameters": {}, "config": cortex_config}
    (job_dir / "input" / "input.json").write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run([sys.executable, str(program), str(job_dir)], capture_output=True,
                          text=True, timeout=120, check=False)
    output = job_dir / "output" / "output.json"
    assert output.is_file(), f"no output.json; stderr: {done.stderr[-2000:]}"
    return json.loads(output.read_text(encoding="utf-8"))


def flat(config: dict[str, Any]) -> dict[str, Any]:
    """The emulator config as Cortex configuration items (flat names)."""
    return {field.name: config[field.path[0]] for field in config_fields()
            if len(field.path) == 1 and field.path[0] in config}


def test_definition_is_generated_from_the_config_schema(tmp_path: Path) -> None:
    written = write_cortex_analyzer(tmp_path)
    definition = json.loads((tmp_path / "MDEEnrich" / f"{FLAVOR_NAME}.json").read_text())
    assert all(key in definition for key in FLAVOR_REQUIRED)
    assert " " not in definition["name"]
    assert definition["dataTypeList"] == ["domain", "fqdn", "url", "hash"]
    assert (tmp_path / definition["command"]) in written
    items = {item["name"]: item for item in definition["configurationItems"]}
    assert all(all(key in item for key in ITEM_REQUIRED) for item in items.values())
    # client_id is optional: a managed identity needs none.
    assert items["tenant_id"]["required"] and not items["client_id"]["required"]
    assert not items["client_secret"]["required"]  # a certificate may be used instead
    assert {"client_certificate_path", "client_certificate_password",
            "rate_limit_per_minute", "ca_bundle", "state"} <= set(items)
    assert items["timeout_s"]["type"] == "number" and items["timeout_s"]["defaultValue"] == 30
    assert "proxy" not in items  # Cortex's own `config.proxy` is used


def test_domain_with_machines(analyzer: Path, emulator: Emulator, config: dict[str, Any],
                              tmp_path: Path) -> None:
    report = run_job(analyzer, tmp_path / "job", "domain", seed.EVIL_DOMAIN, flat(config))
    assert report["success"] is True, report
    assert len(report["full"]["machines"]) == 3
    # One of the evil domain's machines has riskScore High.
    assert report["summary"]["taxonomies"] == [
        {"level": "malicious", "namespace": "MDE", "predicate": "Machines", "value": 3}]
    hosts = {a["data"] for a in report["artifacts"] if a["dataType"] == "hostname"}
    assert hosts == {m["hostname"] for m in report["full"]["machines"]}
    ips = {a["data"] for a in report["artifacts"] if a["dataType"] == "ip"}
    assert {m["ip"] for m in report["full"]["machines"] if "ip" in m} <= ips


def test_url_looks_up_its_host(analyzer: Path, emulator: Emulator, config: dict[str, Any],
                               tmp_path: Path) -> None:
    url = f"https://{seed.EVIL_DOMAIN}/payload/drop.exe?x=1"
    report = run_job(analyzer, tmp_path / "job", "url", url, flat(config))
    assert report["success"] is True, report
    assert report["full"]["indicator"]["value"] == seed.EVIL_DOMAIN
    assert report["summary"]["taxonomies"][0]["value"] == 3
    assert any(seed.EVIL_DOMAIN in call["path"] for call in emulator.admin.api_calls())


def test_hash(analyzer: Path, emulator: Emulator, config: dict[str, Any],
              tmp_path: Path) -> None:
    report = run_job(analyzer, tmp_path / "job", "hash", seed.KNOWN_FILE["sha1"], flat(config))
    assert report["success"] is True, report
    assert report["full"]["action"] == ACTION_BY_DATA_TYPE["hash"][0]
    taxonomy = report["summary"]["taxonomies"][0]
    assert taxonomy["value"] == seed.KNOWN_FILE_MACHINES
    assert taxonomy["level"] == taxonomy_level(report["full"])


def test_unknown_domain_is_a_success_with_no_machines(analyzer: Path, emulator: Emulator,
                                                      config: dict[str, Any],
                                                      tmp_path: Path) -> None:
    report = run_job(analyzer, tmp_path / "job", "fqdn", seed.UNKNOWN_DOMAIN, flat(config))
    assert report["success"] is True, report
    assert report["summary"]["taxonomies"] == [
        {"level": "info", "namespace": "MDE", "predicate": "Machines", "value": 0}]
    assert report["artifacts"] == []


def test_bad_input_is_a_clear_error(analyzer: Path, emulator: Emulator,
                                    config: dict[str, Any], tmp_path: Path) -> None:
    report = run_job(analyzer, tmp_path / "job", "hash", "not-a-hash!!", flat(config))
    assert report["success"] is False
    assert report["errorMessage"].startswith("invalid_input: ")
    assert report["input"]["config"]["client_secret"] == "REMOVED"
    assert emulator.admin.api_calls() == []


def test_tlp_above_max_is_refused_before_any_call(analyzer: Path, emulator: Emulator,
                                                  config: dict[str, Any],
                                                  tmp_path: Path) -> None:
    report = run_job(analyzer, tmp_path / "job", "domain", seed.EVIL_DOMAIN, flat(config),
                     tlp=3)
    assert report == {"success": False, "input": report["input"],
                      "errorMessage": "TLP is higher than allowed."}
    assert emulator.admin.api_calls() == []
    assert emulator.admin.token_calls() == []


@pytest.mark.parametrize(("risks", "level"), [
    ([], "info"), ([0, 1], "info"), ([1, 2], "suspicious"), ([2, 3], "malicious"),
    ([4], "malicious"), ([99], "info"), ([4, 99], "malicious")])
def test_taxonomy_level(risks: list[int], level: str) -> None:
    machines = [{"uid": str(i), "risk_level_id": r} for i, r in enumerate(risks)]
    assert taxonomy_level({"machines": machines}) == level
