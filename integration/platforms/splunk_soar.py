"""Splunk SOAR app (splunk-soar-sdk 7.x) generated from plugin.yaml and schemas/.

`write_splunk_app(outdir)` writes an SDK app project: pyproject.toml ([tool.soar.app]),
logos, src/app.py and src/mde_runtime.py. src/app.py is generated: the Asset from
config.schema.json, each action's Params from its input schema, the data rows from
machine.schema.json and the summary from the envelope's. The actions call the plugin's
entry points through src/mde_runtime.py (copied from splunk_soar_app/).

Only the CEF types (`contains`), the table columns and the app's identity are declared here:
plugin.yaml has no place for them.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from integration import schemas
from integration.manifest import Action, manifest
from integration.platforms import (
    ADVANCED_DESCRIPTION,
    ADVANCED_FIELD,
    ConfigField,
    action_parameters,
    config_fields,
    copy_wheel,
    plugin_version,
)

RUNTIME = Path(__file__).with_name("splunk_soar_app") / "mde_runtime.py"
SDK_REQUIREMENT = "splunk-soar-sdk>=7,<8"
# Stable across regenerations: SOAR knows an app by its appid.
APP_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://mde-enrich.invalid/splunk-soar-app"))
# CEF `contains` of each action parameter: what it accepts (the domain action takes URLs and
# looks up their host). A primary parameter offers the action on artifacts of these types.
PARAM_CONTAINS = {"domain": ["domain", "url"], "file_hash": ["sha1", "sha256", "md5", "hash"]}
# The run action dialog is an analyst waiting: the interactive lane, unless the caller says
# batch (playbooks pass "priority": "batch"; the SDK tells an action nothing of its origin).
PARAM_DEFAULTS = {"priority": "interactive"}
# No default here: the asset's `contact` setting applies when a run does not say.
PARAMS_WITHOUT_DEFAULT = frozenset({"contact"})
# Data row paths (lists not counted) -> CEF types, and the columns of the results table.
OUTPUT_CONTAINS = {
    "uid": ["defender atp device id"], "hostname": ["host name"], "ip": ["ip"],
    "network_interfaces.ip": ["ip"], "network_interfaces.mac": ["mac address"],
    "mde.last_external_ip": ["ip"], "mde.portal_url": ["url"],
}
COLUMNS = {"hostname": "Hostname", "ip": "IP", "os.name": "OS", "risk_level": "Risk",
           "last_seen_time_dt": "Last seen", "mde.health_status": "Health",
           "mde.portal_url": "Portal"}
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
_LOGO = ('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" viewBox="0 0 100 100">'
         '<rect width="100" height="100" rx="12" fill="{bg}"/><text x="50" y="62" '
         'font-family="sans-serif" font-size="30" text-anchor="middle" fill="{fg}">MDE</text>'
         '</svg>\n')


def write_splunk_app(outdir: Path, *, wheel: Path | None = None) -> list[Path]:
    """Write the app project into `outdir`; the files written.

    `wheel` is an mde-enrich wheel to bundle (copied to wheels/ and locked by path, which is
    what `uv lock` and `soarapps` need when mde-enrich is on no package index). Without it
    the project asks for mde-enrich from the package index.
    """
    outdir = Path(outdir)
    (outdir / "src").mkdir(parents=True, exist_ok=True)
    written = {
        outdir / "pyproject.toml": pyproject_text(wheel.name if wheel else None),
        outdir / "logo.svg": _LOGO.format(bg="#0078d4", fg="#ffffff"),
        outdir / "logo_dark.svg": _LOGO.format(bg="#ffffff", fg="#0078d4"),
        outdir / "src" / "__init__.py": "",
        outdir / "src" / "app.py": app_source(),
    }
    for path, text in written.items():
        path.write_text(text, encoding="utf-8")
    paths = [*written, outdir / "src" / "mde_runtime.py"]
    shutil.copyfile(RUNTIME, paths[-1])
    if wheel is not None:
        paths.append(copy_wheel(wheel, outdir / "wheels"))
    return paths


def next_steps(outdir: Path, wheel: Path | None = None) -> list[str]:
    """What to do with the exported project, in order."""
    source = "" if wheel else " (without --wheel it needs mde-enrich on your package index)"
    return [
        "from the mde-enrich checkout, `make soar-package` does the next two steps for its own "
        "export and writes build/mde-enrich-soar.tgz; or by hand, in a Python 3.13 venv with "
        f"{SDK_REQUIREMENT}, uv and mde-enrich: (cd {outdir} && uv lock){source}",
        f"python -m integration.platforms.splunk_soar package {outdir} mde-enrich-soar.tgz",
        "Splunk SOAR: Apps > Install App > the .tgz; new asset: tenant_id, client_id, "
        "client_secret; Test Connectivity",
        "run `get machines for domain` on a domain or URL artifact, `get machines for file "
        "hash` on a hash artifact",
    ]


def pyproject_text(wheel_name: str | None = None) -> str:
    data = manifest().data
    source = (f'\n[tool.uv.sources]\nmde-enrich = {{ path = "wheels/{wheel_name}" }}\n'
              if wheel_name else "")
    return f'''# Generated by integration.platforms.splunk_soar from plugin.yaml: do not edit.
[project]
name = "mde_enrich_soar"
version = "{plugin_version()}"
description = {_literal(data["name"])}
license = "MIT"
requires-python = ">=3.13, <3.14"
dependencies = ["{SDK_REQUIREMENT}", "mde-enrich=={plugin_version()}"]

[tool.soar.app]
main_module = "src.app:app"
{source}
[[tool.uv.index]]
url = "https://pypi.org/simple"

[tool.uv]
environments = [
    "sys_platform == 'linux' and platform_machine == 'x86_64' and python_version == '3.13'",
    "sys_platform == 'linux' and platform_machine == 'aarch64' and python_version == '3.13'",
]
required-environments = [
    "sys_platform == 'linux' and platform_machine == 'x86_64' and python_version == '3.13'",
]
'''


# -- src/app.py ------------------------------------------------------------------------------

def app_source() -> str:
    data = manifest().data
    actions = manifest().actions
    classes: list[str] = []
    conversions: dict[str, str] = {}
    machine = _output_class("Machine", schemas.schema("machine.schema.json"), "", classes,
                            conversions)
    summary_props = schemas.schema("envelope.schema.json")["properties"]["summary"]
    parts = [
        _HEADER,
        _asset_class(config_fields()),
        _APP.format(name=_literal(data["name"]), vendor=_literal(data["vendor"]),
                    product=_literal(data["product"]), publisher=_literal(data["publisher"]),
                    appid=_literal(APP_ID)),
        *classes,
        _summary_class(summary_props),
        f"CONVERSIONS = {conversions!r}\n",
    ]
    for action in actions.values():
        if action.id == "test_connectivity":
            parts.append(_CONNECTIVITY.format(doc=_literal(_one_line(action))))
        else:
            parts.append(_params_class(action))
            parts.append(_lookup_action(action, machine))
    parts.append('if __name__ == "__main__":\n    app.cli()\n')
    return "\n\n".join(part.rstrip("\n") + "\n" for part in parts)


_HEADER = '''"""Splunk SOAR app for mde-enrich. GENERATED by integration.platforms.splunk_soar from
plugin.yaml and schemas/: do not edit, regenerate."""

from soar_sdk.abstract import SOARClient
from soar_sdk.action_results import ActionOutput, OutputField
from soar_sdk.app import App
from soar_sdk.asset import AssetField, BaseAsset
from soar_sdk.params import Param, Params

from .mde_runtime import check_connectivity, run_lookup
'''

_APP = '''app = App(
    name={name},
    app_type="investigative",
    logo="logo.svg",
    logo_dark="logo_dark.svg",
    product_vendor={vendor},
    product_name={product},
    publisher={publisher},
    appid={appid},
    asset_cls=Asset,
    # Only 3.13: the project and its uv.lock are for 3.13, so no 3.15 wheels are listed.
    python_version="3.13",
)
'''

_CONNECTIVITY = '''@app.test_connectivity()
def test_connectivity(soar: SOARClient, asset: Asset) -> None:
    {doc}
    check_connectivity(asset)
'''


def _asset_class(fields: Iterable[ConfigField]) -> str:
    """The asset's form: the essential settings, and one JSON field for the others (the
    SDK's asset has no advanced section to keep retries and rate limits out of the way)."""
    lines = ["class Asset(BaseAsset):"]
    for field in (field for field in fields if field.essential):
        kind = _SCALARS[field.kind]
        args = [f"description={_literal(field.description)}"]
        if field.sensitive:
            args.append("sensitive=True")
        if field.default is not None:
            args.append(f"default={field.default!r}")
        if field.choices:
            args.append(f"value_list={list(field.choices)!r}")
        # The SDK reads an Optional type as "not required".
        annotation = kind if field.required else f"{kind} | None"
        lines.append(f"    {field.name}: {annotation} = AssetField({', '.join(args)})")
    lines.append(f"    {ADVANCED_FIELD}: str | None = AssetField("
                 f"description={_literal(ADVANCED_DESCRIPTION)})")
    return "\n".join(lines) + "\n"


