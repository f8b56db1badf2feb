"""test_connectivity's permission checks: one per capability the configuration turns on.

A `Capability` is something the plugin may be set up to do (look up machines, add the
contact timeline, pull alerts, write comments back), the service whose token must carry
the permission for it, the permissions of which any one will do, and when it applies.
`check_capabilities` gets one token per service that some applicable capability needs,
reads the permissions the token carries (`roles` for an application, `scp` for a user) and
says, for each capability, whether it will work and, if not, what to grant.

To add a check, append a `Capability` to `CAPABILITIES` (and, for a new service, a token
source in `actions._connectivity` and a name in `SERVICE_NAMES`):

    Capability(
        name="graph_alerts_read",
        purpose="pulling alerts (pull)",
        service="graph",
        application_any_of=("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"),
        applies=lambda settings, params: settings.pull is not None),

`applies` sees the validated settings and test_connectivity's parameters, so a capability
can be asked for by configuration (the `contact` key) or just for this check
(`{"contact": true}`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from integration.errors import PermissionDenied, PluginError

if TYPE_CHECKING:
    from integration.config import Settings

Service = Literal["defender", "graph"]
Status = Literal["ok", "missing", "error"]
SERVICE_NAMES: dict[str, str] = {"defender": "Defender for Endpoint API",
                                 "graph": "Microsoft Graph"}


def _always(settings: Settings, params: Mapping[str, Any]) -> bool:
    return True


def _contact_used(settings: Settings, params: Mapping[str, Any]) -> bool:
    return bool(params.get("contact", settings.contact))


def _pulls(kind: str) -> Callable[[Settings, Mapping[str, Any]], bool]:
    """Asked for by `{"pull": "alerts"}` (a scheduled run's --pull): a check only, no setting."""
    return lambda settings, params: params.get("pull") == kind


def _writes_back(kind: str) -> Callable[[Settings, Mapping[str, Any]], bool]:
    return lambda settings, params: params.get("pull") == kind and bool(params.get("write_back"))


@dataclass(frozen=True)
class Capability:
    """One thing the plugin can be set up to do, and the permission it needs."""

    name: str
    purpose: str  # what stops working without it, for the message
    service: Service  # whose token must carry the permission
    application_any_of: tuple[str, ...]  # application roles (the token's `roles`)
    delegated_any_of: tuple[str, ...] = ()  # delegated scopes (a user's token's `scp`)
    applies: Callable[[Settings, Mapping[str, Any]], bool] = _always


CAPABILITIES: list[Capability] = [
    Capability("defender_machines", "the machine lookups (domain and file hash)", "defender",
               application_any_of=("Machine.Read.All", "Machine.ReadWrite.All"),
               delegated_any_of=("Machine.Read", "Machine.ReadWrite")),
    Capability("graph_hunting", "the contact timeline (contact)", "graph",
               application_any_of=("ThreatHunting.Read.All",),
               delegated_any_of=("ThreatHunting.Read.All",),
               applies=_contact_used),
    # A scheduled run pulls and comments as the application only: no delegated permission.
    Capability("graph_alerts_read", "pulling alerts (--pull alerts)", "graph",
               application_any_of=("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"),
               applies=_pulls("alerts")),
    Capability("graph_alerts_write", "commenting on pulled alerts (--write-back)", "graph",
               application_any_of=("SecurityAlert.ReadWrite.All",),
               applies=_writes_back("alerts")),
    Capability("graph_incidents_read", "pulling incidents (--pull incidents)", "graph",
               application_any_of=("SecurityIncident.Read.All",
                                   "SecurityIncident.ReadWrite.All"),
               applies=_pulls("incidents")),
    Capability("graph_incidents_write", "commenting on pulled incidents (--write-back)",
               "graph", application_any_of=("SecurityIncident.ReadWrite.All",),
               applies=_writes_back("incidents")),
]


@dataclass(frozen=True)
class CheckResult:
    capability: Capability
    status: Status
    needs: tuple[str, ...]  # the permissions of which one would do, for this kind of token
    message: str
    error: PluginError | None = None  # why the service's token could not be had

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.capability.name, "purpose": self.capability.purpose,
                "service": self.capability.service, "status": self.status,
                "needs_any_of": list(self.needs), "message": self.message}


def granted(claims: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """('user', its scopes) for a delegated token, else ('application', its roles)."""
    if "scp" in claims:
        return "user", frozenset(str(claims["scp"]).split())
    return "application", frozenset(claims.get("roles") or ())


def check_capabilities(settings: Settings, params: Mapping[str, Any],
                       claims_of: Callable[[Service], Mapping[str, Any]],
                       capabilities: Sequence[Capability] = CAPABILITIES) -> list[CheckResult]:
    """Each applicable capability's verdict. `claims_of(service)` returns the claims of a
    token for that service and may raise PluginError (then that service's capabilities are
    `error`); it is called once per service."""
    claims: dict[Service, Mapping[str, Any] | PluginError] = {}
    results = []
    for capability in capabilities:
        if not capability.applies(settings, params):
            continue
        service = capability.service
        if service not in claims:
            try:
                claims[service] = claims_of(service)
            except PluginError as error:
                claims[service] = error
        results.append(_verdict(capability, claims[service]))
    return results


def _verdict(capability: Capability, claims: Mapping[str, Any] | PluginError) -> CheckResult:
    service = SERVICE_NAMES[capability.service]
    if isinstance(claims, PluginError):
        return CheckResult(capability, "error", capability.application_any_of,
                           f"no {service} token to check {capability.purpose}: "
                           f"{claims.code}: {claims.message}", error=claims)
    kind, held = granted(claims)
    needs = capability.delegated_any_of if kind == "user" else capability.application_any_of
    if held & set(needs):
        return CheckResult(capability, "ok", needs,
                           f"{capability.purpose}: {', '.join(sorted(held & set(needs)))}")
    if not needs:
        return CheckResult(capability, "missing", needs,
                           f"{capability.purpose} cannot run as a user; it needs an "
                           "application sign-in")
    permission = "delegated permission" if kind == "user" else "application permission"
    return CheckResult(capability, "missing", needs,
                       f"the {service} token carries {_none_of(needs)}: {capability.purpose} "
                       f"will be denied; grant the {service} {permission} {needs[0]} "
                       "(with admin consent)")


def _none_of(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"no {names[0]}"
    if len(names) == 2:
        return f"neither {names[0]} nor {names[1]}"
    return "none of " + ", ".join(names)


def missing_error(results: Sequence[CheckResult]) -> PluginError | None:
    """The error test_connectivity ends with when a capability will not work: a missing
    permission first (the fix is a grant), else the first service whose token failed."""
    missing = [result for result in results if result.status == "missing"]
    if missing:
        return PermissionDenied("missing permission: " + "; ".join(
            f"{', '.join(result.needs) or 'an application sign-in'} on "
            f"{SERVICE_NAMES[result.capability.service]} (for {result.capability.purpose})"
            for result in missing))
    return next((result.error for result in results if result.error is not None), None)
