"""STIX 2.1 patterns -> the indicators Defender can answer (domains, file hashes).

A pattern is parsed by OASIS's own grammar (`stix2-patterns`, ANTLR), never by a regular
expression: `[domain-name:value = 'a' OR ipv4-addr:value = '1.2.3.4']` is one comparison
Defender can look up and one it cannot. Each comparison becomes an `Indicator` (through the
same parsers every other input goes through) or a `Skip` that says why:

* `domain-name:value` and `url:value` (its host) with `=` or `IN`: a domain;
* `file:hashes.'SHA-1' | 'SHA-256' | MD5` (any spelling STIX producers use) with `=` or `IN`:
  a file hash;
* anything else (`ipv4-addr`, `windows-registry-key`, `file:name`, `LIKE`, `MATCHES`,
  negations) is skipped with its reason: Defender's machines calls cannot answer it.

Used by the sweep's feed readers and by anything else that meets a STIX pattern (alerts that
carry STIX bundles).
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

from integration.errors import InvalidInput, PluginError
from integration.values.indicators import Indicator, parse_domain, parse_file_hash

# How STIX producers spell the hash keys (the spec's 'SHA-256', and what real feeds write).
_HASH_KEYS = {"sha-1": "sha1", "sha1": "sha1", "sha-256": "sha256", "sha256": "sha256",
              "md5": "md5"}
_LOOKED_UP_OPS = frozenset({"=", "IN"})


class Skip(NamedTuple):
    """A comparison of a pattern that is not looked up, and why."""

    what: str  # e.g. "ipv4-addr:value = '10.0.0.0'"
    reason: str  # a stable word: unsupported_object, unsupported_operator, invalid_value
    message: str


class PatternIndicators(NamedTuple):
    indicators: list[Indicator]
    skipped: list[Skip]


class _Comparison(NamedTuple):
    object_type: str
    path: list[str]
    operator: str  # "=", "IN", "LIKE", ... with "NOT " in front when negated
    values: list[str]  # the string literals, unquoted


def indicators_from_pattern(pattern: str) -> PatternIndicators:
    """The domains and file hashes a STIX 2.1 pattern names, and what it names besides.
    InvalidInput when the text is not a STIX 2.1 pattern."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidInput("a STIX pattern must be a non-empty string")
    return _collected(_comparisons(pattern))


def indicator_from_observable(observable: dict[str, Any]) -> PatternIndicators:
    """A STIX cyber-observable object (`domain-name`, `url`, `file` with `hashes`) as
    indicators, the way `indicators_from_pattern` reads the same thing in a pattern."""
    object_type = str(observable.get("type", ""))
    comparisons: list[_Comparison] = []
    if object_type in ("domain-name", "url") and isinstance(observable.get("value"), str):
        comparisons.append(_Comparison(object_type, ["value"], "=", [observable["value"]]))
    elif object_type == "file" and isinstance(observable.get("hashes"), dict):
        comparisons += [_Comparison("file", ["hashes", str(key)], "=", [value])
                        for key, value in observable["hashes"].items() if isinstance(value, str)]
    else:
        comparisons.append(_Comparison(object_type or "unknown", [], "=", []))
    return _collected(comparisons)


def _collected(comparisons: list[_Comparison]) -> PatternIndicators:
    """Each distinct indicator once, in order, and every skip."""
    found: dict[tuple[str, str], Indicator] = {}
    skipped: list[Skip] = []
    for comparison in comparisons:
        for item in _read(comparison):
            if isinstance(item, Skip):
                skipped.append(item)
            else:
                found.setdefault((item.type, item.value), item)
    return PatternIndicators(list(found.values()), skipped)


def _comparisons(pattern: str) -> list[_Comparison]:
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    listener = _Listener()
    try:
        Pattern(pattern).walk(listener)
    except ParseException as exc:
        raise InvalidInput(f"not a STIX 2.1 pattern: {exc}") from exc
    return listener.comparisons


