"""`mde-enrich login`, `logout` and `whoami`: an analyst signed in as themself (auth:
device_code), so lookups answer with the machines of their own device groups only.

The refresh token msal receives stays in the owner-only state; nothing here prints or logs
a token.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from integration.cli.options import command, output_format
from integration.errors import PluginError
from integration.values.principal import Principal


def add_commands(commands: Any) -> None:
    command(commands, "login", _login_command, help="sign in as yourself (auth: device_code)",
            description="Sign in as yourself with a device code: open the page shown, enter "
                        "the code, and later lookups run as you (your device groups only), "
                        "renewed silently until you log out.")
    command(commands, "logout", _logout_command, help="forget the signed-in user's tokens",
            description="Delete the signed-in user's tokens (refresh token included) from the "
                        "state.")
    command(commands, "whoami", _whoami_command, help="who lookups run as, scopes, expiry",
            description="Who lookups run as (the signed-in user, or the application), with "
                        "the token's permissions and expiry.")


def _fail(name: str, error: PluginError) -> int:
    print(f"mde-enrich {name}: {error.code}: {error.message}", file=sys.stderr)
    return error.exit_status


def _login_command(args: argparse.Namespace) -> int:
    from integration.compose import sign_in

    try:
        principal = sign_in(args.config,
                            lambda message: print(message, file=sys.stderr, flush=True))
    except PluginError as error:
        return _fail("login", error)
    print(f"Signed in {principal.describe()}.")
    return 0


def _logout_command(args: argparse.Namespace) -> int:
    from integration.compose import sign_out

    try:
        who = sign_out(args.config)
    except PluginError as error:
        return _fail("logout", error)
    print(f"Signed out {who}: their tokens are deleted from the state." if who
          else "Nobody was signed in.")
    return 0


def _whoami_command(args: argparse.Namespace) -> int:
    from integration.compose import who_am_i

    fmt = output_format(args)
    try:
        report = who_am_i(args.config)
    except PluginError as error:
        return _fail("whoami", error)
    if fmt == "json":
        print(json.dumps(report, indent=2))
        return 0
    principal = Principal.from_dict(report["principal"])
    assert principal is not None
    permissions = f"scopes {', '.join(report['scopes']) or 'none'}" if principal.is_user \
        else f"roles {', '.join(report['roles']) or 'none'}"
    print(f"Lookups run {principal.describe()}; {permissions}; the token expires in "
          f"{max(report['token_expires_in_s'], 0) // 60} min"
          + (" (renewed silently)" if principal.is_user else ""))
    return 0
