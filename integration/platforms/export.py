"""`mde-enrich export {xsoar,splunk,cortex} OUTDIR`: write one platform's files.

Each platform's writer is imported only when asked for: the CLI stays quick, and one
platform's module cannot break another's export.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from integration.errors import InvalidInput

# platform -> (module, function(outdir: Path, wheel=...) -> list[Path]); each module also has
# next_steps(outdir, wheel) -> list[str], what to run with the files it wrote.
WRITERS = {
    "xsoar": ("integration.platforms.xsoar", "write_xsoar_integration"),
    "splunk": ("integration.platforms.splunk_soar", "write_splunk_app"),
    "cortex": ("integration.platforms.cortex", "write_cortex_analyzer"),
}


def export(platform: str, outdir: str | Path, wheel: str | Path | None = None) -> list[Path]:
    """Write `platform`'s files into `outdir` (created if missing); the paths written.
    `wheel`, an mde-enrich wheel, is bundled so the platform installs it rather than asking
    a package index for mde-enrich (which it is on only if you published it there)."""
    if platform not in WRITERS:
        raise InvalidInput(f"unknown platform {platform!r}; choose one of {', '.join(WRITERS)}")
    module_name, function_name = WRITERS[platform]
    writer = getattr(importlib.import_module(module_name), function_name)
    folder = Path(outdir)
    # Checked before anything is written: a refused export leaves no half-made folder.
    if wheel is not None and (not Path(wheel).is_file()
                              or not Path(wheel).name.endswith(".whl")):
        raise InvalidInput(f"--wheel {str(wheel)!r}: not a wheel file (build one with "
                           "`pip wheel --no-deps .`)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if wheel is None:
            return list(writer(folder))
        return list(writer(folder, wheel=Path(wheel)))
    except OSError as exc:
        raise InvalidInput(f"cannot write the {platform} files into {str(folder)!r}: "
                           f"{exc.strerror or type(exc).__name__}") from exc


def next_steps(platform: str, outdir: str | Path, wheel: str | Path | None = None) -> list[str]:
    """What to run next with the files `export` wrote, in order."""
    module_name, _ = WRITERS[platform]
    steps = importlib.import_module(module_name).next_steps
    return list(steps(Path(outdir), Path(wheel) if wheel else None))