def _params_class(action: Action) -> str:
    lines = [f"class {_camel(action.id)}Params(Params):"]
    for name, prop in action_parameters(action.input_schema).items():
        args = [f"description={_literal(prop.get('description', name))}"]
        if name in PARAM_CONTAINS:
            args += ["primary=True", f"cef_types={PARAM_CONTAINS[name]!r}"]
        if prop.get("enum"):
            args.append(f"value_list={list(prop['enum'])!r}")
        default = PARAM_DEFAULTS.get(name, prop.get("default"))
        if default is not None and name not in PARAMS_WITHOUT_DEFAULT:
            args.append(f"default={default!r}")
        kind = _SCALARS[prop.get("type", "string")]
        if name in PARAMS_WITHOUT_DEFAULT:
            kind = f"{kind} | None"
        lines.append(f"    {name}: {kind} = Param({', '.join(args)})")
    return "\n".join(lines) + "\n"


def _lookup_action(action: Action, machine: str) -> str:
    params = f"{_camel(action.id)}Params"
    description = _one_line(action)
    return f'''@app.action(
    name={action.name!r},
    identifier={action.id!r},
    description={_literal(description)},
    verbose={_literal(_full(action))},
    action_type="investigate",
    read_only=True,
    summary_type=LookupSummary,
    render_as="table",
)
def {action.id}(params: {params}, soar: SOARClient, asset: Asset) -> list[{machine}]:
    return run_lookup({action.id!r}, params, soar, asset, {machine}, LookupSummary, CONVERSIONS)
'''


