"""Microsoft Graph's advanced hunting, emulated: `POST /v1.0/security/runHuntingQuery`.

It wants a Graph token (audience graph.microsoft.com) holding ThreatHunting.Read.All, takes
`{"Query": "...", "Timespan": "P30D"}`, runs the query with the KQL subset in `kql.py` over
the dataset's event tables and answers `{"schema": [...], "results": [...]}` as Graph does.
A query outside the subset is Graph's 400 BadRequest.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from integration.emulator import kql
from integration.emulator.backend import Backend, Dataset
from integration.emulator.delegated import User
from integration.emulator.errors import ApiError

PATH = "/v1.0/security/runHuntingQuery"
CALL_TYPE = "hunting_query"  # the emulator's rate limit counts it apart from Defender's calls
_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults"


def is_graph(path: str) -> bool:
    return path == "/v1.0" or path.startswith("/v1.0/")


def answer(backend: Backend, method: str, path: str, headers: Mapping[str, str],
           body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of Graph's answer; errors in Graph's shape."""
    try:
        return 200, run_hunting_query(backend, method, path, headers, body), {}
    except ApiError as error:
        inner = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                 "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
        return error.status, {"error": {"code": error.code, "message": error.message,
                                        "innerError": inner}}, error.headers


def run_hunting_query(backend: Backend, method: str, path: str, headers: Mapping[str, str],
                      body: bytes) -> dict[str, Any]:
    """Graph's answer to one request; ApiError for every refusal, in Graph's words."""
    if path != PATH:
        raise ApiError(404, "Request_ResourceNotFound",
                       f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.")
    claims = backend.tokens.check_graph(headers.get("Authorization"))
    if method != "POST":
        raise ApiError(405, "Request_BadRequest",
                       f"The HTTP method '{method}' is not allowed for this resource.")
    backend.rate_check(claims, CALL_TYPE)
    try:
        request = json.loads(body or b"null")
    except ValueError:
        raise ApiError(400, "BadRequest", "The request body is not valid JSON.") from None
    query = request.get("Query") if isinstance(request, dict) else None
    if not isinstance(query, str) or not query.strip():
        raise ApiError(400, "BadRequest", "The 'Query' property is required.")
    timespan = request.get("Timespan")
    if timespan is not None and not isinstance(timespan, str):
        raise ApiError(400, "BadRequest", "The 'Timespan' property must be a string.")
    dataset = backend.dataset
    tables = _visible_tables(dataset, backend.tokens.visible_to(claims))
    try:
        result = kql.run(query, tables, _now(dataset.hunting_now))
    except kql.KqlError as error:
        raise ApiError(400, "BadRequest", str(error)) from None
    return {"@odata.context": _CONTEXT,
            "schema": [{"name": name, "type": kind} for name, kind in result.columns],
            "results": result.rows}


def _visible_tables(dataset: Dataset, viewer: User | None) -> dict[str, list[dict[str, Any]]]:
    """The event tables as a user's query sees them: rows of devices in their device groups
    only (a device Defender lists in no group: only users of every group see it)."""
    if viewer is None:
        return dataset.hunting_tables

    def sees(device_id: Any) -> bool:
        machine = dataset.machine(str(device_id))
        return viewer.sees(machine) if machine is not None else viewer.device_groups is None

    return {name: [row for row in rows if sees(row.get("DeviceId"))]
            for name, rows in dataset.hunting_tables.items()}


def _now(reference: str | None) -> dt.datetime:
    if reference:
        return dt.datetime.fromisoformat(reference.replace("Z", "+00:00"))
    return dt.datetime.now(dt.timezone.utc)
