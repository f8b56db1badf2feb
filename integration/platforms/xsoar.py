"""Cortex XSOAR integration, generated from plugin.yaml and schemas/.

`write_xsoar_integration(outdir)` writes:
- `MDEEnrich/`: the integration in demisto-sdk's split layout (MDEEnrich.yml with
  `script: '-'`, MDEEnrich.py, MDEEnrich_description.md, README.md), for a content repository
  and `demisto-sdk validate` / `upload`;
- `integration-MDEEnrich.yml`: the same YAML with the code and description inlined (what
  demisto-sdk's `unify` makes), for Settings > Integrations > Upload in XSOAR directly;
- `Dockerfile`: the image the integration runs in (XSOAR's images do not hold mde-enrich).

The integration's code is text we write: it imports XSOAR's `demistomock` and
`CommonServerPython` only when XSOAR runs it, never here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from integration import __version__, schemas
from integration.manifest import manifest
from integration.platforms import (
    RUNS_AS,
    ConfigField,
    action_parameters,
    config_fields,
    copy_wheel,
)
from integration.resources import PACKAGE_ROOT

INTEGRATION_ID = "MDEEnrich"
CONTEXT_PREFIX = "MDEEnrich"
COMMAND_PREFIX = "mde-"
SECTION = "Connect"
# XSOAR's own images do not hold mde-enrich and its dependencies: the Dockerfile we write
# builds this name from this base (`/docker_image_create` installs from PyPI only).
BASE_IMAGE = "demisto/python3:3.12.8.1983910"
DEFAULT_DOCKER_IMAGE = f"mde-enrich/xsoar:{__version__}"
FROM_VERSION = "6.10.0"

# Configuration type codes (demisto-sdk constants.ParameterType).
TEXT, BOOLEAN, CREDENTIALS, LONG_TEXT, SINGLE_SELECT = 0, 8, 9, 12, 15
TYPE_CODES = frozenset({0, 1, 4, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23})
OUTPUT_TYPES = frozenset({"String", "Number", "Boolean", "Date", "Unknown"})

# Labels for the instance form; every other setting is labelled from its name.
DISPLAY = {
    "tenant_id": "Tenant ID", "client_id": "Client (application) ID",
    "client_secret": "Client secret",
    "client_certificate_path": "Client certificate (PEM with its private key, or a path)",
    "client_certificate_password": "Client certificate password",
    "cloud": "Cloud", "region": "API region (geography)",
    "api_base_url": "API base URL (overrides cloud and region)",
    "authority_host": "Sign-in authority host (overrides cloud)",
    "scope": "Token scope (overrides cloud)",
    "ca_bundle": "Trusted CA certificates (PEM, or a path)",
    "proxy": "Use system proxy settings",
    "state": "Cache and budget state (sqlite:///path or redis://host:port/db)",
}
# XSOAR names where the plugin's flat name would break a convention: a secret-only
# credentials field is `credentials` (as in XSOAR's own Defender integration) and the
# system-proxy checkbox is `proxy`.
XSOAR_NAME = {"client_secret": "credentials", "client_certificate_path": "client_certificate",
              "client_certificate_password": "certificate_password"}
# Shown on the first page of the instance form; the rest is under "advanced".
BASIC = frozenset({"tenant_id", "client_id", "client_secret", "cloud", "contact"})
# Plugin settings that hold a file path: XSOAR gives the file's text (PEM), which the
# integration writes to a file; a path still works on an engine with the file mounted.
FILE_SETTINGS = frozenset({"client_certificate_path", "ca_bundle"})
SECRET_FILES = frozenset({"client_certificate_path"})

# -- the instance configuration --------------------------------------------------------------


def configuration() -> list[dict[str, Any]]:
    """The instance parameters: one per flat plugin setting, in the config schema's order."""
    return [_parameter(field) for field in config_fields()]


