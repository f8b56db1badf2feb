"""`mde-enrich export`: the Cortex XSOAR integration generated from plugin.yaml.

The YAML is checked against demisto-sdk's own schema for integration files (tests/xsoar/,
converted from pykwalify to JSON Schema here) and against the field rules XSOAR documents;
the generated Python is run against stand-ins for XSOAR's `demistomock` and
`CommonServerPython` and the Defender emulator.
"""

from __future__ import annotations

import copy
import runpy
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from integration import actions, schemas
from integration.cli import main as cli_main
from integration.emulator import Emulator, seed
from integration.errors import InvalidInput
from integration.platforms import export, xsoar

SDK_SCHEMA = Path(__file__).parent / "xsoar" / "integration.schema.yml"
DOMAIN_COMMAND = "mde-get-machines-for-domain"
FILE_COMMAND = "mde-get-machines-for-file-hash"
MACHINES = "MDEEnrich.Machine(val.ID && val.ID == obj.ID)"
ENDPOINT = "Endpoint(val.ID && val.ID == obj.ID && val.Vendor == obj.Vendor)"
LOOKUP = "MDEEnrich.Lookup(val.Indicator && val.Indicator == obj.Indicator)"
# XSOAR's Microsoft Defender for Endpoint integration's machine table columns
# (demisto/content Packs/MicrosoftDefenderAdvancedThreatProtection/.../
# MicrosoftDefenderAdvancedThreatProtection.py, get_file_related_machines_command), then ours.
DEFENDER_COLUMNS = ["ID", "ComputerDNSName", "OSPlatform", "LastIPAddress",
                    "LastExternalIPAddress", "HealthStatus", "RiskScore", "ExposureLevel"]


# -- demisto-sdk's pykwalify schema as a JSON Schema -----------------------------------------

_KWALIFY_TYPES = {"str": {"type": "string"}, "int": {"type": "integer"},
                  "bool": {"type": "boolean"}, "any": {}}


def kwalify_to_json_schema(rule: dict[str, Any]) -> dict[str, Any]:
    """The pykwalify rules the schema uses: map (unknown keys rejected unless allowempty),
    seq, str, int, bool, any, enum, required and include of `schema;<name>` parts. At least
    as strict as pykwalify: a null is not taken for an optional string."""
    if "include" in rule:
        return {"$ref": f"#/$defs/{rule['include']}"}
    kind = rule.get("type", "str")
    if kind == "map":
        mapping = rule.get("mapping", {})
        converted: dict[str, Any] = {
            "type": "object",
            "properties": {key: kwalify_to_json_schema(value) for key, value in mapping.items()},
            "required": [key for key, value in mapping.items() if value.get("required")],
            "additionalProperties": bool(rule.get("allowempty")),
        }
    elif kind == "seq":
        converted = {"type": "array", "items": kwalify_to_json_schema(rule["sequence"][0])}
    else:
        converted = dict(_KWALIFY_TYPES[kind])
    if "enum" in rule:
        converted["enum"] = rule["enum"]
    return converted


@pytest.fixture(scope="module")
def sdk_validator() -> Draft202012Validator:
    document = yaml.safe_load(SDK_SCHEMA.read_text(encoding="utf-8"))
    parts = {key.removeprefix("schema;"): kwalify_to_json_schema(value)
             for key, value in document.items() if key.startswith("schema;")}
    root = {key: value for key, value in document.items() if not key.startswith("schema;")}
    converted = {**kwalify_to_json_schema(root), "$defs": parts}
    Draft202012Validator.check_schema(converted)
    return Draft202012Validator(converted)


