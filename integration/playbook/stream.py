"""Alerts read as a stream: one alert, a page (`{"value": [...]}`), a JSON array or NDJSON,
from a file or standard input, in memory bounded by the largest alert, not by the input.

    for item in read_stream(binary_file, "alerts.json"):
        item.alert     # the alert (None when item.problem says why it could not be read)
        item.shape     # page_of_alerts | array_of_alerts | ndjson | None (a lone alert)
        item.empty     # True for the one item of an empty page or array: no alert

The text is read in chunks and each top-level value or array element is decoded on its own
(json.JSONDecoder.raw_decode, the standard library's C scanner), so a 20,000-alert page costs
the memory of one alert. An unreadable item (not JSON, nested too deep, larger than
MAX_ITEM_BYTES) is yielded with its problem and the stream goes on where it can: at the next
line in NDJSON; in an array or a page nothing after a broken element can be trusted, so that
is the last item.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from integration.bounded import ALERT

CHUNK = 1 << 16
# The bounded readers' limits for an alert (integration/bounded.py): larger is refused, not
# buffered; deeper is refused here when the C scanner runs out of stack and, below that, by
# the engine's check_nesting on every alert it is given.
MAX_ITEM_BYTES = ALERT.max_bytes
_WHITESPACE = " \t\r\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # strict JSON, as bounded.py


def is_sentinel_entity(item: Any) -> bool:
    """A Microsoft Sentinel entity: a list of them is one alert, not a list of alerts."""
    return isinstance(item, dict) and isinstance(item.get("kind"), str) \
        and isinstance(item.get("properties"), dict)


@dataclass(frozen=True)
class StreamItem:
    number: int  # 1, 2, ... over the whole stream
    label: str  # where it came from: "alerts.ndjson line 7", "page.json item 3"
    alert: Any  # None when `problem` is set
    problem: str | None = None  # why the item could not be read
    shape: str | None = None  # of the input: page_of_alerts | array_of_alerts | ndjson | None
    line: int = 1  # the line the item's top-level value starts on
    index: int | None = None  # its place in a page or array (1-based), else None
    empty: bool = False  # no alert: the input is an empty page or array (it has a shape)

    @property
    def readable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class _Whole:
    """An array that is one alert (a list of Sentinel entities), not a list of alerts."""

    alert: Any


class _Unreadable(ValueError):
    """A value that cannot be decoded."""


class _TooDeep(_Unreadable):
    """Nested past the C scanner's stack: said of the whole value, not of an element."""


