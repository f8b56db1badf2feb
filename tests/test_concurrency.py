"""Concurrent lookups: distinct indicators in parallel, identical ones made once."""

from __future__ import annotations

from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator import Emulator, seed


def test_identical_lookups_in_flight_together_are_made_once(config: dict,
                                                            emulator: Emulator) -> None:
    emulator.admin.configure(latency_s=0.3)
    enricher = new_enricher(load_settings(config))
    envelopes = enricher.lookup_many("domain", [seed.EVIL_DOMAIN, "EVIL.example",
                                                "hxxp://evil[.]example/a"])
    assert [e.status for e in envelopes] == ["success"] * 3
    assert len(emulator.admin.api_calls()) == 1
    assert sum(e.summary.api_calls for e in envelopes) == 1


def test_a_sha256_and_its_sha1_together_share_one_machines_call(config: dict,
                                                                emulator: Emulator) -> None:
    emulator.admin.configure(latency_s=0.2)
    enricher = new_enricher(load_settings(config))
    envelopes = enricher.lookup_many("file", [seed.KNOWN_FILE["sha256"], seed.KNOWN_FILE["sha1"]])
    assert [e.summary.total_machines for e in envelopes] == [4, 4]
    machine_calls = [c for c in emulator.admin.api_calls() if c["path"].endswith("/machines")]
    assert len(machine_calls) == 1


def test_distinct_lookups_run_concurrently_up_to_max_concurrency(emulator: Emulator,
                                                                 state_url: str) -> None:
    emulator.admin.configure(latency_s=0.4)
    domains = sorted(emulator.admin.dataset_summary()["domains"])[:8]
    enricher = new_enricher(load_settings(emulator.config(state=state_url, max_concurrency=4)))
    envelopes = enricher.lookup_many("domain", domains)
    assert [(e.indicator or {}).get("value") for e in envelopes] == domains
    arrivals = sorted(call["time"] for call in emulator.admin.api_calls())
    # Each call is held 0.4 s: calls arriving within 0.3 s of each other were in flight together.
    together = max(sum(1 for t in arrivals if start <= t < start + 0.3) for start in arrivals)
    assert together == 4
