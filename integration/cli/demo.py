"""`make demo`: the whole flow against the built-in emulator, no tenant needed.

First the two actions as an analyst runs them, then the enrich-alert playbook over sample
alerts of every supported format, as a SOAR platform runs it on incoming alerts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from integration import actions
from integration.compose import new_enricher
from integration.config import load_settings
from integration.lookup.service import Enricher
from integration.render import render, text_table
from integration.resources import PLAYBOOKS, SAMPLE_ALERTS
from integration.values.envelope import as_dicts

ENRICH_ALERT = PLAYBOOKS / "enrich-alert.yaml"


def run_demo(fmt: str = "table") -> int:
    from integration.emulator import Emulator, seed

    with tempfile.TemporaryDirectory(prefix="mde-enrich-demo-") as workdir, \
            Emulator(state_dir=Path(workdir) / "emulator") as emulator:
        config = emulator.config(state=f"sqlite:///{Path(workdir) / 'state.sqlite3'}")
        print(f"Defender emulator at {emulator.base_url} (CA {emulator.ca_path})\n")

        connectivity = actions.test_connectivity({}, config)
        roles = ", ".join(connectivity.get("connectivity", {}).get("roles", [])) or "none"
        print(f"test_connectivity: {connectivity['status']} (token roles: {roles})\n")

        enricher = new_enricher(load_settings(config))
        domains = ["hxxps://Evil[.]example/payload?id=7", seed.IDN_DOMAIN_UNICODE,
                   seed.EMPTY_DOMAIN, "10.1.2.3"]
        print("$ mde-enrich domain " + " ".join(repr(value) for value in domains))
        print(render(as_dicts(enricher.lookup_many("domain", domains)), fmt), end="\n\n")

        print(f"$ mde-enrich file {seed.KNOWN_FILE['sha256']}")
        print(render([enricher.lookup("file", seed.KNOWN_FILE["sha256"]).to_dict()], fmt),
              end="\n\n")

        # When and how each machine touched it: one advanced-hunting query for the batch.
        print(f"$ mde-enrich domain {seed.EVIL_DOMAIN} --contact")
        print(render(as_dicts(enricher.lookup_many("domain", [seed.EVIL_DOMAIN], contact=True,
                                                   priority="interactive")), fmt), end="\n\n")

        _enrich_sample_alerts(enricher)
    return 0


def _enrich_sample_alerts(enricher: Enricher) -> None:
    from integration.playbook import LookupService, PlaybookRunner, load_playbook

    runner = PlaybookRunner(load_playbook(ENRICH_ALERT), LookupService(lambda: enricher))
    print(f"$ mde-enrich playbook run playbooks/{ENRICH_ALERT.name} --alert ...")
    rows: list[list[str]] = []
    for path in sorted(SAMPLE_ALERTS.iterdir(), key=lambda item: item.name):
        if not path.name.endswith(".json"):
            continue
        enrichment = runner.run(json.loads(path.read_text("utf-8")), source=path.name).enrichment
        summary = enrichment["summary"]
        severity = enrichment.get("recommended_severity", {}).get("severity", "-")
        rows.append([path.name, enrichment["format"]["title"], str(len(enrichment["indicators"])),
                     str(summary["total_machines"]), summary.get("highest_risk") or "-",
                     severity])
    print(text_table(["alert", "format", "indicators", "machines", "highest risk", "recommend"],
                     rows))