def _parameter(field: ConfigField) -> dict[str, Any]:
    name = XSOAR_NAME.get(field.name, field.name)
    label = _label(field.name)
    parameter: dict[str, Any] = {"name": name, "display": label}
    if field.sensitive:
        # Type 9 (credentials) with the user name hidden, like XSOAR's Defender integration:
        # the secret can come from XSOAR's credentials store or an external vault, not only
        # typed in; a type 4 field can only be typed in.
        parameter = {"name": name, "displaypassword": label, "type": CREDENTIALS,
                     "hiddenusername": True}
    elif field.name == "proxy":
        # The plugin wants a proxy URL; XSOAR convention is a checkbox that says "use the
        # proxy the server gives the container" (HTTPS_PROXY), which the code reads.
        parameter["type"] = BOOLEAN
    elif field.choices:
        parameter.update(type=SINGLE_SELECT, options=list(field.choices))
    elif field.name in SECRET_FILES:
        # A client certificate's PEM holds its private key: a secret, though the plugin's
        # setting is only the (non-secret) path of the file.
        parameter = {"name": name, "displaypassword": label, "type": CREDENTIALS,
                     "hiddenusername": True}
    elif field.name in FILE_SETTINGS:
        parameter["type"] = LONG_TEXT
    elif field.kind == "boolean":
        parameter["type"] = BOOLEAN
    else:
        # Numbers too: type 0 is what XSOAR's own integrations use for them; the code
        # converts and the plugin's config schema checks the range.
        parameter["type"] = TEXT
    if field.default is not None:
        parameter["defaultvalue"] = str(field.default).lower() if isinstance(field.default, bool) \
            else str(field.default)
    parameter["required"] = field.required
    parameter["section"] = SECTION
    if field.name not in BASIC:
        parameter["advanced"] = True
    info = _additional_info(field)
    if info:
        parameter["additionalinfo"] = info
    return parameter


def _label(name: str) -> str:
    if name in DISPLAY:
        return DISPLAY[name]
    words = f"{name[:-2]} (seconds)" if name.endswith("_s") else name
    return words.replace("_", " ").capitalize()


def _additional_info(field: ConfigField) -> str:
    if field.name == "client_secret":
        return "Give either the client secret or a client certificate."
    if field.name == "proxy":
        return "Sends the Defender and sign-in calls through the proxy XSOAR is configured with."
    if field.name in FILE_SETTINGS:
        return "Paste the PEM text; it is written to a file readable only by the integration."
    return "" if field.description == field.name.replace("_", " ").capitalize() \
        else _sentence(field.description)


def parameter_map() -> list[tuple[str, tuple[str, ...], str]]:
    """(XSOAR parameter, where its value goes in the plugin configuration, how to read it):
    the table the integration's code uses to build the plugin configuration."""
    table = []
    for field in config_fields():
        if field.name == "proxy":
            kind = "system_proxy"
        elif field.name in FILE_SETTINGS:
            kind = "secret_file" if field.name in SECRET_FILES else "file"
        elif field.kind in ("integer", "number", "boolean"):
            kind = field.kind
        else:
            kind = "text"
        table.append((XSOAR_NAME.get(field.name, field.name), field.path, kind))
    return table


# -- commands --------------------------------------------------------------------------------

# The context XSOAR users expect (XSOAR's own Defender integration and the context standard):
# machines under MDEEnrich.Machine in PascalCase, merged by ID, each naming the indicators of
# the command it belongs to; the same machines as standard Endpoint objects, which the
# isolate and scan commands and playbooks read; one MDEEnrich.Lookup per indicator.
MACHINE_KEY = f"{CONTEXT_PREFIX}.Machine(val.ID && val.ID == obj.ID)"
ENDPOINT_KEY = "Endpoint(val.ID && val.ID == obj.ID && val.Vendor == obj.Vendor)"
LOOKUP_KEY = f"{CONTEXT_PREFIX}.Lookup(val.Indicator && val.Indicator == obj.Indicator)"
# The Endpoint's Vendor: the integration's brand, as CommonServerPython's Common.Endpoint has it.
ENDPOINT_VENDOR = INTEGRATION_ID