def sdk_errors(validator: Draft202012Validator, document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


# -- the generated files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("xsoar")
    return {path.relative_to(outdir).as_posix(): path
            for path in xsoar.write_xsoar_integration(outdir)}


@pytest.fixture(scope="module")
def integration(exported: dict[str, Path]) -> dict[str, Any]:
    return yaml.safe_load(exported["MDEEnrich/MDEEnrich.yml"].read_text(encoding="utf-8"))


def test_the_files_of_the_split_and_unified_layouts_are_written(exported) -> None:
    assert sorted(exported) == ["Dockerfile", "MDEEnrich/MDEEnrich.py",
                                "MDEEnrich/MDEEnrich.yml", "MDEEnrich/MDEEnrich_description.md",
                                "MDEEnrich/README.md", "integration-MDEEnrich.yml"]
    unified = yaml.safe_load(exported["integration-MDEEnrich.yml"].read_text(encoding="utf-8"))
    code = exported["MDEEnrich/MDEEnrich.py"].read_text(encoding="utf-8")
    assert unified["script"]["script"] == code
    # The image is built from the Dockerfile; /docker_image_create would need mde-enrich on
    # PyPI, so it is not offered.
    assert "docker build -t" in unified["detaileddescription"]
    assert "docker_image_create" not in unified["detaileddescription"]


@pytest.mark.parametrize("name", ["MDEEnrich/MDEEnrich.yml", "integration-MDEEnrich.yml"])
def test_the_yaml_matches_demisto_sdks_integration_schema(sdk_validator, exported,
                                                          name: str) -> None:
    document = yaml.safe_load(exported[name].read_text(encoding="utf-8"))
    assert sdk_errors(sdk_validator, document) == []


@pytest.mark.parametrize(("break_it", "complaint"), [
    (lambda doc: doc["commonfields"].pop("version"), "'version' is a required property"),
    (lambda doc: doc["configuration"][0].update(type="zero"), "'zero' is not of type 'integer'"),
    (lambda doc: doc["script"].update(type="go"), "'go' is not one of"),
    (lambda doc: doc["script"]["commands"][0].pop("description"), "'description' is a required"),
    (lambda doc: doc.update(bogus_key=1), "'bogus_key' was unexpected"),
    (lambda doc: doc["script"]["commands"][0]["arguments"][1].update(auto="LIST"),
     "'LIST' is not one of"),
])
def test_the_converted_schema_rejects_what_pykwalify_rejects(sdk_validator, integration,
                                                             break_it, complaint: str) -> None:
    broken = copy.deepcopy(integration)
    break_it(broken)
    assert any(complaint in error for error in sdk_errors(sdk_validator, broken))


def test_header_and_script_block(integration) -> None:
    assert integration["commonfields"] == {"id": "MDEEnrich", "version": -1}
    assert integration["category"] == "Endpoint"
    assert integration["name"] == integration["commonfields"]["id"]
    script = integration["script"]
    assert (script["script"], script["type"], script["subtype"]) == ("-", "python", "python3")
    assert script["dockerimage"]


def test_every_configuration_entry_has_a_valid_type_and_secrets_are_hidden(integration) -> None:
    parameters = {entry["name"]: entry for entry in integration["configuration"]}
    assert len(parameters) == len(integration["configuration"]), "duplicate parameter names"
    for entry in parameters.values():
        assert entry["type"] in xsoar.TYPE_CODES, entry
        assert entry.get("display") or entry.get("displaypassword"), entry
        assert entry.get("section") in integration["sectionOrder"], entry
        if entry["type"] == 9 and entry.get("hiddenusername"):
            assert "display" not in entry, "a secret-only field is labelled by displaypassword"
    # Every writeOnly setting of the config schema, and the certificate's private key.
    secrets = {"credentials", "certificate_password", "client_certificate"}
    for name in secrets:
        assert parameters[name]["type"] in (4, 9), name
        assert "defaultvalue" not in parameters[name], name
    assert {name for name, entry in parameters.items() if entry["type"] in (4, 9, 14)} == secrets
    assert parameters["tenant_id"]["type"] == parameters["client_id"]["type"] == 0
    # client_id is optional: a managed identity needs none.
    assert parameters["tenant_id"]["required"] and not parameters["client_id"]["required"]
    clouds = schemas.schema("config.schema.json")["properties"]["cloud"]["enum"]
    assert parameters["cloud"]["type"] == 15
    assert parameters["cloud"]["options"] == clouds
    assert parameters["cloud"]["defaultvalue"] in clouds
    assert parameters["proxy"]["type"] == 8
    assert parameters["ca_bundle"]["type"] == 12


def test_commands_arguments_and_outputs_follow_xsoars_rules(integration) -> None:
    commands = integration["script"]["commands"]
    names = [command["name"] for command in commands]
    assert names == [DOMAIN_COMMAND, FILE_COMMAND]  # test-module is handled in the code
    for command in commands:
        assert command["description"].strip(), command["name"]
        arguments = command["arguments"]
        assert len({argument["name"] for argument in arguments}) == len(arguments)
        assert sum(bool(argument.get("default")) for argument in arguments) == 1
        for argument in arguments:
            assert argument["description"].strip(), argument
            if argument.get("auto") == "PREDEFINED" and "defaultValue" in argument:
                assert argument["defaultValue"] in argument["predefined"], argument
        paths = [output["contextPath"] for output in command["outputs"]]
        assert len(set(paths)) == len(paths), "duplicate context paths"
        for output in command["outputs"]:
            assert output["contextPath"].startswith(("MDEEnrich.", "Endpoint.")), output
            assert output["description"].strip(), output
            assert output["type"] in xsoar.OUTPUT_TYPES, output
    primary = {command["name"]: command["arguments"][0] for command in commands}
    assert primary[DOMAIN_COMMAND]["name"] == "domain"
    assert primary[FILE_COMMAND]["name"] == "file_hash"
    for argument in primary.values():
        assert argument["required"] is True and argument["default"] is True
        assert argument["isArray"] is True  # a list, like XSOAR's Defender file_hash
    use_cache = commands[0]["arguments"][1]
    assert use_cache == {"name": "use_cache", "description": use_cache["description"],
                         "auto": "PREDEFINED", "predefined": ["true", "false"],
                         "defaultValue": "true"}
    by_name = {argument["name"]: argument for argument in commands[0]["arguments"]}
    # No default: the instance setting and where the command runs decide.
    assert "defaultValue" not in by_name["contact"] and "defaultValue" not in by_name["priority"]
    types_by_path = {output["contextPath"]: output["type"] for output in commands[0]["outputs"]}
    assert {path: types_by_path.get(path) for path in [
        "MDEEnrich.Machine.ID", "MDEEnrich.Machine.ComputerDNSName",
        "MDEEnrich.Machine.LastIPAddress", "MDEEnrich.Machine.OSPlatform",
        "MDEEnrich.Machine.RiskScore", "MDEEnrich.Machine.LastSeen",
        "MDEEnrich.Machine.IsAADJoined", "MDEEnrich.Machine.IPAddresses.MACAddress",
        "MDEEnrich.Machine.Contact.Events", "MDEEnrich.Machine.RelatedIndicators.Value",
        "Endpoint.ID", "Endpoint.Hostname", "Endpoint.Vendor",
        "MDEEnrich.Lookup.Indicator", "MDEEnrich.Lookup.Status",
        "MDEEnrich.Lookup.TotalMachines",
    ]} == {
        "MDEEnrich.Machine.ID": "String", "MDEEnrich.Machine.ComputerDNSName": "String",
        "MDEEnrich.Machine.LastIPAddress": "String", "MDEEnrich.Machine.OSPlatform": "String",
        "MDEEnrich.Machine.RiskScore": "String", "MDEEnrich.Machine.LastSeen": "Date",
        "MDEEnrich.Machine.IsAADJoined": "Boolean",
        "MDEEnrich.Machine.IPAddresses.MACAddress": "String",
        "MDEEnrich.Machine.Contact.Events": "Number",
        "MDEEnrich.Machine.RelatedIndicators.Value": "String",
        "Endpoint.ID": "String", "Endpoint.Hostname": "String", "Endpoint.Vendor": "String",
        "MDEEnrich.Lookup.Indicator": "String", "MDEEnrich.Lookup.Status": "String",
        "MDEEnrich.Lookup.TotalMachines": "Number",
    }


def test_every_context_key_the_code_writes_is_declared(integration) -> None:
    paths = {output["contextPath"] for output in integration["script"]["commands"][0]["outputs"]}
    for key, _, sub_fields in xsoar.MACHINE_FIELDS:
        expected = [f"MDEEnrich.Machine.{key}.{sub}" for sub, _ in sub_fields] or \
            [f"MDEEnrich.Machine.{key}"]
        assert set(expected) <= paths, key


def test_the_python_compiles(exported) -> None:
    for name in ("MDEEnrich/MDEEnrich.py",):
        compile(exported[name].read_text(encoding="utf-8"), name, "exec")


# -- running the generated code against XSOAR stand-ins --------------------------------------


class XsoarRun:
    """Stand-ins for the two modules XSOAR gives an integration, recording what it returns."""

    def __init__(self, command: str, params: dict[str, Any], args: dict[str, Any],
                 playbook_task: dict[str, Any] | None = None) -> None:
        self.entries: list[Any] = []
        self.demisto = types.ModuleType("demistomock")
        # What XSOAR tells a command about where it runs: a playbook task names itself in
        # ParentEntry.entryTask (as demisto/content's XQLQueryingEngine reads it); a war-room
        # command has none.
        parent = {"entryTask": playbook_task} if playbook_task else {}
        self.demisto.callingContext = {  # type: ignore[attr-defined]
            "context": {"IntegrationBrand": "MDEEnrich", "ParentEntry": parent}}
        self.demisto.command = lambda: command  # type: ignore[attr-defined]
        self.demisto.params = lambda: params  # type: ignore[attr-defined]
        self.demisto.args = lambda: args  # type: ignore[attr-defined]
        self.demisto.results = self.entries.append  # type: ignore[attr-defined]
        self.common = types.ModuleType("CommonServerPython")
        self.common.CommandResults = CommandResults  # type: ignore[attr-defined]
        self.common.return_results = self.return_results  # type: ignore[attr-defined]
        self.common.return_error = self.return_error  # type: ignore[attr-defined]
        self.common.tableToMarkdown = table_to_markdown  # type: ignore[attr-defined]

    def return_results(self, results: Any) -> None:
        self.entries.append(results.to_context() if isinstance(results, CommandResults)
                            else results)

    def return_error(self, message: str, error: Any = "", outputs: Any = None) -> None:
        self.entries.append({"Type": 4, "ContentsFormat": "text", "Contents": message})
        sys.exit(0)  # what CommonServerPython's return_error does

    def run(self, script: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
        monkeypatch.setitem(sys.modules, "demistomock", self.demisto)
        monkeypatch.setitem(sys.modules, "CommonServerPython", self.common)
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as done:
            assert done.code in (0, None)
        assert len(self.entries) == 1, self.entries
        return self.entries[0]


class CommandResults:
    """The part of CommonServerPython.CommandResults the integration uses."""

    def __init__(self, outputs_prefix: str | None = None, outputs_key_field: Any = None,
                 outputs: Any = None, readable_output: str | None = None,
                 raw_response: Any = None) -> None:
        if outputs is not None and not isinstance(outputs, dict) and not outputs_prefix:
            raise ValueError("outputs_prefix is missing")  # as the real one says
        self.outputs_prefix, self.outputs_key_field = outputs_prefix, outputs_key_field
        self.outputs, self.readable_output, self.raw_response = \
            outputs, readable_output, raw_response

    def to_context(self) -> dict[str, Any]:
        context: dict[str, Any] = {}
        if self.outputs is not None:
            if self.outputs_prefix and self.outputs_key_field:
                key = self.outputs_key_field
                context[f"{self.outputs_prefix}(val.{key} && val.{key} == obj.{key})"] = \
                    self.outputs
            elif self.outputs_prefix:
                context[self.outputs_prefix] = self.outputs
            else:
                context.update(self.outputs)
        return {"Type": 1, "ContentsFormat": "json", "Contents": self.raw_response,
                "HumanReadable": self.readable_output, "EntryContext": context}


def table_to_markdown(name: str, rows: list[dict[str, Any]], headers: list[str],
                      removeNull: bool = False) -> str:  # XSOAR's own argument name
    """CommonServerPython's tableToMarkdown for a list of rows: with removeNull, a column no
    row has a value in is left out."""
    if removeNull:
        headers = [header for header in headers
                   if any(row.get(header) not in (None, "", []) for row in rows)]
    lines = [f"### {name}", "|" + "|".join(headers) + "|", "|" + "---|" * len(headers)]
    lines += ["|" + "|".join(str(row.get(header) or "") for header in headers) + "|"
              for row in rows]
    return "\n".join(lines)


def xsoar_params(config: dict[str, Any], integration: dict[str, Any]) -> dict[str, Any]:
    """The instance parameters XSOAR would send for a plugin configuration: every field's
    default, then the configuration's values as XSOAR holds them (text, credentials, PEM)."""
    entries = {entry["name"]: entry for entry in integration["configuration"]}
    params: dict[str, Any] = {name: entry.get("defaultvalue", "")
                              for name, entry in entries.items()}
    for name, path, kind in xsoar.parameter_map():
        value: Any = config
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or kind == "system_proxy":
            continue
        if kind in ("file", "secret_file"):
            value = Path(value).read_text(encoding="utf-8")
        value = value if isinstance(value, bool) else str(value)
        params[name] = {"identifier": "", "password": value} if entries[name]["type"] == 9 \
            else value
    return params


@pytest.fixture
def script(exported: dict[str, Path]) -> Path:
    return exported["MDEEnrich/MDEEnrich.py"]


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The integration's temporary files (PEM files, default state) go to the test's folder."""
    folder = tmp_path / "container-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict, dict]]:
    """Each entry point call the integration makes: (action, params, config)."""
    made: list[tuple[str, dict, dict]] = []

    def recorder(name: str, inner: Any) -> Any:
        def recording(params: Any, config: Any = None) -> Any:
            made.append((name, copy.deepcopy(params), copy.deepcopy(config)))
            return inner(params, config)
        return recording

    for name in ("get_machines_for_domain", "get_machines_for_file_hash", "test_connectivity"):
        monkeypatch.setattr(actions, name, recorder(name, getattr(actions, name)))
    return made


def table_headers(readable: str) -> list[str]:
    """The column names of the first markdown table in a war-room entry."""
    line = next(line for line in readable.splitlines() if line.startswith("|"))
    return line.strip("|").split("|")


def test_both_commands_take_a_list_and_fill_endpoint_machine_and_table(
        script, integration, config, private_tmp, calls, monkeypatch) -> None:
    params = xsoar_params(config, integration)
    domains = f"{seed.EVIL_DOMAIN},{seed.PHISH_DOMAIN}"
    hashes = [seed.KNOWN_FILE["sha1"], seed.KNOWN_FILE["sha256"].upper()]  # an XSOAR list
    runs = {DOMAIN_COMMAND: XsoarRun(DOMAIN_COMMAND, params, {"domain": domains}),
            FILE_COMMAND: XsoarRun(FILE_COMMAND, params, {"file_hash": hashes})}
    for command, run in runs.items():
        entry = run.run(script, monkeypatch)
        assert entry["Type"] == 1, entry
        context = entry["EntryContext"]
        envelopes = entry["Contents"]
        assert [e["status"] for e in envelopes] == ["success", "success"], command
        expected_ids = list(dict.fromkeys(m["uid"] for e in envelopes for m in e["machines"]))

        machines = context[MACHINES]
        assert [machine["ID"] for machine in machines] == expected_ids  # each machine once
        by_id = {m["uid"]: m for e in envelopes for m in e["machines"]}
        for machine in machines:
            artifact = by_id[machine["ID"]]
            assert machine["ComputerDNSName"] == artifact["hostname"]
            assert machine["HealthStatus"] == artifact["mde"]["health_status"]
            assert machine["PortalURL"] == artifact["mde"]["portal_url"]
            touched = {e["indicator"]["value"] for e in envelopes
                       if any(m["uid"] == machine["ID"] for m in e["machines"])}
            assert {r["Value"] for r in machine["RelatedIndicators"]} == touched
            assert all(key[0].isupper() for key in machine), machine

        endpoints = context[ENDPOINT]
        assert [endpoint["ID"] for endpoint in endpoints] == expected_ids
        for endpoint in endpoints:
            artifact = by_id[endpoint["ID"]]
            assert endpoint["Vendor"] == "MDEEnrich"
            assert endpoint["Hostname"] == artifact["hostname"]
            assert endpoint["OS"] == artifact["os"]["type"]
            assert endpoint["Status"] == ("Online" if artifact["mde"]["health_status"] == "Active"
                                          else "Offline")
            if "ip" in artifact:
                assert endpoint["IPAddress"] == artifact["ip"]

        lookups = context[LOOKUP]
        assert [lookup["Original"] for lookup in lookups] == \
            (domains.split(",") if command == DOMAIN_COMMAND else hashes)
        assert [lookup["TotalMachines"] for lookup in lookups] == \
            [len(e["machines"]) for e in envelopes]

        assert table_headers(entry["HumanReadable"]) == [*DEFENDER_COLUMNS, "RelatedIndicators"]
        for machine_id in expected_ids:
            assert machine_id in entry["HumanReadable"]
    # A SHA-256 and the SHA-1 it resolves to are one file: the same machines, related to both.
    assert all(len(m["RelatedIndicators"]) == 2
               for m in runs[FILE_COMMAND].entries[0]["EntryContext"][MACHINES])
    assert [(action, sent["priority"]) for action, sent, _ in calls] == \
        [("get_machines_for_domain", "interactive")] * 2 + \
        [("get_machines_for_file_hash", "interactive")] * 2


def test_the_arguments_and_the_configuration_reach_the_plugin(
        script, integration, config, private_tmp, calls, monkeypatch) -> None:
    run = XsoarRun(DOMAIN_COMMAND, xsoar_params(config, integration),
                   {"domain": f"hxxps://{seed.EVIL_DOMAIN.replace('.', '[.]')}/x",
                    "use_cache": "false"})
    entry = run.run(script, monkeypatch)
    assert entry["Type"] == 1, entry
    [(action, sent_params, sent_config)] = calls
    assert action == "get_machines_for_domain"
    assert sent_params == {"domain": "hxxps://evil[.]example/x", "use_cache": False,
                           "priority": "interactive"}
    assert entry["EntryContext"][LOOKUP][0]["Indicator"] == seed.EVIL_DOMAIN
    # The configuration went through the instance parameters and came back whole; the CA
    # bundle came back as a file with the same PEM.
    ca_copy = Path(sent_config.pop("ca_bundle"))
    assert ca_copy.read_text().strip() == Path(config["ca_bundle"]).read_text().strip()
    expected = {key: value for key, value in config.items() if key != "ca_bundle"}
    assert {key: sent_config[key] for key in expected} == expected


def test_include_raw_puts_defenders_record_in_the_machine_context(
        script, integration, config, private_tmp, monkeypatch) -> None:
    entry = XsoarRun(DOMAIN_COMMAND, xsoar_params(config, integration),
                     {"domain": seed.EVIL_DOMAIN, "include_raw": "true"}).run(script,
                                                                              monkeypatch)
    machines = entry["EntryContext"][MACHINES]
    assert machines and all(machine["Raw"]["id"] == machine["ID"] for machine in machines)


def test_contact_adds_its_columns_and_context(script, integration, config, private_tmp,
                                              monkeypatch) -> None:
    run = XsoarRun(DOMAIN_COMMAND, xsoar_params(config, integration),
                   {"domain": seed.EVIL_DOMAIN, "contact": "true"})
    entry = run.run(script, monkeypatch)
    assert table_headers(entry["HumanReadable"]) == [
        *DEFENDER_COLUMNS, "RelatedIndicators", "FirstContact", "LastContact",
        "ContactEvents", "ContactProcess"]
    contacts = [m["Contact"] for m in entry["EntryContext"][MACHINES] if "Contact" in m]
    assert contacts and all({"FirstContact", "LastContact", "Events"} <= set(c)
                            for c in contacts)


def test_a_playbook_task_uses_the_batch_lane(script, integration, config, private_tmp, calls,
                                             monkeypatch) -> None:
    task = {"playbookName": "Enrich alert", "taskName": "Machines for domain", "taskId": "4"}
    XsoarRun(DOMAIN_COMMAND, xsoar_params(config, integration), {"domain": seed.EVIL_DOMAIN},
             playbook_task=task).run(script, monkeypatch)
    XsoarRun(DOMAIN_COMMAND, xsoar_params(config, integration),
             {"domain": seed.EVIL_DOMAIN, "priority": "interactive"},
             playbook_task=task).run(script, monkeypatch)
    assert [sent["priority"] for _, sent, _ in calls] == ["batch", "interactive"]


def test_one_failed_value_of_a_list_is_a_note_and_all_failed_is_an_error(
        script, integration, config, private_tmp, monkeypatch) -> None:
    params = xsoar_params(config, integration)
    entry = XsoarRun(DOMAIN_COMMAND, params, {"domain": f"{seed.EVIL_DOMAIN},bad..name"}).run(
        script, monkeypatch)
    assert entry["Type"] == 1
    assert "**Failed:** bad..name: invalid_input" in entry["HumanReadable"]
    failed = entry["EntryContext"][LOOKUP][1]
    assert failed["Status"] == "error" and failed["Error"]["Code"] == "invalid_input"
    entry = XsoarRun(DOMAIN_COMMAND, params, {"domain": "bad..name,also bad"}).run(
        script, monkeypatch)
    assert entry["Type"] == 4
    assert "invalid_input" in entry["Contents"]


def test_a_hostile_argument_cannot_put_a_link_in_the_war_room(
        script, integration, config, private_tmp, monkeypatch) -> None:
    hostile = "[click](http://attacker.test)"  # from an alert a playbook passes on
    params = xsoar_params(config, integration)
    entry = XsoarRun(DOMAIN_COMMAND, params, {"domain": f"{seed.EVIL_DOMAIN},{hostile}"}).run(
        script, monkeypatch)
    assert entry["Type"] == 1 and "invalid_input" in entry["HumanReadable"]
    assert "](http://attacker.test)" not in entry["HumanReadable"]


def test_test_module_says_ok(script, integration, config, private_tmp, calls,
                             monkeypatch) -> None:
    entry = XsoarRun("test-module", xsoar_params(config, integration), {}).run(script,
                                                                                 monkeypatch)
    assert entry == "ok"
    assert [call[0] for call in calls] == ["test_connectivity"]


def test_test_module_names_a_missing_hunting_permission(script, integration, emulator,
                                                       state_url, private_tmp,
                                                       monkeypatch) -> None:
    config = emulator.config(state=state_url, client_id=emulator.readwrite_client_id,
                             client_secret=emulator.readwrite_client_secret, contact=True)
    entry = XsoarRun("test-module", xsoar_params(config, integration), {}).run(script,
                                                                                 monkeypatch)
    assert entry["Type"] == 4
    assert "permission_denied: missing permission: ThreatHunting.Read.All on Microsoft " \
           "Graph" in entry["Contents"]


def test_a_file_hash_with_a_certificate_and_the_private_key_file_is_removed(
        script, integration, emulator: Emulator, state_url, private_tmp, calls,
        monkeypatch) -> None:
    config = emulator.cert_config(state=state_url)
    run = XsoarRun(FILE_COMMAND, xsoar_params(config, integration),
                   {"file_hash": seed.KNOWN_FILE["sha256"].upper()})
    entry = run.run(script, monkeypatch)
    assert entry["Type"] == 1, entry
    assert len(entry["EntryContext"][MACHINES]) == seed.KNOWN_FILE_MACHINES
    assert entry["EntryContext"][LOOKUP][0]["SHA1"] == seed.KNOWN_FILE["sha1"]
    [(_, _, sent_config)] = calls
    key_file = Path(sent_config["client_certificate"]["path"])
    assert key_file.parent == private_tmp
    assert not key_file.exists(), "the PEM with the private key must not outlive the command"
    assert sent_config["client_certificate"]["password"] == config["client_certificate"]["password"]


def test_a_failed_lookup_is_an_error_entry_that_names_the_code(
        script, integration, config, private_tmp, monkeypatch) -> None:
    params = xsoar_params({**config, "client_secret": "wrong"}, integration)
    entry = XsoarRun(DOMAIN_COMMAND, params, {"domain": seed.EVIL_DOMAIN}).run(script,
                                                                                monkeypatch)
    assert entry["Type"] == 4
    assert entry["Contents"].startswith(f"Failed to run {DOMAIN_COMMAND}: auth_failed: ")
    assert "wrong" not in entry["Contents"]


def test_a_parameter_that_is_not_a_number_is_an_error_entry(
        script, integration, config, private_tmp, monkeypatch) -> None:
    params = {**xsoar_params(config, integration), "timeout_s": "soon"}
    entry = XsoarRun(DOMAIN_COMMAND, params, {"domain": seed.EVIL_DOMAIN}).run(script,
                                                                                monkeypatch)
    assert entry["Type"] == 4
    assert "'timeout_s' must be a number" in entry["Contents"]


def test_the_system_proxy_checkbox_passes_the_containers_proxy(
        script, integration, config, private_tmp, calls, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    params = {**xsoar_params(config, integration), "proxy": True}
    XsoarRun("test-module", params, {}).run(script, monkeypatch)
    assert calls[0][2]["proxy"] == "http://proxy.invalid:3128"


def test_without_the_checkbox_the_containers_proxy_is_not_used(
        script, integration, config, private_tmp, calls, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    XsoarRun("test-module", xsoar_params(config, integration), {}).run(script, monkeypatch)
    assert "proxy" not in calls[0][2]


# -- the export command ----------------------------------------------------------------------


def test_mde_enrich_export_xsoar_writes_the_files(tmp_path: Path, capsys) -> None:
    outdir = tmp_path / "out"
    assert cli_main(["export", "xsoar", str(outdir)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(path) for path in outdir.rglob("*") if path.is_file())
    assert (outdir / "MDEEnrich" / "MDEEnrich.yml").is_file()
    assert (outdir / "integration-MDEEnrich.yml").is_file()


def test_export_rejects_an_unknown_platform(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown platform"):
        export.export("phantom", tmp_path)


def test_export_with_a_wheel_bundles_it_instead_of_asking_a_package_index(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = tmp_path / "mde_enrich-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel's bytes")
    assert cli_main(["export", "xsoar", str(tmp_path / "x"), "--wheel", str(wheel)]) == 0
    assert (tmp_path / "x" / wheel.name).read_bytes() == b"a wheel's bytes"
    assert f"pip install --no-cache-dir /tmp/{wheel.name}" in \
        (tmp_path / "x" / "Dockerfile").read_text(encoding="utf-8")
    assert cli_main(["export", "cortex", str(tmp_path / "c"), "--wheel", str(wheel)]) == 0
    requirements = (tmp_path / "c" / "MDEEnrich" / "requirements.txt").read_text("utf-8")
    assert requirements.splitlines()[1:] == ["--find-links .", "mde-enrich==0.1.0"]
    assert (tmp_path / "c" / "MDEEnrich" / wheel.name).is_file()
    assert "publish it there" not in capsys.readouterr().err


def test_export_without_a_wheel_says_where_mde_enrich_must_come_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", "cortex", str(tmp_path / "c")]) == 0
    assert "pass --wheel FILE" in capsys.readouterr().err


def test_export_refuses_a_wheel_that_is_not_one(tmp_path: Path) -> None:
    assert cli_main(["export", "xsoar", str(tmp_path / "x"), "--wheel",
                     str(tmp_path / "missing.whl")]) == 2


def test_export_refusing_its_wheel_writes_nothing_not_even_the_folder(tmp_path: Path) -> None:
    assert cli_main(["export", "cortex", str(tmp_path / "out"), "--wheel",
                     str(tmp_path / "missing.whl")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("platform", "first_step"), [
    ("xsoar", "docker build -t mde-enrich/xsoar:0.1.0"),
    ("splunk", "make soar-package"),
    ("cortex", "docker build -t mde-enrich/cortex-analyzer:0.1.0"),
])
def test_each_export_says_what_to_run_next(tmp_path: Path, capsys, platform: str,
                                           first_step: str) -> None:
    assert cli_main(["export", platform, str(tmp_path / platform)]) == 0
    captured = capsys.readouterr()
    steps = captured.err.split("Next steps:\n", 1)[1].splitlines()
    assert steps[0].startswith("  1. ") and first_step in steps[0]
    assert len(steps) >= 3
    assert "Next steps" not in captured.out  # stdout stays the list of files
