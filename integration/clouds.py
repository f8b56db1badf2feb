"""Sign-in host, API base, token scope and portal per cloud and region: one table, overridable.

A token whose audience does not match the API gives 403 even when all else is right, so the
scope lives here beside the host it belongs to (reference: "Where to send requests").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from integration.errors import ConfigError


class Cloud(NamedTuple):
    login_host: str
    api_base: str
    scope: str
    portal_base: str


CLOUDS: dict[str, Cloud] = {
    "commercial": Cloud(
        login_host="https://login.microsoftonline.com",
        api_base="https://api.security.microsoft.com",
        scope="https://api.securitycenter.microsoft.com/.default",
        portal_base="https://security.microsoft.com",
    ),
    # GCC signs in on the commercial Entra, so its token is for the commercial resource
    # (the most widely deployed Defender integration moved to this after GCC customers'
    # sign-ins failed with the .us resource). `scope` overrides it.
    "us-gcc": Cloud(
        login_host="https://login.microsoftonline.com",
        api_base="https://api-gcc.securitycenter.microsoft.us",
        scope="https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
        portal_base="https://security.microsoft.com",
    ),
    # Microsoft documents no scope for GCC High and DoD, which sign in on the US government
    # Entra; this is the one a widely used integration asks for there (reference page).
    "us-gcc-high": Cloud(
        login_host="https://login.microsoftonline.us",
        api_base="https://api-gov.securitycenter.microsoft.us",
        scope="https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
        portal_base="https://security.microsoft.us",
    ),
    "us-dod": Cloud(
        login_host="https://login.microsoftonline.us",
        api_base="https://api-gov.securitycenter.microsoft.us",
        scope="https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
        portal_base="https://security.apps.mil",
    ),
}

# Microsoft Graph (advanced hunting for the contact timeline) per cloud: (API base, scope).
# GCC uses the commercial Graph; GCC High and DoD have their own hosts, and a token must be
# asked for that cloud's Graph resource. `graph_base_url` overrides the host.
GRAPH: dict[str, tuple[str, str]] = {
    "commercial": ("https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
    "us-gcc": ("https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
    "us-gcc-high": ("https://graph.microsoft.us", "https://graph.microsoft.us/.default"),
    "us-dod": ("https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us/.default"),
}

# Regional API hosts exist only in the commercial cloud.
COMMERCIAL_REGIONS = ("us", "eu", "uk", "au", "swa", "ina", "aea")


class Endpoints(NamedTuple):
    authority_host: str
    api_base: str
    scope: str
    portal_base: str
    graph_base: str = GRAPH["commercial"][0]
    graph_scope: str = GRAPH["commercial"][1]

    @property
    def is_microsoft_authority(self) -> bool:
        """msal must not ask Microsoft's instance discovery about a host that is not Microsoft's."""
        return any(self.authority_host == cloud.login_host for cloud in CLOUDS.values())


def resolve_endpoints(config: dict[str, Any]) -> Endpoints:
    cloud_name = config.get("cloud", "commercial")
    cloud = CLOUDS.get(cloud_name)
    if cloud is None:
        raise ConfigError(f"config key 'cloud': unknown cloud {cloud_name!r}; "
                          f"expected one of {', '.join(CLOUDS)}")
    api_base = cloud.api_base
    region = config.get("region")
    if region:
        if cloud_name != "commercial":
            raise ConfigError(f"config key 'region': regions apply to the commercial cloud only, "
                              f"not {cloud_name!r}")
        if region not in COMMERCIAL_REGIONS:
            raise ConfigError(f"config key 'region': unknown region {region!r}; "
                              f"expected one of {', '.join(COMMERCIAL_REGIONS)}")
        api_base = f"https://{region}.api.security.microsoft.com"
    return Endpoints(
        authority_host=config.get("authority_host", cloud.login_host).rstrip("/"),
        api_base=config.get("api_base_url", api_base).rstrip("/"),
        scope=config.get("scope", cloud.scope),
        portal_base=cloud.portal_base,
        graph_base=config.get("graph_base_url", GRAPH[cloud_name][0]).rstrip("/"),
        graph_scope=GRAPH[cloud_name][1],
    )