# (context key, path in the machine artifact, sub-table for a list of objects): the names of
# XSOAR's Microsoft Defender for Endpoint integration (get_machine_data) where it has one.
# A path step that is a number picks that item of a list.
Path_ = tuple[str | int, ...]
MachineField = tuple[str, Path_, tuple[tuple[str, Path_], ...]]
MACHINE_FIELDS: tuple[MachineField, ...] = (
    ("ID", ("uid",), ()),
    ("ComputerDNSName", ("hostname",), ()),
    ("Name", ("name",), ()),
    ("FirstSeen", ("first_seen_time_dt",), ()),
    ("LastSeen", ("last_seen_time_dt",), ()),
    ("OSPlatform", ("os", "name"), ()),
    ("OSVersion", ("os", "version"), ()),
    ("OSBuild", ("os", "build"), ()),
    ("OSArchitecture", ("mde", "os_architecture"), ()),
    ("LastIPAddress", ("ip",), ()),
    ("LastExternalIPAddress", ("mde", "last_external_ip"), ()),
    ("HealthStatus", ("mde", "health_status"), ()),
    ("OnboardingStatus", ("mde", "onboarding_status"), ()),
    ("RiskScore", ("risk_level",), ()),
    ("ExposureLevel", ("mde", "exposure_level"), ()),
    ("DeviceValue", ("mde", "device_value"), ()),
    ("RBACGroupID", ("mde", "rbac_group_id"), ()),
    ("RBACGroupName", ("groups", 0, "name"), ()),
    ("AADDeviceID", ("uid_alt",), ()),
    ("IsAADJoined", ("mde", "is_aad_joined"), ()),
    ("MachineTags", ("mde", "machine_tags"), ()),
    ("Groups", ("groups",), (("ID", ("uid",)), ("Name", ("name",)))),
    ("IPAddresses", ("network_interfaces",),
     (("IPAddress", ("ip",)), ("MACAddress", ("mac",)), ("Type", ("type",)))),
    ("PortalURL", ("mde", "portal_url"), ()),
    ("Raw", ("mde", "raw"), ()),  # with include_raw: Defender's record as it came
    ("Contact", ("mde", "contact"),
     (("Source", ("source",)), ("FirstContact", ("first_seen_time_dt",)),
      ("LastContact", ("last_seen_time_dt",)), ("Events", ("count",)),
      ("ProcessName", ("process", "name")), ("ProcessSHA1", ("process", "sha1")),
      ("ProcessCommandLine", ("process", "command_line")))),
)
# Context paths that the artifact schema does not describe: what the integration adds.
ADDED_OUTPUTS = (
    (f"{CONTEXT_PREFIX}.Machine.RelatedIndicators.Type", "String",
     "Type of an indicator of this command that the machine touched: domain, sha1, sha256 "
     "or md5."),
    (f"{CONTEXT_PREFIX}.Machine.RelatedIndicators.Value", "String",
     "An indicator of this command that the machine touched, as sent to Defender."),
)
# The standard Endpoint object (xsoar.pan.dev context standards, CommonServerPython's
# Common.Endpoint): the keys these machines can fill.
ENDPOINT_OUTPUTS = (
    ("ID", "String", "The Defender for Endpoint machine ID."),
    ("Hostname", "String", "The machine's host name."),
    ("IPAddress", "String", "The machine's last IP address on its local network."),
    ("MACAddress", "String", "The MAC address of the interface holding IPAddress."),
    ("OS", "String", "The operating system family: Windows, Linux, macOS, ..."),
    ("OSVersion", "String", "The operating system version."),
    ("Status", "String", "Online when Defender's health status is Active, else Offline."),
    ("Vendor", "String", f"The integration that returned the endpoint ({ENDPOINT_VENDOR})."),
)
LOOKUP_OUTPUTS = (
    ("Indicator", "String", "The indicator as sent to Defender: a punycode domain or a "
                            "lowercase hash."),
    ("Original", "String", "The indicator as given."),
    ("Type", "String", "domain, sha1, sha256 or md5."),
    ("SHA1", "String", "The SHA-1 a SHA-256 or MD5 resolved to."),
    ("Status", "String", "success, not_found or error."),
    ("TotalMachines", "Number", "Number of machines that touched the indicator."),
    ("Truncated", "Boolean", "Whether Defender capped the answer."),
    ("Cached", "Boolean", "Whether the answer came from the cache."),
    ("MachineIDs", "String", f"IDs of the machines (keys of {CONTEXT_PREFIX}.Machine)."),
    ("Warnings", "String", "What the lookup could not do (e.g. the contact timeline)."),
    ("Error.Code", "String", "When the lookup failed: invalid_input, auth_failed, "
                             "permission_denied, rate_limited, ..."),
    ("Error.Message", "String", "When the lookup failed: why."),
    ("Error.Retryable", "Boolean", "When the lookup failed: whether a retry may succeed."),
)
# The war-room table: the columns of XSOAR's Defender integration, then the indicators, and
# the contact timeline's when it was asked for.
TABLE_HEADERS = ["ID", "ComputerDNSName", "OSPlatform", "LastIPAddress",
                 "LastExternalIPAddress", "HealthStatus", "RiskScore", "ExposureLevel",
                 "RelatedIndicators"]
CONTACT_HEADERS = ["FirstContact", "LastContact", "ContactEvents", "ContactProcess"]
# The arguments that take a comma-separated list or an XSOAR list.
LIST_ARGUMENTS = frozenset({"domain", "file_hash"})


