"""`make demo`: the whole flow against the built-in emulator, no tenant needed."""

from __future__ import annotations

import tempfile
from pathlib import Path

from integration import actions
from integration.config import load_settings
from integration.render import render
from integration.service import Enricher


def run_demo(fmt: str = "table") -> int:
    from integration.emulator import Emulator, seed

    with tempfile.TemporaryDirectory(prefix="mde-enrich-demo-") as workdir, \
            Emulator(state_dir=Path(workdir) / "emulator") as emulator:
        config = emulator.config(state=f"sqlite:///{Path(workdir) / 'state.sqlite3'}")
        print(f"Defender emulator at {emulator.base_url} (CA {emulator.ca_path})\n")

        connectivity = actions.test_connectivity({}, config)
        roles = ", ".join(connectivity.get("connectivity", {}).get("roles", [])) or "none"
        print(f"test_connectivity: {connectivity['status']} (token roles: {roles})\n")

        enricher = Enricher(load_settings(config))
        domains = ["hxxps://Evil[.]example/payload?id=7", seed.IDN_DOMAIN_UNICODE,
                   seed.EMPTY_DOMAIN, "10.1.2.3"]
        print("$ mde-enrich domain " + " ".join(repr(value) for value in domains))
        print(render(enricher.lookup_many("domain", domains), fmt), end="\n\n")

        files = [seed.KNOWN_FILE["sha256"], seed.KNOWN_FILE["sha1"]]
        print("$ mde-enrich file " + " ".join(files))
        print(render(enricher.lookup_many("file", files), fmt), end="\n\n")

        print("$ mde-enrich domain evil.example   # again, within the cache TTL")
        print(render([enricher.lookup("domain", seed.EVIL_DOMAIN)], fmt))
    return 0
