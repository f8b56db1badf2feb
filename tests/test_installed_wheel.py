"""The wheel works when installed: built from this checkout, installed into a fresh venv
outside it, then the demo, a lookup, a playbook and an entry-point call run from that venv.

A SOAR platform installs a wheel, not an editable checkout; files the code reads but the
wheel lacks (manifest, schemas, playbooks, alert formats) only show up this way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration import __version__
from integration.emulator import seed

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class InstalledPlugin:
    def __init__(self, venv: Path, workdir: Path, build_log: str) -> None:
        self.bin = venv / "bin"
        self.build_log = build_log
        self.workdir = workdir  # outside the checkout: nothing can be imported from it

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("MDE_", "PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(list(argv), cwd=self.workdir, env=env, capture_output=True,
                              text=True, timeout=timeout)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledPlugin]:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps",
                            "--wheel-dir", str(dist), str(ROOT)], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheels = list(dist.glob("mde_enrich-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    str(wheels[0])], check=True, timeout=600)
    workdir = base / "work"
    workdir.mkdir()
    yield InstalledPlugin(venv, workdir, built.stdout + built.stderr)


@pytest.fixture
def installed_config(installed: InstalledPlugin, config: dict[str, Any]) -> Path:
    path = installed.workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_wheel_builds_without_deprecation_warnings(installed: InstalledPlugin) -> None:
    assert "Deprecat" not in installed.build_log


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: InstalledPlugin) -> None:
    done = installed.run("python", "-c", "import integration; print(integration.__file__)")
    assert "site-packages" in done.stdout and str(ROOT) not in done.stdout


def test_the_installed_command_tells_its_version(installed: InstalledPlugin) -> None:
    done = installed.run("mde-enrich", "--version")
    assert done.stdout.strip() == f"mde-enrich {__version__}"
    assert installed.run("python", "-m", "integration", "--version").returncode == 0


def test_the_demo_runs_from_the_wheel(installed: InstalledPlugin) -> None:
    done = installed.run("mde-enrich", "demo")
    assert done.returncode == 0, done.stderr
    assert "test_connectivity: success" in done.stdout


def test_a_lookup_runs_from_the_wheel(installed: InstalledPlugin,
                                      installed_config: Path) -> None:
    done = installed.run("mde-enrich", "domain", seed.EVIL_DOMAIN, "--config",
                         str(installed_config), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["summary"]["total_machines"] == 3


def test_a_shipped_playbook_runs_by_name_from_the_wheel(installed: InstalledPlugin,
                                                        installed_config: Path) -> None:
    alert = installed.workdir / "alert.json"
    alert.write_text(json.dumps({"indicators": [{"type": "domain", "value": seed.EVIL_DOMAIN}]}),
                     encoding="utf-8")
    done = installed.run("mde-enrich", "playbook", "run", "enrich-alert", "--alert", str(alert),
                         "--config", str(installed_config), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["enrichment"]["summary"]["total_machines"] == 3


def test_an_entry_point_returns_an_envelope_from_the_wheel(installed: InstalledPlugin,
                                                           config: dict[str, Any]) -> None:
    script = ("import json, sys\n"
              "from integration.actions import get_machines_for_domain\n"
              "print(json.dumps(get_machines_for_domain({'domain': sys.argv[1]}, "
              "json.loads(sys.argv[2]))))")
    done = installed.run("python", "-c", script, seed.EVIL_DOMAIN, json.dumps(config))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "success"


def test_the_platform_exports_run_from_the_wheel(installed: InstalledPlugin) -> None:
    for platform in ("xsoar", "cortex"):
        done = installed.run("mde-enrich", "export", platform, str(installed.workdir / platform))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), f"{platform}: no files written"


def test_the_shipped_samples_are_listed_and_run_by_name_from_the_wheel(
        installed: InstalledPlugin, installed_config: Path) -> None:
    listed = installed.run("mde-enrich", "samples")
    assert listed.returncode == 0 and "sample:defender_alert" in listed.stdout.split()
    for playbook in ("enrich-alert", "playbooks/enrich-alert.yaml"):  # as the README says
        done = installed.run("mde-enrich", "playbook", "run", playbook, "--alert",
                             "sample:defender_alert", "--config", str(installed_config),
                             "--format", "json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["enrichment"]["indicators"]


def test_a_scheduled_pull_runs_quietly_from_the_wheel(installed: InstalledPlugin,
                                                      installed_config: Path,
                                                      emulator: Any) -> None:
    from tests.test_pull import graph_alert

    emulator.admin.add_alerts([graph_alert(1, "")])
    out = installed.workdir / "pulled"
    done = installed.run("mde-enrich", "playbook", "run", "scheduled-enrichment", "--pull",
                         "alerts", "--out", str(out), "--config", str(installed_config),
                         "--write-back", "--quiet")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert len(list(out.glob("alert-*.json"))) == 1
USER_FORMAT = """
formats:
  - id: acme_edr
    title: ACME EDR verdict
    keys: [acme.verdict, acme.host]
    detect: "acme.verdict == 'bad'"
    extract:
      - type: domain
        field: acme.c2
        expression: acme.c2
    skip:
      - reason: reporting_device
        field: acme.host
        expression: acme.host