def _summary_class(summary: Mapping[str, Any]) -> str:
    lines = ["class LookupSummary(ActionOutput):",
             "    status: str = OutputField(example_values=['success', 'not_found'])",
             "    indicator_type: str | None = OutputField(example_values=['domain', 'sha1'])",
             "    indicator_value: str | None"]
    required = set(summary.get("required", ()))
    for name, prop in summary["properties"].items():
        if name == "principal":  # an object: its two words for people, flat
            lines += ["    principal_type: str | None = OutputField(example_values=["
                      "'application', 'user'])",
                      "    principal_name: str | None"]
            continue
        kind = _SCALARS[prop["type"]]
        lines.append(f"    {name}: {kind if name in required else f'{kind} | None'}")
    return "\n".join(lines) + "\n"


def _output_class(name: str, node: Mapping[str, Any], path: str, classes: list[str],
                  conversions: dict[str, str]) -> str:
    """Append the ActionOutput class for an object schema (nested ones first); its name."""
    required = set(node.get("required", ()))
    lines = [f"class {name}(ActionOutput):"]
    for key, prop in node.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        kind = _output_type(f"{name}{_camel(key)}", prop, here, classes, conversions)
        annotation = kind if key in required else f"{kind} | None"
        args = []
        if here in OUTPUT_CONTAINS:
            args.append(f"cef_types={OUTPUT_CONTAINS[here]!r}")
        if here in COLUMNS:
            args.append(f"column_name={COLUMNS[here]!r}")
        lines.append(f"    {key}: {annotation}" + (f" = OutputField({', '.join(args)})"
                                                   if args else ""))
    classes.append("\n".join(lines) + "\n")
    return name


