"""Find a Python 3.13 for Splunk SOAR's SDK (splunk-soar-sdk 7 runs only on 3.13).

Standard library only, so the Makefile can run it with a bare python3 before any venv exists
(`python3 integration/platforms/python313.py` prints the path, or says how to get one and
exits 1); the tests import `find_python313` and use the same answer.

Looked for, in order: $PY313; `python3.13` on the PATH; pyenv's versions (its root from
$PYENV_ROOT, `pyenv root`, or ~/.pyenv of whoever runs it); `uv python find 3.13`. Each
candidate must really run (a pyenv shim on the PATH exists even when 3.13 is not selected,
and then fails).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

VERSION = (3, 13)
HOW_TO_GET = (
    "Splunk SOAR's SDK (splunk-soar-sdk 7) needs Python 3.13, and none was found: not $PY313, "
    "not python3.13 on the PATH, not in pyenv's versions, not from `uv python find 3.13`. "
    "Get one with `uv python install 3.13`, `pyenv install 3.13`, your distribution's "
    "python3.13 package where it has one (Debian 13: apt-get install python3.13 "
    "python3.13-venv), or python.org; or point PY313 at it (make test PY313=/path/python3.13)."
)


def candidates() -> Iterator[str]:
    if os.environ.get("PY313"):
        yield os.environ["PY313"]
    on_path = shutil.which("python3.13")
    if on_path:
        yield on_path
    for root in _pyenv_roots():
        yield from sorted(glob.glob(str(root / "versions" / "3.13*" / "bin" / "python3.13")),
                          reverse=True)
    uv = shutil.which("uv")
    if uv:
        found = _output([uv, "python", "find", "3.13"])
        if found:
            yield found


def _pyenv_roots() -> list[Path]:
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        found = _output([pyenv, "root"])
        if found:
            roots.append(Path(found))
    roots.append(Path.home() / ".pyenv")
    return list(dict.fromkeys(roots))


def _output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def works(python: str) -> bool:
    """It runs, is 3.13, and has ssl and venv (what the SDK's venv needs)."""
    check = ("import sys, ssl, venv; "
             f"sys.exit(0 if sys.version_info[:2] == {VERSION!r} else 1)")
    try:
        return subprocess.run([python, "-c", check], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_python313() -> str | None:
    return next((python for python in candidates() if works(python)), None)


def main() -> int:
    found = find_python313()
    if found is None:
        print(HOW_TO_GET, file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
