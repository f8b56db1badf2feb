"""suffixes: what checking a domain against the Public Suffix List adds to a cold start.

A SOAR platform may start a fresh interpreter per action run, and every domain lookup now
asks whether the domain's last label is a public suffix. Each side below is a new process
that imports the indicator parser and parses one domain:

- plugin:   `evil.com` (the list is loaded: publicsuffixlist without its punycode twins)
- floor:    `evil.example` (a special-use name: the list is never loaded)
- full:     publicsuffixlist with its defaults (punycode twins built: the stdlib IDNA codec)
- tldextract: tldextract with suffix_list_urls=() (its bundled snapshot), when installed

The ratio is plugin / floor: the cost of the check in a process that does nothing else.
Runs alternate their order so drift hits every side alike.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time

from bench.common import ROOT, Bench, Result, child_env, median, ms, p90, python

GOAL = 1.5
WARMUP = 2
RUNS = 20

PARSE = ("import sys\nfrom integration.values.indicators import parse_domain\n"
         "parse_domain(sys.argv[1])\n")
FULL = ("from publicsuffixlist import PublicSuffixList\n"
        "PublicSuffixList(accept_unknown=False).is_public('com')\n")
TLDEXTRACT = ("import tldextract\n"
              "tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)('evil.com')\n")


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1:3]}: {done.stderr.decode(errors='replace')[-300:]}")
    return time.perf_counter() - started


def run(bench: Bench) -> Result:  # the emulator is not needed: only parsing is timed
    sides = {"plugin": [python(), "-c", PARSE, "evil.com"],
             "floor": [python(), "-c", PARSE, "evil.example"],
             "full": [python(), "-c", FULL]}
    if importlib.util.find_spec("tldextract") is not None:
        sides["tldextract"] = [python(), "-c", TLDEXTRACT]
    times: dict[str, list[float]] = {side: [] for side in sides}
    names = list(sides)
    for i in range(WARMUP + RUNS):
        order = names if i % 2 == 0 else names[::-1]
        for side in order:
            seconds = _timed(sides[side])
            if i >= WARMUP:
                times[side].append(seconds)
    for side, values in times.items():
        print(f"  {side:<10} median {ms(median(values))}, p90 {ms(p90(values))}  ({RUNS} runs)")
    ratio = median([p / f for p, f in zip(times["plugin"], times["floor"], strict=True)])
    extra = {side: median(values) for side, values in times.items()}
    result = Result(
        "suffixes", ratio, GOAL,
        f"parse a .com domain in a new process {ms(extra['plugin'])} vs .example "
        f"{ms(extra['floor'])}; default publicsuffixlist {ms(extra['full'])}"
        + (f", tldextract {ms(extra['tldextract'])}" if "tldextract" in extra else ""),
        {f"{side}_median_s": value for side, value in extra.items()})
    print(f"  {result.verdict()}")
    return result
