"""Runs mde-enrich's entry points for the generated Splunk SOAR app (src/app.py).

Copied verbatim into the app's src/ by integration.platforms.splunk_soar; it runs on the
platform's Python 3.13 with splunk-soar-sdk 7 and mde-enrich installed. The asset is the
plugin configuration (flat, see integration.platforms.nest_config) and the envelope becomes
the action result: machines as data rows, the envelope's summary as the summary, and an
error envelope a failed result carrying its message.
"""

import json
from collections.abc import Mapping
from typing import Any

from soar_sdk.abstract import SOARClient
from soar_sdk.action_results import ActionOutput
from soar_sdk.asset import BaseAsset
from soar_sdk.exceptions import ActionFailure
from soar_sdk.logging import getLogger
from soar_sdk.params import Params

from integration.errors import PluginError
from integration.manifest import manifest
from integration.platforms import RUNS_AS, nest_config

logger = getLogger()


def plugin_config(asset: BaseAsset) -> dict[str, Any]:
    """The plugin configuration from the asset (its secrets already decrypted by the SDK);
    a bad advanced_settings field is a failed result saying why."""
    try:
        return nest_config(asset.model_dump())
    except PluginError as error:
        raise ActionFailure(error_text(error.to_dict())) from None


def run_lookup(action_id: str, params: Params, soar: SOARClient, asset: BaseAsset,
               machine_type: type[ActionOutput], summary_type: type[ActionOutput],
               conversions: Mapping[str, str]) -> list[ActionOutput]:
    # A parameter left empty (None) is not given: the asset's setting or the plugin's applies.
    given = {key: value for key, value in params.model_dump().items() if value is not None}
    envelope = manifest().run(action_id, given, plugin_config(asset))
    if envelope["status"] == "error":
        raise ActionFailure(error_text(envelope["error"]))
    indicator = envelope.get("indicator", {})
    summary = dict(envelope["summary"])
    # Lookups here run as the application: Splunk SOAR does not pass the analyst's identity.
    principal = summary.pop("principal", None) or {}
    soar.set_summary(summary_type(status=envelope["status"], indicator_type=indicator.get("type"),
                                  indicator_value=indicator.get("value"),
                                  principal_type=principal.get("type"),
                                  principal_name=principal.get("name") or principal.get("id"),
                                  **summary))
    found = f"{indicator.get('type', 'indicator')} {indicator.get('value', '')}".strip()
    message = (f"Found {summary['total_machines']} machine(s) for {found}"
               if envelope["status"] == "success" else f"No machines found for {found}")
    for warning in envelope.get("warnings", []):
        message += f"; {warning}"
    soar.set_message(message)
    return [machine_type.model_validate(fit(machine, conversions))
            for machine in envelope["machines"]]


def check_connectivity(asset: BaseAsset) -> None:
    """The plugin's test_connectivity; raises (a failed result) when it is not a success."""
    logger.progress("Getting a token and reading one machine")
    result = manifest().run("test_connectivity", {}, plugin_config(asset))
    connectivity = result.get("connectivity", {})
    if connectivity:
        roles = ", ".join(connectivity["roles"]) or "none"
        logger.progress(f"API {connectivity['api_base']}; token roles: {roles}")
        logger.progress(RUNS_AS)
        for check in connectivity.get("capabilities", []):
            if check["status"] == "ok":
                logger.progress(f"OK: {check['message']}")
        for warning in connectivity["warnings"]:
            logger.warning(warning)
    if result["status"] == "error":
        raise ActionFailure(error_text(result["error"]))


def error_text(error: Mapping[str, Any]) -> str:
    retry = " (retryable)" if error.get("retryable") else ""
    return f"{error['code']}: {error['message']}{retry}"


def fit(value: Any, conversions: Mapping[str, str], path: str = "") -> Any:
    """Reshape an artifact where the SDK's output types cannot follow the JSON Schema: a
    value that is a number or a string becomes a string ("str"), a free-form object JSON
    text ("json"). `conversions` maps dotted paths (lists not counted) to one of the two."""
    how = conversions.get(path)
    if how == "json":
        return json.dumps(value, sort_keys=True)
    if how == "str":
        return str(value)
    if isinstance(value, list):
        return [fit(item, conversions, path) for item in value]
    if isinstance(value, dict):
        return {key: fit(item, conversions, f"{path}.{key}" if path else key)
                for key, item in value.items()}
    return value