def command_name(action_id: str) -> str:
    # XSOAR runs `test-module` for the instance's Test button; it is not listed as a command.
    return "test-module" if action_id == "test_connectivity" \
        else COMMAND_PREFIX + action_id.replace("_", "-")


def commands() -> list[dict[str, Any]]:
    listed = []
    for entry in manifest().data["actions"]:
        if command_name(entry["id"]) == "test-module":
            continue
        listed.append({
            "name": command_name(entry["id"]),
            "description": _sentence(" ".join(entry["description"].split())),
            "arguments": arguments(Path(entry["input"]["$ref"]).name),
            "outputs": outputs(),
        })
    return listed


def arguments(input_schema: str) -> list[dict[str, Any]]:
    """Arguments from an input schema; the first required one is the default (unnamed) one."""
    schema = schemas.schema(input_schema)
    properties = action_parameters(input_schema)
    required = list(schema.get("required", ()))
    listed = []
    for name, node in properties.items():
        description = node.get("description") or name.replace("_", " ")
        argument: dict[str, Any] = {"name": name}
        if name in required:
            argument["required"] = True
            argument["default"] = name == required[0]
        if name in LIST_ARGUMENTS:
            argument["isArray"] = True
            description += ("; a comma-separated list or an XSOAR list of them (a URL that "
                            "holds a comma goes in an XSOAR list)")
        # XSOAR sends every argument as text; a closed set of values is offered as a list.
        # `contact` and `priority` have no default here: the instance setting, and where the
        # command runs (war room or playbook), decide when they are not given.
        if node.get("type") == "boolean":
            argument.update(auto="PREDEFINED", predefined=["true", "false"])
            if name != "contact":
                argument["defaultValue"] = str(node.get("default", False)).lower()
            else:
                description += "; default: the instance's contact setting"
        elif node.get("enum") and all(isinstance(value, str) for value in node["enum"]):
            argument.update(auto="PREDEFINED", predefined=list(node["enum"]))
            if name == "priority":
                description += ("; default: interactive from the war room, batch in a "
                                "playbook")
            elif "default" in node:
                argument["defaultValue"] = node["default"]
        argument["description"] = _sentence(description)
        listed.append(argument)
    return listed


def action_arguments() -> dict[str, dict[str, Any]]:
    """XSOAR command -> what the code needs to call the action: its entry point, its list
    argument (the indicators), the other arguments it takes and which are booleans (XSOAR
    sends every argument as text)."""
    table = {}
    for entry in manifest().data["actions"]:
        input_schema = Path(entry["input"]["$ref"]).name
        properties = action_parameters(input_schema)
        table[command_name(entry["id"])] = {
            "entry_point": entry["entry_point"],
            "indicator": next((name for name in properties if name in LIST_ARGUMENTS), None),
            "arguments": list(properties),
            "booleans": [name for name, node in properties.items()
                         if node.get("type") == "boolean"],
        }
    return table


def outputs() -> list[dict[str, str]]:
    """Context paths: MDEEnrich.Machine.* (typed from machine.schema.json), Endpoint.* and
    MDEEnrich.Lookup.*."""
    listed = []
    for key, path, sub_fields in MACHINE_FIELDS:
        node = _machine_node(path)
        if sub_fields:
            items = node.get("items", node)
            items, base = schemas.deref(items, "machine.schema.json")
            for sub_key, sub_path in sub_fields:
                sub_node = _walk(items, sub_path, base)
                listed.append(_output(f"{CONTEXT_PREFIX}.Machine.{key}.{sub_key}", sub_node))
        else:
            listed.append(_output(f"{CONTEXT_PREFIX}.Machine.{key}", node))
    listed += [{"contextPath": path, "description": description, "type": kind}
               for path, kind, description in ADDED_OUTPUTS]
    listed += [{"contextPath": f"Endpoint.{key}", "description": description, "type": kind}
               for key, kind, description in ENDPOINT_OUTPUTS]
    listed += [{"contextPath": f"{CONTEXT_PREFIX}.Lookup.{key}", "description": description,
                "type": kind} for key, kind, description in LOOKUP_OUTPUTS]
    return listed


def _machine_node(path: Path_) -> dict[str, Any]:
    return _walk(schemas.schema("machine.schema.json"), path, "machine.schema.json")


def _walk(node: Mapping[str, Any], path: Path_, base: str) -> dict[str, Any]:
    for part in path:
        node, base = schemas.deref(node, base)
        node = node["items"] if isinstance(part, int) else node["properties"][part]
    node, _ = schemas.deref(node, base)
    return dict(node)


