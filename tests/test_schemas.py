"""The schemas: each loads and is valid 2020-12, and the quick verdict always agrees with
jsonschema (it may only say 'valid' when jsonschema does, and 'invalid' when it does)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from integration import schemas

SCHEMA_FILES = sorted(path.name for path in schemas.SCHEMA_DIR.glob("*.json"))
QUICK_SCHEMAS = ["domain.input.schema.json", "file_hash.input.schema.json",
                 "connectivity.input.schema.json", "config.schema.json"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 700), st.floats(-5, 700),
                         st.text(max_size=12),
                         st.sampled_from(["evil.example", "commercial", "us-gcc",
                                          "https://x.example",
                                          "sqlite:///tmp/s.db", "redis://h:6379/0", "a" * 40]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def keys_of(name: str) -> list[str]:
    properties = dict(schemas.schema(name).get("properties", {}))
    return [*sorted(properties), "extra", "path", "password", "per_minute"]


@st.composite
def near_valid(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Objects built from the schema's own keys, with values valid, odd, or of the wrong type."""
    keys = draw(st.lists(st.sampled_from(keys_of(name)), max_size=8, unique=True))
    return {key: draw(st.one_of(json_scalars, st.dictionaries(
        st.sampled_from(["path", "password", "per_minute", "per_hour", "x"]), json_scalars,
        max_size=3))) for key in keys}


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_is_valid_draft_2020_12_with_its_own_id(name: str) -> None:
    contents = schemas.schema(name)
    Draft202012Validator.check_schema(contents)
    assert contents["$id"] == schemas.ID_PREFIX + name


@pytest.mark.parametrize("name", QUICK_SCHEMAS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_quick_verdict_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    instance = data.draw(st.one_of(near_valid(name), json_values))
    verdict = schemas.quick_verdict(schemas.schema(name), instance, name)
    if verdict is not None:
        assert verdict == (not schemas.errors(name, instance)), instance


@pytest.mark.parametrize(("name", "instance"), [
    ("domain.input.schema.json", {"domain": "evil.example", "use_cache": False}),
    ("file_hash.input.schema.json", {"file_hash": "a" * 40, "include_raw": True}),
    ("config.schema.json", {"tenant_id": "t", "client_id": "c", "client_secret": "s",
                            "rate_limit": {"per_minute": 30}, "timeout_s": 5}),
    ("config.schema.json", {"tenant_id": "t", "client_id": "c",
                            "client_certificate": {"path": "/c.pem", "password": "p"}}),
])
def test_valid_everyday_instances_get_a_quick_yes(name: str, instance: dict) -> None:
    assert schemas.quick_verdict(schemas.schema(name), instance, name) is True


def test_a_valid_lookup_with_a_cached_token_imports_neither_jsonschema_nor_msal(
        config: dict, config_file) -> None:
    from integration import actions

    actions.get_machines_for_domain({"domain": "phish.example"}, config)  # caches a token
    config = json.dumps(str(config_file))
    script = ("import sys, yaml; from integration.actions import get_machines_for_domain as f; "
              f"e = f({{'domain': 'evil.example'}}, yaml.safe_load(open({config}))); "
              "assert e['status'] == 'success', e; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('jsonschema', 'referencing', 'msal')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_bad_parameter_still_gets_jsonschemas_words() -> None:
    assert schemas.check("domain.input.schema.json", {"domain": 7}) == \
        ["at $.domain: 7 is not of type 'string'"]
