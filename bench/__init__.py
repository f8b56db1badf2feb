"""Benchmarks for mde-enrich: `make bench` or `python -m bench [NAME...]` (names below).

Every benchmark prints a ratio against a baseline measured in the same run against the same
emulator, and PASS/FAIL against its goal. It reports; it does not gate (exit status 0).
"""

# Run order: the subprocess-heavy cold start first, while nothing else has warmed up.
BENCHMARKS = ("cold", "suffixes", "warm", "batch", "normalize", "calls", "lanes", "buckets",
              "sweep", "xsoar", "stream", "inflight", "memory", "fleet", "arrivals")