def _output_type(name: str, prop: Mapping[str, Any], path: str, classes: list[str],
                 conversions: dict[str, str]) -> str:
    kind = prop.get("type")
    if kind == "object":
        if prop.get("properties"):
            return _output_class(name, prop, path, classes, conversions)
        conversions[path] = "json"  # free-form: no datapaths, kept whole as JSON text
        return "str"
    if kind == "array":
        return f"list[{_output_type(f'{name}Item', prop['items'], path, classes, conversions)}]"
    if isinstance(kind, list):
        conversions[path] = "str"  # the SDK allows no unions but Optional
        return "str"
    if kind in _SCALARS:
        return _SCALARS[kind]
    values = prop.get("enum", [prop.get("const", "")])
    return "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "str"


# -- helpers ---------------------------------------------------------------------------------

def _full(action: Action) -> str:
    entry = next(a for a in manifest().data["actions"] if a["id"] == action.id)
    return " ".join(entry["description"].split())


def _one_line(action: Action) -> str:
    return _full(action).split(". ")[0].rstrip(".") + "."


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _literal(text: str) -> str:
    return repr(str(text))


# -- command line ----------------------------------------------------------------------------

def package(app_dir: Path, output: Path) -> None:
    """`soarapps package build`, run in the SDK's Python 3.13 venv, with two fixes.

    splunk-soar-sdk 7.0.3 cannot fetch a wheel locked by path (our bundled mde-enrich), and
    it fetches all ~60 wheels at once, which times out on slow links: read local wheels from
    the project's wheels/ and download four at a time, with retries.
    """
    import asyncio
    import hashlib

    import httpx
    from soar_sdk.cli.cli import app as soarapps
    from soar_sdk.meta.dependencies import sources

    original = sources.UvWheel.fetch
    limit = asyncio.Semaphore(4)

    async def fetch(wheel: Any) -> bytes:
        if wheel.url is None and wheel.filename:
            data = (app_dir / "wheels" / wheel.filename).read_bytes()
            algorithm, digest = wheel.hash.split(":")
            if hashlib.new(algorithm, data).hexdigest() != digest:
                raise ValueError(f"wheels/{wheel.filename} does not match uv.lock")
            return bytes(data)
        async with limit:
            for attempt in range(3):
                try:
                    return bytes(await original(wheel))
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(1 + attempt)
        raise AssertionError("unreachable")

    sources.UvWheel.fetch = fetch
    soarapps(["package", "build", str(app_dir), "--output-file", str(output)],
             standalone_mode=False)


def main(argv: list[str] | None = None) -> None:
    """`generate OUTDIR [--wheel WHEEL]` (any Python) or `package APP_DIR OUT.tgz` (the SDK's)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m integration.platforms.splunk_soar")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write the SDK app project")
    generate.add_argument("outdir", type=Path)
    generate.add_argument("--wheel", type=Path, help="an mde-enrich wheel to bundle")
    build = commands.add_parser("package", help="build the app .tgz (needs PyPI)")
    build.add_argument("app_dir", type=Path)
    build.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in write_splunk_app(args.outdir, wheel=args.wheel):
            print(path)
    else:
        if not (args.app_dir / "uv.lock").is_file():
            parser.error(f"{args.app_dir}: no uv.lock: generate the app, then run `uv lock` "
                         "in it (make soar-package does both)")
        try:
            package(args.app_dir.resolve(), args.output.resolve())
        except ImportError as error:  # run by the wrong Python: say which one, no traceback
            parser.exit(2, f"{parser.prog} package: {error.name or error} is not installed: "
                           "run it with the Python 3.13 venv that has splunk-soar-sdk>=7,<8 "
                           "(make soar-package builds and uses one)\n")


if __name__ == "__main__":
    main()
