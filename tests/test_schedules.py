"""The README's scheduling examples work as written: the crontab line, the systemd service
and timer, and the Kubernetes CronJob are read from the README itself, checked by the tool
each platform has (cron field syntax, `systemd-analyze verify`, the Kubernetes API schema),
and the command each one runs is run against the emulator."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.cli import main as cli_main
from tests.test_pull import graph_alert

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def local_paths(tmp_path: Path, config_file: Path) -> dict[str, str]:
    """The examples' production paths, mapped into the test's folder."""
    return {"/etc/mde-enrich/config.yaml": str(config_file),
            "/var/lib/mde-enrich": str(tmp_path / "var-lib"),
            "/var/log/mde-enrich": str(tmp_path / "var-log"),
            "/data": str(tmp_path / "data")}


def localized(argv: list[str], paths: dict[str, str]) -> list[str]:
    def one(arg: str) -> str:
        for production, local in paths.items():
            if arg == production or arg.startswith(production + "/"):
                return local + arg[len(production):]
        return arg

    return [one(arg) for arg in argv]


def run_scheduled(argv: list[str], emulator: Any, tmp_path: Path) -> None:
    """The example's command, twice: the second run finds nothing new and comments nothing."""
    (tmp_path / "var-log").mkdir(exist_ok=True)
    emulator.admin.add_alerts([graph_alert(1, "")])
    assert cli_main(argv) == 0
    assert cli_main(argv) == 0
    [alert] = emulator.admin.security_alerts()
    assert len(alert["comments"]) == (1 if "--write-back" in argv else 0)


_CRON_FIELD = re.compile(r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def test_the_crontab_line_is_a_valid_schedule_and_its_command_runs(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    [block] = readme_blocks("crontab")
    [line] = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    *fields, command = line.split(None, 5)
    assert len(fields) == 5
    for field, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        assert _CRON_FIELD.fullmatch(field), field
        assert all(low <= int(n) <= high for n in re.findall(r"(?<!/)\b\d+", field)), field
    argv = shlex.split(command)
    assert argv[0] == "mde-enrich" and "--quiet" in argv and "--log-file" in argv
    run_scheduled(localized(argv[1:], local_paths(tmp_path, config_file)), emulator, tmp_path)
    assert capsys.readouterr() == ("", "")  # nothing for cron to mail
    assert (tmp_path / "var-log" / "pull.log").read_text("utf-8")


def systemd_units() -> dict[str, str]:
    units = {}
    for block in readme_blocks("ini"):
        name = block.splitlines()[0].removeprefix("# ").strip()
        units[name] = block
    assert set(units) == {"mde-enrich-pull.service", "mde-enrich-pull.timer"}
    return units


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    command = str(Path(sys.executable).with_name("mde-enrich"))  # where this venv has it
    for name, text in systemd_units().items():
        (tmp_path / name).write_text(text.replace("/usr/local/bin/mde-enrich", command),
                                     encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / name) for name in
                                                           systemd_units())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "mde-enrich-pull" not in done.stderr, done.stderr  # no complaint about our units


def test_the_systemd_service_runs_its_command_and_counts_75_as_success(
        emulator: Any, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    service = systemd_units()["mde-enrich-pull.service"]
    settings = dict(re.findall(r"^(\w+)=(.*)$", service, flags=re.M))
    assert settings["SuccessExitStatus"].split() == ["75"]
    assert settings["Type"] == "oneshot"
    variable, _, value = settings["Environment"].partition("=")
    paths = local_paths(tmp_path, config_file)
    monkeypatch.setenv(variable, localized([value], paths)[0])
    argv = shlex.split(settings["ExecStart"])
    assert argv[0] == "/usr/local/bin/mde-enrich"
    run_scheduled(localized(argv[1:], paths), emulator, tmp_path)
    assert capsys.readouterr() == ("", "")


def test_the_kubernetes_cronjob_is_valid_for_the_api_and_its_command_runs(
        emulator: Any, config_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import kubernetes_validate

    [manifest] = [yaml.safe_load(block) for block in readme_blocks("yaml")
                  if "kind: CronJob" in block]
    kubernetes_validate.validate(manifest, "1.30", strict=True)  # raises on any schema error
    spec = manifest["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"  # one run at a time; an overlap would be 75
    [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/etc/mde-enrich", "/data"} <= mounts
    run_scheduled(localized(container["args"], local_paths(tmp_path, config_file)), emulator,
                  tmp_path)
    assert capsys.readouterr() == ("", "")
