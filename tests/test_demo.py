"""`make demo` runs the whole flow on the built-in emulator."""

from __future__ import annotations

import pytest

from integration.cli.demo import SAMPLE_ALERTS, run_demo


def test_demo_looks_up_indicators_and_enriches_every_sample_alert(
        capsys: pytest.CaptureFixture) -> None:
    assert run_demo("table") == 0
    out = capsys.readouterr().out
    assert "test_connectivity: success" in out
    assert "domain evil.example: 3 machines" in out
    assert "is an IP address, not a domain" in out
    for sample in sorted(SAMPLE_ALERTS.glob("*.json")):
        assert sample.name in out