def _read(comparison: _Comparison) -> list[Indicator | Skip]:
    what = _describe(comparison)
    object_type, path = comparison.object_type, [p.lower() for p in comparison.path]
    if object_type in ("domain-name", "url") and path == ["value"]:
        kind = "domain"
    elif object_type == "file" and len(path) == 2 and path[0] == "hashes" \
            and path[1] in _HASH_KEYS:
        kind = "file"
    else:
        return [Skip(what, "unsupported_object",
                     f"{what}: Defender's machines calls answer domains, URLs and file hashes "
                     "(SHA-1, SHA-256, MD5) only")]
    if comparison.operator not in _LOOKED_UP_OPS:
        return [Skip(what, "unsupported_operator",
                     f"{what}: only '=' and 'IN' name values that can be looked up")]
    out: list[Indicator | Skip] = []
    for value in comparison.values:
        try:
            indicator = parse_domain(value) if kind == "domain" else parse_file_hash(value)
        except PluginError as error:
            out.append(Skip(what, "invalid_value", f"{what}: {error.message}"))
            continue
        if kind == "file" and indicator.type != _HASH_KEYS[path[1]]:
            out.append(Skip(what, "invalid_value", f"{what}: the value has the length "
                                                   f"of {indicator.type.upper()}, not the "
                                                   f"{path[1].upper()} the pattern says"))
            continue
        out.append(indicator)
    return out


def _describe(comparison: _Comparison) -> str:
    path = ".".join(comparison.path)
    shown = ", ".join(repr(v) for v in comparison.values[:3])
    if len(comparison.values) > 3:
        shown += ", ..."
    target = f"{comparison.object_type}:{path}" if path else comparison.object_type
    return f"{target} {comparison.operator} {shown}".strip()


def _literal(token_text: str) -> str:
    """A STIX string literal's text as the string it holds."""
    if len(token_text) >= 2 and token_text[0] == token_text[-1] == "'":
        return token_text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return token_text  # a number, boolean or binary/hex literal, as written


def _listener_base() -> type:
    from stix2patterns.v21.grammars.STIXPatternListener import STIXPatternListener

    return cast(type, STIXPatternListener)


class _Listener(_listener_base()):  # type: ignore[misc]
    """Collects every comparison with its object type, path, operator and values (the
    library's own inspector keeps set literals as one unparsed string)."""

    def __init__(self) -> None:
        self.comparisons: list[_Comparison] = []
        self._type = ""
        self._path: list[str] = []

    def enterObjectPath(self, ctx: Any) -> None:  # the grammar names the hooks
        self._type = ctx.objectType().getText()
        self._path = []

    def exitFirstPathComponent(self, ctx: Any) -> None:
        self._path.append(_literal(ctx.getText()))

    def exitKeyPathStep(self, ctx: Any) -> None:
        text = ctx.getText()
        self._path.append(_literal(text[1:] if text.startswith(".") else text))

    def exitPropTestEqual(self, ctx: Any) -> None:
        operator = (ctx.EQ() or ctx.NEQ()).getText()
        self._add(ctx, "=" if operator == "=" else "!=", [ctx.primitiveLiteral().getText()])

    def exitPropTestSet(self, ctx: Any) -> None:
        literals = ctx.setLiteral().primitiveLiteral()
        self._add(ctx, "IN", [literal.getText() for literal in literals])

    def exitPropTestOrder(self, ctx: Any) -> None:
        self._add(ctx, (ctx.GT() or ctx.LT() or ctx.GE() or ctx.LE()).getText(),
                  [ctx.orderableLiteral().getText()])

    def exitPropTestLike(self, ctx: Any) -> None:
        self._add(ctx, "LIKE", [ctx.StringLiteral().getText()])

    def exitPropTestRegex(self, ctx: Any) -> None:
        self._add(ctx, "MATCHES", [ctx.StringLiteral().getText()])

    def exitPropTestIsSubset(self, ctx: Any) -> None:
        self._add(ctx, "ISSUBSET", [ctx.StringLiteral().getText()])

    def exitPropTestIsSuperset(self, ctx: Any) -> None:
        self._add(ctx, "ISSUPERSET", [ctx.StringLiteral().getText()])

    def exitPropTestExists(self, ctx: Any) -> None:
        self._add(ctx, "EXISTS", [])

    def _add(self, ctx: Any, operator: str, literals: list[str]) -> None:
        negated = "NOT " if getattr(ctx, "NOT", lambda: None)() else ""
        self.comparisons.append(_Comparison(self._type, list(self._path), negated + operator,
                                            [_literal(text) for text in literals]))
