"""Hostile upstreams, each a server on 127.0.0.1 started by the test (tests/hostile_server.py)
or the emulator with a scripted answer: every answer is read bounded in size and in time, and
every shape we do not expect is an error envelope, never a raise and never cached."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_server import (
    drip_answer,
    gzip_bomb_answer,
    hostile_server,
    json_answer,
    pages_answer,
)

from integration.compose import new_enricher
from integration.config import load_settings
from integration.emulator.seed import EVIL_DOMAIN, KNOWN_FILE

GiB = 1024 ** 3
DOMAIN_PATH = f"/api/domains/{EVIL_DOMAIN}/machines"
MACHINE = {"id": "a" * 40, "computerDnsName": "host.contoso.com"}


@pytest.fixture
def serve(emulator: Any) -> Iterator[Any]:
    """serve(answer) -> a config whose API is a hostile server (tokens from the emulator)."""
    keys = emulator._key_material()
    stack: list[Any] = []

    def start(answer: Any, **overrides: Any) -> dict[str, Any]:
        context = hostile_server(answer, keys.server_cert_path, keys.server_key_path)
        base = context.__enter__()
        stack.append(context)
        return emulator.config(api_base_url=base, backoff_base_s=0.02, backoff_cap_s=0.1,
                               **overrides)

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


def lookup(config: dict[str, Any], kind: str = "domain", value: str = EVIL_DOMAIN
           ) -> dict[str, Any]:
    return new_enricher(load_settings(config)).lookup(kind, value).to_dict()  # type: ignore[arg-type]


# --- bounded in size ---------------------------------------------------------------------


def test_a_1_gib_gzip_answer_is_an_upstream_error_in_under_400_mib(
        serve: Any, tmp_path: Path) -> None:
    config = serve(gzip_bomb_answer(GiB), max_attempts=1,
                   state=f"sqlite:///{tmp_path / 'state.db'}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), "utf-8")
    # The CLI in a fresh process that reports its own high-water mark (ru_maxrss, KiB).
    done = subprocess.run([sys.executable, "-c", MEASURED_CLI, "domain", EVIL_DOMAIN,
                           "--config", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=300, check=False)
    envelope = json.loads(done.stdout)[0]
    assert envelope["error"]["code"] == "upstream_error", done.stderr
    assert "more than 64 MiB" in envelope["error"]["message"]
    peak_mib = int(done.stderr.rpartition("PEAK_KIB ")[2]) / 1024
    assert peak_mib < 400, f"peak RSS {peak_mib:.0f} MiB"


MEASURED_CLI = ("import resource, sys\n"
                "from integration.cli import main\n"
                "status = main(sys.argv[1:])\n"
                "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
                " file=sys.stderr)\n"
                "sys.exit(status)\n")


def test_an_answer_declaring_a_huge_length_is_refused_before_reading(serve: Any) -> None:
    def answer(_: str, client: Any) -> None:
        from hostile_server import head

        client.sendall(head(200, 10 * GiB) + b'{"value": [')
    envelope = lookup(serve(answer, max_attempts=1))
    assert envelope["error"]["code"] == "upstream_error"


# --- bounded in time ---------------------------------------------------------------------


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers_and_body"])
def test_a_drip_answer_ends_within_the_deadline_plus_one_timeout(
        serve: Any, headers_too: bool) -> None:
    body = json.dumps({"value": [MACHINE]}).encode()
    config = serve(drip_answer(body, headers_too=headers_too, every_s=0.5), timeout_s=2,
                   deadline_s=4, max_attempts=2)
    started = time.monotonic()
    envelope = lookup(config)
    elapsed = time.monotonic() - started
    assert envelope["error"]["code"] == "timeout"
    assert elapsed < 4 + 2, f"{elapsed:.1f} s"


# --- answer shapes -----------------------------------------------------------------------


def test_an_answer_100000_deep_is_an_upstream_error(serve: Any) -> None:
    body = b'{"value": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    envelope = lookup(serve(json_answer(body), max_attempts=1))
    assert envelope["error"]["code"] == "upstream_error"


def test_a_machine_record_nested_600_deep_is_an_upstream_error(serve: Any) -> None:
    record = {**MACHINE, "vmMetadata": json.loads("[" * 600 + "]" * 600)}
    envelope = lookup(serve(json_answer(json.dumps({"value": [record]}).encode()),
                            max_attempts=1))
    assert envelope["status"] == "error"


@pytest.mark.parametrize("link", [5, {"href": "x"}, ["a"], ""])
def test_a_next_link_that_is_not_a_url_is_an_upstream_error(serve: Any, link: Any) -> None:
    page = {"value": [MACHINE], "@odata.nextLink": link}
    envelope = lookup(serve(pages_answer({DOMAIN_PATH: page})))
    assert envelope["error"]["code"] == "upstream_error"
    assert "nextLink" in envelope["error"]["message"]


def test_a_next_link_to_another_path_is_not_followed(serve: Any) -> None:
    pages: dict[str, Any] = {}
    config = serve(pages_answer(pages))
    other = {**MACHINE, "id": "b" * 40}
    pages[DOMAIN_PATH] = {"value": [MACHINE],
                          "@odata.nextLink": config["api_base_url"] + "/api/machines"}
    pages["/api/machines"] = {"value": [other]}
    envelope = lookup(config)
    assert envelope["error"]["code"] == "upstream_error"
    assert "another call" in envelope["error"]["message"]


def test_a_later_page_that_is_gone_fails_the_lookup(serve: Any) -> None:
    pages: dict[str, Any] = {}
    config = serve(pages_answer(pages))
    pages[DOMAIN_PATH] = {"value": [MACHINE],
                          "@odata.nextLink": config["api_base_url"] + DOMAIN_PATH + "?$skip=1"}
    envelope = lookup(config)
    assert envelope["error"]["code"] == "upstream_error"
    assert "404" in envelope["error"]["message"]


def test_the_page_cap_is_truncated_with_a_warning_and_not_cached(
        serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from integration.defender import client

    monkeypatch.setattr(client, "MAX_PAGES", 3)
    pages: dict[str, Any] = {}
    config = serve(pages_answer(pages), state=f"sqlite:///{tmp_path / 'state.db'}")
    for number in range(10):  # more pages than the cap
        path = DOMAIN_PATH + (f"?$skip={number}" if number else "")
        pages[path] = {"value": [{**MACHINE, "id": f"{number:040x}"}],
                       "@odata.nextLink": config["api_base_url"] + DOMAIN_PATH
                       + f"?$skip={number + 1}"}
    envelope = lookup(config)
    assert envelope["status"] == "success"
    assert envelope["summary"]["truncated"] is True
    assert any("pages" in warning for warning in envelope["warnings"])
    assert lookup(config)["summary"]["cached"] is False


def test_a_file_record_whose_sha1_holds_a_sha256_is_an_error_and_not_cached(
        serve: Any, tmp_path: Path) -> None:
    record = {"sha1": KNOWN_FILE["sha256"], "sha256": KNOWN_FILE["sha256"]}
    config = serve(pages_answer({f"/api/files/{KNOWN_FILE['sha256']}": record}),
                   state=f"sqlite:///{tmp_path / 'state.db'}")
    for _ in range(2):  # the second is not served a cached mapping
        envelope = lookup(config, "file", KNOWN_FILE["sha256"])
        assert envelope["error"]["code"] == "upstream_error"
        assert "sha256 where its SHA-1 belongs" in envelope["error"]["message"]


# --- the budget against absurd throttling ------------------------------------------------


@pytest.mark.parametrize("retry_after", ["999999", "inf", "1e400", "nan"])
def test_an_absurd_retry_after_pauses_everyone_at_most_max_retry_after_s(
        emulator: Any, tmp_path: Path, retry_after: str) -> None:
    import sqlite3

    state = tmp_path / "state.db"
    emulator.admin.add_fault(DOMAIN_PATH, {"status": 429, "headers": {"Retry-After": retry_after}},
                             repeat_last=True)
    config = emulator.config(state=f"sqlite:///{state}", max_retry_after_s=5, max_attempts=2,
                             backoff_base_s=0.02, backoff_cap_s=0.05, max_rate_wait_s=0)
    envelope = lookup(config)
    assert envelope["error"]["code"] == "rate_limited"
    with sqlite3.connect(state) as db:
        pauses = [until - time.time() for (until,) in db.execute("SELECT until FROM rate_pauses")]
    assert all(remaining <= 5 for remaining in pauses), pauses