def _output(path: str, node: Mapping[str, Any]) -> dict[str, str]:
    description = node.get("description") or node.get("title") or \
        path.rsplit(".", 1)[-1]
    return {"contextPath": path, "description": _sentence(description.replace("`", "")),
            "type": output_type(node)}


def output_type(node: Mapping[str, Any]) -> str:
    """XSOAR's output types: String, Number, Boolean, Date, Unknown (a list takes the type of
    its items, as XSOAR's own integrations do)."""
    if node.get("format") == "date-time":
        return "Date"
    kind = node.get("type")
    if kind == "array":
        return output_type(node.get("items") or {})
    values = node.get("enum") or ([node["const"]] if "const" in node else [])
    if values:
        kinds = {type(value) for value in values}
        kind = {frozenset({str}): "string", frozenset({int}): "integer",
                frozenset({bool}): "boolean"}.get(frozenset(kinds))
    return {"string": "String", "integer": "Number", "number": "Number",
            "boolean": "Boolean"}.get(kind if isinstance(kind, str) else "", "Unknown")


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    first_word = text.split(" ", 1)[0]
    if not any(mark in first_word for mark in ":_`/"):  # leave identifiers and URLs as they are
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


# -- the YAML and the files ------------------------------------------------------------------


def integration_yaml(docker_image: str = DEFAULT_DOCKER_IMAGE) -> dict[str, Any]:
    data = manifest().data
    return {
        "commonfields": {"id": INTEGRATION_ID, "version": -1},
        "name": INTEGRATION_ID,
        "display": "Microsoft Defender for Endpoint Machine Enrichment (mde-enrich)",
        "category": "Endpoint",
        "description": _sentence(" ".join(data["description"].split())),
        "sectionOrder": [SECTION],
        "configuration": configuration(),
        "script": {
            "script": "-",
            "type": "python",
            "subtype": "python3",
            "dockerimage": docker_image,
            "commands": commands(),
            "runonce": False,
            "isfetch": False,
        },
        "fromversion": FROM_VERSION,
        "tests": ["No tests"],
    }


def integration_script() -> str:
    """The integration's Python, with the tables it needs written in as literals."""
    template = (PACKAGE_ROOT / "platforms" / "xsoar_app" / "integration.py.tmpl").read_text(
        encoding="utf-8")
    tables = {
        "__VERSION__": str(manifest().data["version"]),
        "__PARAMETERS__": python_literal(parameter_map()),
        "__COMMANDS__": python_literal(action_arguments()),
        "__MACHINE_FIELDS__": python_literal(list(MACHINE_FIELDS)),
        "__MACHINE_KEY__": repr(MACHINE_KEY),
        "__ENDPOINT_KEY__": repr(ENDPOINT_KEY),
        "__LOOKUP_KEY__": repr(LOOKUP_KEY),
        "__ENDPOINT_VENDOR__": repr(ENDPOINT_VENDOR),
        "__TABLE_HEADERS__": python_literal(TABLE_HEADERS),
        "__CONTACT_HEADERS__": python_literal(CONTACT_HEADERS),
    }
    for placeholder, literal in tables.items():
        template = template.replace(placeholder, literal)
    return template


