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

from integration import schemas
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


# -- installing it, its image, TheHive's templates, its lane ---------------------------------


def tiny_wheel(folder: Path) -> Path:
    """A valid wheel named and versioned as mde-enrich's (metadata only): what pip needs to
    resolve a requirements file, without building the real one."""
    import zipfile

    from integration.platforms import plugin_version

    version = plugin_version()
    wheel = folder / f"mde_enrich-{version}-py3-none-any.whl"
    info = f"mde_enrich-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.1\nName: mde-enrich\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\n"
                                          "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_the_requirements_install_the_bundled_wheel_from_another_folder(
        tmp_path: Path) -> None:
    built = tmp_path / "built"
    built.mkdir()
    write_cortex_analyzer(tmp_path / "export", wheel=tiny_wheel(built))
    requirements = tmp_path / "export" / "MDEEnrich" / "requirements.txt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--no-deps", "--quiet", "--report", str(report), "-r", str(requirements)],
        cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = {item["metadata"]["name"]: item["download_info"]["url"]
              for item in json.loads(report.read_text(encoding="utf-8"))["install"]}
    bundled = next(requirements.parent.glob("mde_enrich-*.whl"))
    assert chosen["mde-enrich"] == bundled.resolve().as_uri()
    assert "cortexutils" in chosen


def test_the_definition_names_a_docker_image_built_from_the_written_dockerfile(
        tmp_path: Path) -> None:
    write_cortex_analyzer(tmp_path)
    definition = json.loads((tmp_path / "MDEEnrich" / f"{FLAVOR_NAME}.json").read_text())
    dockerfile = (tmp_path / "MDEEnrich" / "Dockerfile").read_text(encoding="utf-8")
    assert f"docker build -t {definition['dockerImage']} ." in dockerfile
    assert "RUN pip install --no-cache-dir -r MDEEnrich/requirements.txt" in dockerfile
    assert dockerfile.rstrip().endswith(
        f'ENTRYPOINT ["python3", "MDEEnrich/{definition["command"].split("/")[-1]}"]')


def _paths(value: Any, prefix: str = "") -> set[str]:
    found = {prefix} if prefix else set()
    if isinstance(value, dict):
        for key, item in value.items():
            found |= _paths(item, f"{prefix}.{key}" if prefix else key)
    return found


def test_the_report_templates_show_fields_the_report_has(
        analyzer: Path, emulator: Emulator, config: dict[str, Any], tmp_path: Path) -> None:
    import re

    write_cortex_analyzer(tmp_path / "export")
    folder = tmp_path / "export" / "thehive-templates" / f"{FLAVOR_NAME}_0_1_0"
    long_html = (folder / "long.html").read_text(encoding="utf-8")
    assert "content.taxonomies" in (folder / "short.html").read_text(encoding="utf-8")
    report = run_job(analyzer, tmp_path / "job", "domain", seed.EVIL_DOMAIN,
                     {**flat(config), "contact": True})
    assert report["success"] is True, report
    machine_paths = set().union(*(_paths(machine) for machine in report["full"]["machines"]))
    shown = set(re.findall(r"\bmachine\.([A-Za-z0-9_.]*[A-Za-z0-9_])", long_html))
    assert shown and shown <= machine_paths, shown - machine_paths
    # The report's own fields: each one the envelope schema declares (some, like warnings or
    # indicator.sha1, only appear when they apply); errorMessage is cortexutils' failure form.
    declared = _schema_paths(schemas.schema("envelope.schema.json"), "envelope.schema.json")
    shown_content = set(re.findall(r"\bcontent\.([A-Za-z0-9_.]*[A-Za-z0-9_])", long_html))
    assert shown_content - {"errorMessage", "machines.length"} <= declared, \
        shown_content - declared


def _schema_paths(node: Any, base: str, prefix: str = "") -> set[str]:
    node, base = schemas.deref(node, base)
    found = {prefix} if prefix else set()
    for key, child in (node.get("properties") or {}).items():
        found |= _schema_paths(child, base, f"{prefix}.{key}" if prefix else key)
    return found


@pytest.mark.parametrize(("parameters", "items", "lane"), [
    ({}, {}, "interactive"),
    ({}, {"priority": "batch"}, "batch"),
    ({"priority": "batch"}, {"priority": "interactive"}, "batch"),
    ({"priority": "fast"}, {}, "interactive"),
])
def test_a_job_runs_interactive_unless_its_organization_or_parameters_say_batch(
        emulator: Emulator, config: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str], items: dict[str, str],
        lane: str) -> None:
    from integration import actions
    from integration.platforms.cortex import analyzer_class

    sent: list[dict[str, Any]] = []
    real = actions.get_machines_for_domain
    monkeypatch.setattr(actions, "get_machines_for_domain",
                        lambda params, config=None: sent.append(dict(params)) or
                        real(params, config))
    job = tmp_path / "job"
    (job / "input").mkdir(parents=True)
    (job / "input" / "input.json").write_text(json.dumps({
        "data": seed.EVIL_DOMAIN, "dataType": "domain", "tlp": 2, "pap": 2,
        "parameters": parameters, "config": {**flat(config), **items, "proxy": {}}}))
    analyzer_class()(job_directory=str(job)).run()
    assert json.loads((job / "output" / "output.json").read_text())["success"] is True
    assert [params["priority"] for params in sent] == [lane]