class _Text:
    """A decoded text buffer over a binary stream, refilled on demand."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # the line of `pos`
        self._counted = 0  # buf[:_counted] has had its newlines counted into `line`
        self.keep: int | None = None  # text from here on is kept (to be read again)

    def _read(self) -> bool:
        if self.eof:
            return False
        chunk = self._stream.read(CHUNK)
        if not chunk:
            self.eof = True
            self.buf += self._decoder.decode(b"", final=True)
            return False
        # Keep only what is still to be read: memory stays at one item.
        self._sync_line()
        drop = self.pos if self.keep is None else min(self.pos, self.keep)
        self.buf = self.buf[drop:] + self._decoder.decode(chunk)
        self._counted -= drop
        self.pos -= drop
        if self.keep is not None:
            self.keep -= drop
        return True

    def _sync_line(self) -> None:
        if self.pos > self._counted:
            self.line += self.buf.count("\n", self._counted, self.pos)
            self._counted = self.pos

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                self._sync_line()
                return self.buf[self.pos]
            if not self._read():
                return ""

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def value(self) -> Any:
        """Decode the value at `pos`, reading more text until it is whole."""
        self.peek()
        want = CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise _TooDeep(f"nested deeper than {ALERT.max_depth} levels") from None
            except ValueError as exc:
                if not isinstance(exc, json.JSONDecodeError):  # NaN, Infinity
                    raise _Unreadable(f"not valid JSON: {exc}") from None
                # Wrong before the end of the text read so far: wrong for good. (A string is
                # "unterminated" only at the end: a raw newline inside one is an error.)
                # Near the end it may be an escape cut in half: read on.
                wrong = exc.pos < len(self.buf) - 16 and not exc.msg.startswith("Unterminated")
                if wrong or self.eof or len(self.buf) - self.pos > MAX_ITEM_BYTES:
                    if not (self.eof or wrong):
                        raise _Unreadable(f"larger than {MAX_ITEM_BYTES >> 20} MiB") from None
                    raise _Unreadable(f"not valid JSON: {exc.msg} (line {exc.lineno} "
                                      f"column {exc.colno})") from None
                # Incomplete so far: read until the pending text has doubled (linear overall).
                want = max(want, 2 * (len(self.buf) - self.pos))
                while len(self.buf) - self.pos < want and self._read():
                    pass
                continue
            self.pos = end
            return value

    def skip_line(self) -> bool:
        """Skip past the next newline; False when there is none."""
        while True:
            newline = self.buf.find("\n", self.pos)
            if newline >= 0:
                self.pos = newline + 1
                self._sync_line()
                return True
            self.pos = len(self.buf)
            if not self._read():
                return False


def read_stream(stream: IO[bytes], label: str) -> Iterator[StreamItem]:
    """Every alert of the stream, in order (see the module's docstring)."""
    text = _Text(stream)
    number = values = 0
    pretty = False  # the input opens with a lone `[` or `{` line: one document, not NDJSON
    while True:
        try:
            if text.peek() == "":
                return
        except UnicodeDecodeError:
            yield StreamItem(number + 1, label, None, "is not UTF-8 text")
            return
        values += 1
        line = text.line
        if values == 1:
            newline = text.buf.find("\n", text.pos)
            pretty = newline >= 0 and text.buf[text.pos:newline].strip() in ("[", "{")
        prefix = label if values == 1 else f"{label} line {line}"
        kind: str | None = None
        index = 0
        try:
            char = text.peek()
            if char == "[":
                kind, elements = "array_of_alerts", _array(text)
            elif char == "{":
                elements, kind = _object(text)
            else:
                elements = iter([text.value()])
            for alert in elements:
                index += 1
                number += 1
                if isinstance(alert, _Whole):
                    alert, kind = alert.alert, None
                if kind is None:  # a lone value: NDJSON when another one follows
                    shape = "ndjson" if values > 1 or text.peek() != "" else None
                    yield StreamItem(number, f"{label} line {line}" if shape else label, alert,
                                     shape=shape, line=line)
                else:
                    yield StreamItem(number, f"{prefix} item {index}", alert,
                                     shape="ndjson" if values > 1 else kind, line=line,
                                     index=index)
            if index == 0 and kind is not None and values == 1 and not _more(text):
                yield StreamItem(0, label, None, shape=kind, line=line, empty=True)
        except (_Unreadable, UnicodeDecodeError) as exc:
            problem = str(exc) if isinstance(exc, _Unreadable) else "is not UTF-8 text"
            number += 1
            # NDJSON goes on at the next line; inside one pretty document nothing can.
            more = not pretty and text.skip_line() and _more(text)
            ndjson = values > 1 or more
            if isinstance(exc, _TooDeep) and index == 0:
                kind = None  # a line of brackets: no first element to name
            if kind is not None:
                where, shape = f"{prefix} item {index + 1}", "ndjson" if ndjson else kind
            else:
                where = f"{label} line {line}" if ndjson else label
                shape = "ndjson" if ndjson else None
            yield StreamItem(number, where, None, problem, shape, line,
                             index + 1 if kind is not None else None)
            if not more:
                return


def _more(text: _Text) -> bool:
    try:
        return text.peek() != ""
    except UnicodeDecodeError:
        return True  # said by the next item


def _array(text: _Text) -> Iterator[Any]:  # of alerts, or one _Whole
    """The elements of the array at `text`; a list of Sentinel entities is one alert."""
    text.take("[")
    first = True
    while True:
        if text.take("]"):
            return
        if not first and not text.take(","):
            raise _Unreadable("not valid JSON: expected ',' or ']' between alerts "
                              f"(line {text.line})")
        element = text.value()
        if first and is_sentinel_entity(element):
            entities = [element]
            while not text.take("]"):
                if not text.take(","):
                    raise _Unreadable("not valid JSON: expected ',' or ']' (line "
                                      f"{text.line})")
                entities.append(text.value())
            if all(is_sentinel_entity(entity) for entity in entities):
                yield _Whole({"entities": entities})
            else:
                yield from entities
            return
        first = False
        yield element


def _object(text: _Text) -> tuple[Iterator[Any], str | None]:
    """A page (its `value` alerts, streamed) or one alert (decoded whole). A page is an
    object whose keys before `value` all start with `@odata.`, as Graph and Defender send."""
    text.peek()
    text.keep = start = text.pos
    line = text.line
    text.take("{")
    while True:
        if text.peek() != '"':
            break  # `{}` or not JSON: decoded whole below, which words the error
        key = text.value()
        if not text.take(":"):
            break
        if key == "value" and text.peek() == "[":
            text.keep = None
            return _page(text), "page_of_alerts"
        if not (isinstance(key, str) and key.startswith("@odata.")):
            break
        text.value()  # @odata.context and the like: small, skipped
        if not text.take(","):
            break
    # Not a page: the whole object is one alert (its text was kept).
    start, text.keep = text.keep or 0, None
    text.pos, text.line, text._counted = start, line, start
    return iter([text.value()]), None


def _page(text: _Text) -> Iterator[Any]:
    yield from _array(text)
    # The rest of the page (@odata.nextLink, ...) up to its closing brace.
    while text.take(","):
        text.value()
        if not text.take(":"):
            raise _Unreadable(f"not valid JSON: expected ':' (line {text.line})")
        text.value()
    if not text.take("}"):
        raise _Unreadable(f"not valid JSON: expected '}}' after the page (line {text.line})")
