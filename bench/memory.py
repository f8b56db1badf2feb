"""memory: peak memory of `mde-enrich playbook run enrich-alert --alert array.json` over a
JSON array of 2,000 and of 20,000 copies of the shipped Graph alert (16 machines), in a
child process (its peak resident set, VmHWM from the kernel), output to a file.

The goal is an absolute one (under 300 MiB at 20,000 alerts); the ratio printed is the
peak at 20,000 against the goal, and the peak at 20,000 against the peak at 2,000 shows
whether memory grows with the input (1.0: it does not).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import yaml

from bench.common import Bench, Result, child_env, python
from integration.resources import playbook_file

GOAL_MIB = 300.0
COUNTS = (2_000, 20_000)


def _peak_mib(bench: Bench, count: int, config: str) -> tuple[float, float, int]:
    sample = playbook_file("enrich-alert").parent / "samples" / "graph_security_alert_v2.json"
    alert: dict[str, Any] = json.loads(sample.read_text(encoding="utf-8"))
    source = bench.dir / f"array-{count}.json"
    with source.open("w", encoding="utf-8") as out:
        out.write("[")
        for n in range(count):
            out.write(("," if n else "") + json.dumps({**alert, "id": f"{alert['id']}-{n}"}))
        out.write("]")
    # VmHWM, the kernel's peak resident set of this program: ru_maxrss would also count the
    # parent's pages a fork copied before exec (the bench process, large after the others).
    script = ("import sys; from integration.cli import main; status = main(sys.argv[1:]);"
              " hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
              " print(hwm.split()[1], file=sys.stderr); sys.exit(status)")
    started = time.perf_counter()
    with (bench.dir / f"out-{count}.json").open("wb") as sink:
        done = subprocess.run([python(), "-c", script, "playbook", "run", "enrich-alert",
                               "--alert", str(source), "--config", config, "--format", "json"],
                              stdout=sink, stderr=subprocess.PIPE, text=False, env=child_env(),
                              timeout=600, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the run failed ({done.returncode}): {done.stderr[-500:]!r}")
    peak_kib = int(done.stderr.decode().strip().splitlines()[-1])
    written = (bench.dir / f"out-{count}.json").stat().st_size
    return peak_kib / 1024, wall, written


def run(bench: Bench) -> Result:
    config = bench.dir / "memory.yaml"
    config.write_text(yaml.safe_dump(bench.config(state="memory")), encoding="utf-8")
    peaks: dict[int, float] = {}
    figures: dict[str, Any] = {}
    for count in COUNTS:
        peak, wall, written = _peak_mib(bench, count, str(config))
        peaks[count] = peak
        figures[f"peak_mib_{count}"] = peak
        figures[f"wall_s_{count}"] = wall
        print(f"  {count:>6} alerts: peak {peak:6.1f} MiB, {wall:5.1f} s "
              f"({wall / count * 1000:.2f} ms an alert), {written / 2**20:.0f} MiB written")
    growth = peaks[COUNTS[-1]] / peaks[COUNTS[0]]
    figures["growth"] = growth
    ratio = peaks[COUNTS[-1]] / GOAL_MIB
    print(f"  peak at {COUNTS[-1]:,} / at {COUNTS[0]:,}: {growth:.2f} (1.0: flat)")
    result = Result("memory", ratio, 1.0,
                    f"peak {peaks[COUNTS[-1]]:.0f} MiB at {COUNTS[-1]:,} alerts (goal < "
                    f"{GOAL_MIB:.0f}), {peaks[COUNTS[0]]:.0f} MiB at {COUNTS[0]:,}", figures)
    print(f"  {result.verdict()}")
    return result
