"""DefenderClient: the Defender API calls and paging. Each request is sent, and its final
answer read, by the one request pipeline (pipeline.py): budget, token, retries, transport,
and the mapping of a status to our error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from integration.defender import urls
from integration.defender.pipeline import Api, Calls, Request, fetch
from integration.errors import PluginError, UpstreamError
from integration.values.indicators import Indicator, parse_file_hash

if TYPE_CHECKING:
    from integration.defender.budget import CallType, Lane

# The newest documentation caps a domain's answer at 500 machines.
DOMAIN_ANSWER_CAP = 500
# Paging is undocumented for these calls; a bound keeps a looping nextLink from running forever.
MAX_PAGES = 200
MACHINE_LIST_PAGE = 10_000  # the largest $top the machine list takes


class Lookup(NamedTuple):
    """What Defender said about one indicator (a NamedTuple: cheap to define at start-up)."""

    found: bool
    machines: list[dict[str, Any]] = []  # never mutated, so one shared default is safe
    api_calls: int = 0
    truncated: bool = False
    warnings: tuple[str, ...] = ()  # an answer with warnings is never cached


class _Pages(NamedTuple):
    machines: list[dict[str, Any]]
    capped: bool  # MAX_PAGES reached with a nextLink still to follow


class DefenderClient:
    def __init__(self, api: Api) -> None:
        self._api = api

    # -- the lookups -------------------------------------------------------------------------

    def machines_for_domain(self, domain: Indicator, lane: Lane = "batch") -> Lookup:
        calls = Calls(lane)
        pages = self._list(urls.domain_machines(domain), calls, "domain_machines")
        if not pages.machines and not pages.capped:  # 404 and an empty 200: "no machines"
            return Lookup(found=False, api_calls=calls.count)
        return Lookup(found=bool(pages.machines), machines=pages.machines,
                      api_calls=calls.count,
                      truncated=pages.capped or len(pages.machines) >= DOMAIN_ANSWER_CAP,
                      warnings=_capped_warning(pages))

    def machines_for_file(self, sha1: Indicator, lane: Lane = "batch") -> Lookup:
        calls = Calls(lane)
        pages = self._list(urls.file_machines(sha1), calls, "file_machines")
        return Lookup(found=bool(pages.machines), machines=pages.machines,
                      api_calls=calls.count, truncated=pages.capped,
                      warnings=_capped_warning(pages))

    def resolve_sha1(self, file_hash: Indicator,
                     lane: Lane = "batch") -> tuple[Indicator | None, int]:
        """The SHA-1 of the file a SHA-256 or MD5 names (None if Defender does not know it),
        and the calls that took: the machines call accepts only SHA-1."""
        calls = Calls(lane)
        info = self._get(urls.file_info(file_hash), calls, "file_info")
        if info is None:
            return None, calls.count
        return self._resolved_sha1(info, file_hash), calls.count

    def first_machine(self) -> Lookup:
        """The cheapest authorized call there is: the connectivity check."""
        calls = Calls("interactive")
        body = self._get(urls.MACHINES_LIST, calls, "machines_list", params={"$top": "1"})
        values = _values(body) if body is not None else []
        return Lookup(found=bool(values), machines=values, api_calls=calls.count)

    def visible_device_groups(self) -> tuple[set[str], int]:
        """The device groups of the machines this token may list (a user sees only their
        own groups' machines): one page of up to 10,000 machines, and the calls it took."""
        calls = Calls("interactive")
        body = self._get(urls.MACHINES_LIST, calls, "machines_list",
                         params={"$top": str(MACHINE_LIST_PAGE)})
        values = _values(body) if body is not None else []
        groups = {str(m.get("rbacGroupId", m.get("rbacGroupName"))) for m in values
                  if m.get("rbacGroupId") is not None or m.get("rbacGroupName")}
        return groups, calls.count

    # -- HTTP ----------------------------------------------------------------------------------

    def _list(self, path: str, calls: Calls, call_type: CallType) -> _Pages:
        """Every machine of a list answer, following @odata.nextLink; none for a 404. A link
        is followed only to the same path on the same origin (the pipeline sends a token
        nowhere else), at most MAX_PAGES pages; a later page that fails, 404 included, fails
        the lookup: its records would be missing from an answer said to be complete."""
        from urllib.parse import urlsplit

        body = self._get(path, calls, call_type)
        if body is None:
            return _Pages([], capped=False)
        machines = _values(body)
        seen_links: set[str] = set()
        while (link := body.get("@odata.nextLink")) is not None:
            where = {"status": 200, "service": "Defender", "path": path,
                     "api_calls": calls.count}
            if not isinstance(link, str) or not link:
                raise UpstreamError(f"Defender's @odata.nextLink is not a URL ({path})",
                                    **where)  # type: ignore[arg-type]
            if urlsplit(link).path != urlsplit(self._api.url(path)).path:
                raise UpstreamError(f"Defender's @odata.nextLink points at another call "
                                    f"({urlsplit(link).path}, not {path}); not followed",
                                    **where)  # type: ignore[arg-type]
            if link in seen_links:
                raise UpstreamError(f"Defender's @odata.nextLink repeats itself ({path})",
                                    **where)  # type: ignore[arg-type]
            if len(seen_links) >= MAX_PAGES:
                return _Pages(machines, capped=True)
            seen_links.add(link)
            body = self._get(link, calls, call_type)
            if body is None:
                raise UpstreamError(f"page {len(seen_links) + 1} of Defender's answer is gone "
                                    f"(404) ({path}); the answer is incomplete",
                                    **where)  # type: ignore[arg-type]
            machines.extend(_values(body))
        return _Pages(machines, capped=False)

    def _get(self, path: str, calls: Calls, call_type: CallType, *,
             params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The JSON object at `path`; None for a 404. Errors carry the calls they cost."""
        body = fetch(self._api, Request("GET", path, call_type, params=params,
                                        missing_ok=True, input_errors=True), calls)
        if body is not None and not isinstance(body, dict):
            raise UpstreamError(f"Defender answered 200 with a body that is a JSON "
                                f"{type(body).__name__} ({path.split('?')[0]})", status=200,
                                service="Defender", path=path, api_calls=calls.count)
        return body

    def _resolved_sha1(self, info: dict[str, Any], asked: Indicator) -> Indicator:
        value = info.get("sha1")
        try:
            sha1 = parse_file_hash(value if isinstance(value, str) else "")
        except PluginError as exc:
            raise UpstreamError(f"Defender's file record for {asked.value} has no usable SHA-1",
                                status=200, service="Defender") from exc
        if sha1.type != "sha1":  # a SHA-256 (or MD5) where the SHA-1 belongs: not cached
            raise UpstreamError(f"Defender's file record for {asked.value} holds a "
                                f"{sha1.type} where its SHA-1 belongs", status=200,
                                service="Defender")
        return sha1


def _capped_warning(pages: _Pages) -> tuple[str, ...]:
    if not pages.capped:
        return ()
    return (f"Defender's answer had more than {MAX_PAGES} pages; only the first "
            f"{MAX_PAGES} were read, so there may be more machines",)


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    values = body.get("value")
    if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
        raise UpstreamError("Defender's answer has no list of records under 'value'", status=200)
    return values
