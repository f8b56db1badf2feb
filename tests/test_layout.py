"""The layout keeps its promises: imports flow one way (no cycles between modules, and
between the package's parts only the edges of ALLOWED_EDGES, type-only imports included),
and each concern lives in one module, so there is one place to read and to change it."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "integration"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, *, type_checking: bool = False) -> set[str]:
    """Every module `path` imports: at run time, and with `type_checking` also those under
    `if TYPE_CHECKING:` (a type-only import is still a dependency of the code's meaning)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = set() if type_checking else {
        id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
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


def cycles_in(graph: dict[str, set[str]], *, allowed: Callable[[str], set[str]]) -> list[list[str]]:
    """Import cycles of `graph` (edges into `allowed(node)` are not followed)."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node] - allowed(node)):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target):], target] if target in trail
                              else [*trail, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_integration_has_no_import_cycle() -> None:
    cycles = cycles_in(GRAPH, allowed=package_of)
    assert not cycles, f"import cycles: {cycles[:3]}"


# --- layers: which part of the package may import which -------------------------------------
# A part is a subpackage (`lookup`, `defender`...) or a top-level module (`config`, `errors`...).
# The table lists, for each part, the parts below it that it may use; anything else is an
# upward (or sideways) edge and fails, whether the import runs or only serves type checking.
# `integration` itself (its version and user agent) is below everything.
ALLOWED_EDGES: dict[str, set[str]] = {
    "integration": set(),
    "errors": set(),
    "render": set(),
    "values": {"errors"},
    "bounded": {"errors"},
    "log_scrub": set(),
    "resources": {"bounded", "errors"},
    "schemas": {"errors", "resources"},
    "clouds": {"errors"},
    "config": {"bounded", "clouds", "errors", "schemas"},
    "state": {"config", "errors"},
    "fastpath": set(),
    "defender": {"bounded", "clouds", "config", "errors", "fastpath", "log_scrub", "state",
                 "values"},
    "lookup": {"config", "defender", "errors", "state", "values"},
    "compose": {"config", "defender", "errors", "lookup", "state", "values"},
    "manifest": {"errors", "resources", "schemas"},
    "connectivity": {"config", "errors"},
    "actions": {"compose", "config", "connectivity", "defender", "errors", "lookup", "schemas",
                "values"},
    "playbook": {"actions", "bounded", "config", "defender", "errors", "lookup", "manifest",
                 "render", "resources", "schemas", "state", "sweep", "values"},
    "ocsf": {"playbook"},
    "sweep": {"config", "defender", "errors", "lookup", "render", "state", "values"},
    "platforms": {"errors", "lookup", "manifest", "resources", "schemas", "values"},
    # The emulator is a world of its own, reached over HTTP only.
    "emulator": set(),
    "cli": {"actions", "bounded", "compose", "config", "emulator", "errors", "log_scrub", "lookup",
            "manifest", "ocsf", "platforms", "playbook", "render", "resources", "sweep",
            "values"},
    "__main__": {"cli"},
}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def part_edges(graph: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """part -> imported part -> the modules whose imports make that edge (for the message)."""
    edges: dict[str, dict[str, set[str]]] = {}
    for module, targets in graph.items():
        for target in targets:
            source, goal = part_of(module), part_of(target)
            if source != goal:
                edges.setdefault(source, {}).setdefault(goal, set()).add(f"{module} -> {target}")
    return edges


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for source, goals in sorted(part_edges(graph).items()):
        for goal, because in sorted(goals.items()):
            if goal != "integration" and goal not in ALLOWED_EDGES.get(source, set()):
                found.append(f"{source} -> {goal} ({', '.join(sorted(because))})")
    return found


FULL_GRAPH = {name: {target for target in imports_of(path, type_checking=True)
                     if target in MODULES and target != name}
              for name, path in MODULES.items()}


def test_every_part_of_the_package_is_in_the_table() -> None:
    """A new module or subpackage names, in ALLOWED_EDGES, the parts it may import (and the
    parts that may import it list it)."""
    assert {part_of(module) for module in MODULES} == set(ALLOWED_EDGES)


def test_the_table_of_allowed_edges_has_no_cycle() -> None:
    assert not cycles_in(ALLOWED_EDGES, allowed=lambda part: set())


def test_imports_follow_the_table_including_type_checking_imports() -> None:
    assert not upward_edges(FULL_GRAPH), upward_edges(FULL_GRAPH)


def test_an_upward_type_checking_import_fails_the_table(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from integration.compose import Parts\n", encoding="utf-8")

    def with_module(imports: set[str]) -> dict[str, set[str]]:
        return {**FULL_GRAPH, "integration.values.module": imports & MODULES.keys()}

    assert upward_edges(with_module(imports_of(module, type_checking=True))) == [
        "values -> compose (integration.values.module -> integration.compose)"]
    # What the run-time reading alone would have missed:
    assert not upward_edges(with_module(imports_of(module)))


def test_a_cycle_between_parts_fails() -> None:
    graph = {**FULL_GRAPH, "integration.errors": {"integration.values.indicators"}}
    assert "errors -> values (integration.errors -> integration.values.indicators)" in \
        upward_edges(graph)
    parts = {part: set(goals) for part, goals in part_edges(graph).items()}
    assert ["errors", "values", "errors"] in cycles_in(
        {part: parts.get(part, set()) for part in ALLOWED_EDGES}, allowed=lambda part: set())


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
    ('"Bearer ', "integration/defender/pipeline.py"),
    ("== 403", "integration/defender/pipeline.py"),
    ('"AccessToken"', "integration/fastpath.py"),
], ids=["URL building", "Retry-After parsing", "single-flight", "retry policy",
        "composition root", "budget", "authorized request", "status to error",
        "msal's cache layout"])
def test_each_concern_lives_in_one_module(needle: str, home: str | None) -> None:
    holders = sorted(str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
                     if needle in path.read_text(encoding="utf-8")
                     and "emulator" not in path.parts)
    if home is None:  # the budget's storage is a StateStore method, one per backend
        assert holders == ["integration/state/__init__.py", "integration/state/redis.py",
                           "integration/state/sqlite.py"]
    else:
        assert holders == [home]


# Envelopes are typed inside; they become JSON at the edges only (the entry points, the CLI,
# the platform adapters, the playbook's JSON documents), and are read back from JSON only
# where a run keeps them in the state store (a batch's memo, a sweep's progress).
ENVELOPE_TO_JSON = {"integration.actions", "integration.cli.demo", "integration.cli.lookups",
                    "integration.playbook.lookups", "integration.sweep.run"}
ENVELOPE_FROM_JSON = {"integration.playbook.lookups", "integration.sweep.run"}


def calls_in(path: Path, attribute: str) -> list[str]:
    """Source of each call of `.attribute(...)` / `attribute(...)` in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == attribute)
        or (isinstance(node.func, ast.Name) and node.func.id == attribute))]


def test_envelopes_become_json_only_at_the_edges() -> None:
    """Envelope.to_dict() (or as_dicts) is called where an envelope leaves the package or
    is stored; errors, summaries and others' values have to_dict()s of their own."""
    envelope_makers = ("lookup(", "lookup_many(", "error_envelope(", "envelope.to_dict",
                       "as_dicts(")
    users = {name for name, path in MODULES.items() if not name.startswith(
        ("integration.emulator", "integration.values"))
        and any(call.startswith(envelope_makers) or any(m in call for m in envelope_makers)
                for call in calls_in(path, "to_dict") + calls_in(path, "as_dicts"))}
    assert users <= ENVELOPE_TO_JSON, users - ENVELOPE_TO_JSON


def test_envelopes_are_read_back_from_json_only_where_a_run_stores_them() -> None:
    users = {name for name, path in MODULES.items()
             if any(call.startswith("Envelope.from_dict(") for call in calls_in(path, "from_dict"))}
    assert users == ENVELOPE_FROM_JSON
