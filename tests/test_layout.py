"""The layout keeps its promises: imports flow one way (no cycles), and each concern lives
in one module, so there is one place to read and to change it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "integration"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module imported by `path` at run time (imports under TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {target for target in imports_of(path) if target in MODULES and target != name}
         for name, path in MODULES.items()}


def package_of(module: str) -> set[str]:
    """A module depends on its parent packages' __init__ too; that is not a cycle."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_integration_has_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module] - package_of(module)):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target):], target] if target in trail
                              else [*trail, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles[:3]}"


@pytest.mark.parametrize(("library", "home"), [
    ("requests", {"integration.defender.transport", "integration.emulator.admin"}),
    # The application's sign-in, and a user's (device code, on-behalf-of) beside it.
    ("msal", {"integration.defender.auth", "integration.defender.delegated"}),
    ("jsonschema", {"integration.schemas"}),
    ("sqlite3", {"integration.state.sqlite"}),
    ("redis", {"integration.state.redis"}),
    ("importlib.resources", {"integration.resources"}),
], ids=["http", "sign-in", "schema validation", "sqlite", "redis", "shipped files"])
def test_each_library_is_used_in_one_place(library: str, home: set[str]) -> None:
    users = {name for name, path in MODULES.items()
             if any(target == library or target.startswith(f"{library}.")
                    for target in imports_of(path))}
    assert users - home <= {name for name in users if name.startswith("integration.emulator")
                           and library in ("requests", "jsonschema")}, users - home


@pytest.mark.parametrize(("needle", "home"), [
    ('"/api/', "integration/defender/urls.py"),
    ("Retry-After\")", "integration/defender/retry.py"),
    ("class SingleFlight", "integration/lookup/cache.py"),
    ("class RetryPolicy", "integration/defender/retry.py"),
    ("def enricher_for", "integration/compose.py"),
    ("def take_slot", None),
], ids=["URL building", "Retry-After parsing", "single-flight", "retry policy",
        "composition root", "budget"])
def test_each_concern_lives_in_one_module(needle: str, home: str | None) -> None:
    holders = sorted(str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
                     if needle in path.read_text(encoding="utf-8")
                     and "emulator" not in path.parts)
    if home is None:  # the budget's storage is a StateStore method, one per backend
        assert holders == ["integration/state/__init__.py", "integration/state/redis.py",
                           "integration/state/sqlite.py"]
    else:
        assert holders == [home]
