"""What every benchmark shares: one emulator, a temp state, configs, statistics, results.

Each benchmark compares the plugin with a baseline measured in the same run against the same
emulator, so machine speed and background load (tests running next door) mostly cancel out
of the ratio; absolute times are printed for context only.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration.emulator import Emulator
from integration.emulator.seed import EVIL_DOMAIN

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
# The plugin takes a slot from the shared rate budget per call; a huge budget never waits.
BIG_BUDGET = {"per_minute": 100_000, "per_hour": 1_000_000}
DOMAIN = EVIL_DOMAIN  # 3 machines: a small answer, so the plugin's own cost shows


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile: an observed value, no interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def timing_details(times: dict[str, list[float]]) -> dict[str, float]:
    """Median and p90 in milliseconds of each side's timings, for results.json."""
    details: dict[str, float] = {}
    for side, values in times.items():
        details[f"{side}_median_ms"] = median(values) * 1000
        details[f"{side}_p90_ms"] = p90(values) * 1000
    return details


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Result:
    name: str
    ratio: float | None
    goal: float | None  # None: informational, no goal
    summary: str  # one line for the final table
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.goal is None or self.ratio is None:
            return "INFO"
        return "PASS" if self.ratio <= self.goal else "FAIL"

    def verdict(self) -> str:
        if self.goal is None:
            return f"ratio {self.ratio:.2f} (informational, no goal) INFO"
        return f"ratio {self.ratio:.2f} (goal <= {self.goal:g}) {self.status}"

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "goal": self.goal, "status": self.status,
                "summary": self.summary, **self.figures}


class Bench:
    """One emulator on a thread of this process, and a temp dir for its keys and the states."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mde-bench-")
        self.dir = Path(self._tmp.name)
        self.emulator = Emulator(state_dir=self.dir / "emulator")
        self._token: str | None = None

    def __enter__(self) -> Bench:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()
        self._tmp.cleanup()

    @property
    def admin(self) -> Any:
        return self.emulator.admin

    @property
    def ca_path(self) -> str:
        return self.emulator.ca_path

    def config(self, state: str = "shared", **overrides: Any) -> dict[str, Any]:
        """A plugin config on a temp SQLite state; the same `state` name shares token and
        cache, so a fresh name means a cold result cache (and one token request)."""
        overrides.setdefault("rate_limit", dict(BIG_BUDGET))
        return self.emulator.config(state=f"sqlite:///{self.dir / f'{state}.sqlite3'}",
                                    **overrides)

    def token(self) -> str:
        """A valid token, fetched once by the plugin itself, so it also sits in the shared
        SQLite state where a new plugin process finds it without signing in."""
        if self._token is None:
            from integration.compose import new_enricher
            from integration.config import load_settings

            enricher = new_enricher(load_settings(self.config()))
            self._token = enricher.tokens.access_token()
            enricher.store.close()
        return self._token

    def domain_url(self, domain: str = DOMAIN) -> str:
        return f"{self.emulator.base_url}/api/domains/{domain}/machines"

    def fresh(self) -> None:
        """Every benchmark starts with no latency, no faults and an empty request log."""
        self.admin.configure(latency_s=0)
        self.admin.clear_faults()
        self.admin.clear_log()


def child_env() -> dict[str, str]:
    """The environment for a timed child: no MDE_* (they override plugin config keys)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("MDE_")}


def python() -> str:
    return sys.executable