"""


def test_a_user_alert_format_works_from_the_wheel(installed: InstalledPlugin,
                                                  config: dict[str, Any]) -> None:
    rules = installed.workdir / "acme_formats.yaml"
    rules.write_text(USER_FORMAT, encoding="utf-8")
    with_formats = installed.workdir / "config-formats.yaml"
    with_formats.write_text(yaml.safe_dump({**config, "alert_formats": str(rules)}),
                            encoding="utf-8")
    alert = installed.workdir / "acme.json"
    alert.write_text(json.dumps({"acme": {"verdict": "bad", "host": "ws-17",
                                          "c2": seed.EVIL_DOMAIN}}), encoding="utf-8")
    explained = installed.run("mde-enrich", "formats", "test", str(alert), "--config",
                              str(with_formats), "--format", "table")
    assert explained.returncode == 0, explained.stderr
    assert "format acme_edr" in explained.stdout and "<- acme_edr: acme.c2" in explained.stdout
    assert "skip   reporting_device: ws-17" in explained.stdout
    done = installed.run("mde-enrich", "playbook", "run", "enrich-alert", "--alert", str(alert),
                         "--config", str(with_formats), "--format", "json")
    assert done.returncode == 0, done.stderr
    enrichment = json.loads(done.stdout)["enrichment"]
    assert enrichment["format"]["id"] == "acme_edr"
    assert enrichment["summary"]["total_machines"] == 3


def test_the_readmes_emulator_config_survives_a_restart_from_the_wheel(
        installed: InstalledPlugin, tmp_path: Path) -> None:
    """`mde-enrich emulator &`, `export MDE_CONFIG=PATH`, a lookup; the emulator restarted,
    the same MDE_CONFIG still works (same path, same port)."""
    import signal

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MDE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{installed.bin}{os.pathsep}{env.get('PATH', '')}"
    state = tmp_path / "emulator-state"
    paths = []
    for _ in range(2):
        process = subprocess.Popen(["mde-enrich", "emulator", "--state-dir", str(state)],
                                   cwd=installed.workdir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            lines = [process.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
            [config_path] = [line.split(":", 1)[1].strip() for line in lines
                             if line.startswith("Plugin config:")]
            paths.append(config_path)
            done = subprocess.run(["mde-enrich", "domain", seed.EVIL_DOMAIN, "--format", "json"],
                                  cwd=installed.workdir, env={**env, "MDE_CONFIG": paths[0]},
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    assert paths[0] == paths[1] and Path(paths[0]).is_file()
