"""Sign-in host, API base and scope per cloud and region, each overridable."""

from __future__ import annotations

import pytest

from integration.clouds import resolve_endpoints
from integration.errors import ConfigError


def test_commercial_is_the_default() -> None:
    endpoints = resolve_endpoints({})
    assert endpoints.authority_host == "https://login.microsoftonline.com"
    assert endpoints.api_base == "https://api.security.microsoft.com"
    assert endpoints.scope == "https://api.securitycenter.microsoft.com/.default"
    assert endpoints.is_microsoft_authority


@pytest.mark.parametrize(("region", "host"), [("us", "us.api.security.microsoft.com"),
                                               ("eu", "eu.api.security.microsoft.com"),
                                               ("aea", "aea.api.security.microsoft.com")])
def test_a_commercial_region_picks_its_api_host(region: str, host: str) -> None:
    assert resolve_endpoints({"region": region}).api_base == f"https://{host}"


@pytest.mark.parametrize(("cloud", "login", "api", "scope", "portal"), [
    ("commercial", "https://login.microsoftonline.com", "https://api.security.microsoft.com",
     "https://api.securitycenter.microsoft.com/.default", "https://security.microsoft.com"),
    ("us-gcc", "https://login.microsoftonline.com",
     "https://api-gcc.securitycenter.microsoft.us",
     "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
     "https://security.microsoft.com"),
    ("us-gcc-high", "https://login.microsoftonline.us",
     "https://api-gov.securitycenter.microsoft.us",
     "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
     "https://security.microsoft.us"),
    ("us-dod", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us",
     "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
     "https://security.apps.mil"),
])
def test_each_cloud_has_its_sign_in_host_api_base_scope_and_portal(
        cloud: str, login: str, api: str, scope: str, portal: str) -> None:
    endpoints = resolve_endpoints({"cloud": cloud})
    assert (endpoints.authority_host, endpoints.api_base, endpoints.scope,
            endpoints.portal_base) == (login, api, scope, portal)
    assert endpoints.is_microsoft_authority


def test_gcc_asks_for_the_commercial_resource_because_it_signs_in_commercially() -> None:
    gcc, commercial = resolve_endpoints({"cloud": "us-gcc"}), resolve_endpoints({})
    assert gcc.authority_host == commercial.authority_host
    assert gcc.scope.startswith("https://securitycenter.onmicrosoft.com/")


def test_each_endpoint_can_be_overridden() -> None:
    endpoints = resolve_endpoints({"api_base_url": "https://127.0.0.1:8443/",
                                   "authority_host": "https://127.0.0.1:8443",
                                   "scope": "https://api.security.microsoft.com/.default"})
    assert endpoints.api_base == "https://127.0.0.1:8443"
    assert endpoints.scope == "https://api.security.microsoft.com/.default"
    assert not endpoints.is_microsoft_authority  # so msal skips instance discovery


def test_a_region_outside_the_commercial_cloud_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="config key 'region'"):
        resolve_endpoints({"cloud": "us-gcc-high", "region": "eu"})