def python_literal(value: Any, indent: str = "") -> str:
    """A Python literal with one entry a line (short ones whole), so the generated code
    stays readable and a diff of two exports shows what changed."""
    inner = indent + "    "
    if isinstance(value, dict):
        lines = [f"{inner}{key!r}: {python_literal(item, inner)}," for key, item in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"
    if isinstance(value, list) and len(indent + repr(value)) > 80:
        lines = [f"{inner}{python_literal(item, inner)}," for item in value]
        return "[\n" + "\n".join(lines) + f"\n{indent}]"
    return repr(value)


def description_markdown(docker_image: str = DEFAULT_DOCKER_IMAGE) -> str:
    return f"""## Microsoft Defender for Endpoint machine enrichment (mde-enrich)

Which of our machines touched this domain or this file? Generated from mde-enrich
{manifest().data['version']}'s plugin.yaml.

1. Register an app in Microsoft Entra ID and give it the WindowsDefenderATP application
   permission **Machine.Read.All** (admin consent); for the contact timeline also the
   Microsoft Graph application permission **ThreatHunting.Read.All**. Use its tenant ID,
   client ID and a client secret (or a PEM client certificate).
2. The integration runs in the docker image `{docker_image}`, which XSOAR does not have:
   build it from the Dockerfile exported beside this integration on the host that runs
   the integration (the XSOAR 6 server, or the engine the instance uses; XSOAR 8 runs
   custom images on engines), `docker build -t {docker_image} .`, or push it to a registry
   that host pulls from and set the instance's docker image to it.
3. **Test** gets a token, calls Defender once (GET /api/machines?$top=1) and checks each
   permission the instance needs (the contact timeline's too, when it is on), naming any
   that is missing.
4. {RUNS_AS}

The commands take a list (`domain=evil.example,phish.example`, or an XSOAR list from
context) and write each machine to `{CONTEXT_PREFIX}.Machine` (by ID, with the indicators it
touched) and to the standard `Endpoint`, which the isolate and scan commands read.
From the war room they use the rate budget's interactive lane; from a playbook task, the
batch lane (`priority` overrides it).
"""


def readme_markdown() -> str:
    lines = ["# MDEEnrich", "", _sentence(" ".join(manifest().data["description"].split())), "",
             "## Commands", ""]
    for command in commands():
        lines += [f"### {command['name']}", "", command["description"], "",
                  "| Argument | Description | Required |", "| --- | --- | --- |"]
        lines += [f"| {argument['name']} | {argument['description']} | "
                  f"{'yes' if argument.get('required') else 'no'} |"
                  for argument in command["arguments"]]
        lines += ["", "| Context path | Type | Description |", "| --- | --- | --- |"]
        lines += [f"| {output['contextPath']} | {output['type']} | {output['description']} |"
                  for output in command["outputs"]]
        lines.append("")
    return "\n".join(lines)


def dockerfile(wheel: str | None = None, docker_image: str = DEFAULT_DOCKER_IMAGE) -> str:
    """The image's recipe: the bundled wheel when there is one, else mde-enrich from the
    package index pip is pointed at (publish it there first)."""
    install = f"COPY {wheel} /tmp/{wheel}\nRUN pip install --no-cache-dir /tmp/{wheel}\n" \
        if wheel else f"RUN pip install --no-cache-dir mde-enrich=={manifest().data['version']}\n"
    return (f"# The image MDEEnrich runs in: XSOAR's python3 image plus the mde-enrich package.\n"
            f"# docker build -t {docker_image} .\n"
            f"FROM {BASE_IMAGE}\n" + install)


def next_steps(outdir: Path, wheel: Path | None = None,
               docker_image: str = DEFAULT_DOCKER_IMAGE) -> list[str]:
    """What to do with the exported files, in order."""
    return [f"on the XSOAR server or engine that runs the integration: docker build -t "
            f"{docker_image} {outdir}",
            f"Settings > Integrations > Upload integration: "
            f"{Path(outdir) / f'integration-{INTEGRATION_ID}.yml'} (or copy "
            f"{Path(outdir) / INTEGRATION_ID} into a content pack)",
            "add an instance: Tenant ID, Client ID, Client secret; press Test",
            f"!{command_name('get_machines_for_domain')} domain=evil.example,phish.example"]


def write_xsoar_integration(outdir: Path, docker_image: str = DEFAULT_DOCKER_IMAGE, *,
                            wheel: Path | None = None) -> list[Path]:
    """Write the integration (split layout, unified YAML, Dockerfile, and `wheel` beside the
    Dockerfile when given); return the paths."""
    folder = Path(outdir) / INTEGRATION_ID
    folder.mkdir(parents=True, exist_ok=True)
    split = integration_yaml(docker_image)
    code, description = integration_script(), description_markdown(docker_image)
    # The unified YAML holds the code and the long description itself.
    unified = {**split, "detaileddescription": description,
               "script": {**split["script"], "script": code}}
    files = {
        folder / f"{INTEGRATION_ID}.yml": dump_yaml(split),
        folder / f"{INTEGRATION_ID}.py": code,
        folder / f"{INTEGRATION_ID}_description.md": description,
        folder / "README.md": readme_markdown(),
        Path(outdir) / f"integration-{INTEGRATION_ID}.yml": dump_yaml(unified),
        Path(outdir) / "Dockerfile": dockerfile(wheel.name if wheel else None, docker_image),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return [*files, *([copy_wheel(wheel, Path(outdir))] if wheel else [])]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the code, the description) as YAML literal blocks, readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not re.search(r"[ \t]\n", value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(dict(data), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True,
                     width=100)


# -- the integration's code ------------------------------------------------------------------
