"""The pieces of YAML within one line: scalars, quoted strings, flow collections like `[a, b]`.

Scalars follow YAML 1.2's core schema, not PyYAML's 1.1: `yes`, `no`, `on`, `12:30` and
`2024-01-01` stay text, only `true`/`false` are booleans, integers are decimal or `0x` hex;
`RESOLVERS` gives PyYAML the same rules. Anything unusual raises `Unsupported` (PyYAML's job).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "DQ_BODY",
    "INDICATORS",
    "MAYBE_NOT_TEXT",
    "RESOLVERS",
    "SQ_BODY",
    "Unsupported",
    "after_value",
    "decode",
    "flow_collection",
    "plain_scalar",
    "quoted_key",
]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# Capped length: Python refuses int() of more than 4300 digits, and PyYAML would crash on it.
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]{0,300})|0x[0-9a-fA-F][0-9a-fA-F_]{0,300})$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_MERGE = re.compile(r"^(?:<<)$")

# (tag, pattern, first characters) for PyYAML's add_implicit_resolver, in priority order.
RESOLVERS: tuple[tuple[str, re.Pattern[str], list[str]], ...] = (
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfF")),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789.")),
    ("tag:yaml.org,2002:merge", _MERGE, ["<"]),
)
MAYBE_NOT_TEXT = frozenset("~nNtTfF-+0123456789.<")  # first characters of non-text scalars
INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_STOP = re.compile(r"[,\[\]{}:#]")
_DEEPEST_FLOW = 50
_SIMPLE_FLOW = re.compile(r"^[\[{][^\[\]{}'\"#&*!|>%@`?]*[\]}]$")
SQ_BODY = re.compile(r"(?:[^']|'')*")
DQ_BODY = re.compile(r'(?:[^"\\]|\\.)*')
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))")
_SIMPLE_ESCAPES = {
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip


class Unsupported(Exception):
    """The text uses YAML this reader leaves to PyYAML (which may also find it invalid)."""


def plain_scalar(text: str) -> Any:
    """The value of an unquoted scalar under the resolver above."""
    if text[:1] not in MAYBE_NOT_TEXT:
        return text
    if _NULL.match(text):
        return None
    if _BOOL.match(text):
        return text[0] in "tT"
    if _INT.match(text):
        digits = text.replace("_", "")
        if digits.startswith("0x"):
            return int(digits[2:], 16)
        return int(digits)
    if _FLOAT.match(text):
        value = text.replace("_", "").lower()
        sign = -1.0 if value[0] == "-" else 1.0
        value = value.lstrip("+-")
        if value == ".inf":
            return sign * math.inf
        return math.nan if value == ".nan" else sign * float(value)
    if _MERGE.match(text):
        raise Unsupported
    return text


def after_value(rest: str) -> None:
    """What follows a complete value on its line may only be spaces and a comment."""
    stripped = rest.lstrip(" ")
    if stripped and (stripped[0] != "#" or stripped == rest):
        raise Unsupported


def _unescape(match: re.Match[str]) -> str:
    simple = match.group(4)
    if simple is not None:
        if simple not in _SIMPLE_ESCAPES:
            raise Unsupported
        return _SIMPLE_ESCAPES[simple]
    code = int(match.group(1) or match.group(2) or match.group(3), 16)
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        raise Unsupported
    return chr(code)


def quoted_key(text: str) -> tuple[str, str] | None:
    """(key, text after the colon) for a line starting `'key':` or `"key":`; None if it is not."""
    quote = text[0]
    body = (SQ_BODY if quote == "'" else DQ_BODY).match(text, 1)
    assert body is not None  # both patterns match the empty string
    end = body.end()
    if text[end : end + 1] != quote:
        return None  # a multi-line quoted scalar: keys are one line
    after = text[end + 1 :]
    if not (after == ":" or after.startswith(": ")):
        return None
    if end > 1024:
        raise Unsupported
    return decode(body.group(), quote), after[1:]


def decode(raw: str, quote: str) -> str:
    """The text of a quoted scalar's body: `''` in single quotes, escapes in double quotes."""
    if quote == "'":
        return raw.replace("''", "'")
    return _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw


def flow_collection(text: str) -> Any:
    """The flow collection that opens `text` and must end with it (bar a comment)."""
    simple = _simple_flow(text)
    if simple is not None:
        return simple
    value, end = _Flow(text).node(0)
    after_value(text[end:])
    return value


def _simple_flow(text: str) -> Any:
    """`[a, b]` or `{k: v, k2: v2}` of plain scalars, the whole line; None for anything else."""
    close = "]" if text[0] == "[" else "}"
    if text[-1] != close or not _SIMPLE_FLOW.match(text):
        return None
    inner = text[1:-1].strip(" ")
    if not inner:
        return [] if close == "]" else {}
    entries = [entry.strip(" ") for entry in inner.split(",")]
    if close == "]":
        if any(not _flow_plain(entry) or ":" in entry for entry in entries):
            return None
        return [plain_scalar(entry) for entry in entries]
    result = {}
    for entry in entries:
        key, colon, value = entry.partition(": ")
        key, value = key.rstrip(" "), value.lstrip(" ")
        if not colon or not _flow_plain(key) or not _flow_plain(value) or ":" in key + value:
            return None
        parsed = plain_scalar(key)
        if parsed in result or (isinstance(parsed, float) and math.isnan(parsed)):
            return None
        result[parsed] = plain_scalar(value)
    return result


def _flow_plain(text: str) -> bool:
    if not text:
        return False
    first = text[0]
    return first not in INDICATORS or (first == "-" and text[1:2] not in ("", " "))


class _Flow:
    """A flow collection that opens and closes within one line."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.depth = 0

    def spaces(self, pos: int) -> int:
        text = self.text
        while pos < len(text) and text[pos] == " ":
            pos += 1
        return pos

    def node(self, pos: int) -> tuple[Any, int]:
        text = self.text
        if pos >= len(text):
            raise Unsupported
        first = text[pos]
        if first in "[{":
            self.depth += 1
            if self.depth > _DEEPEST_FLOW:
                raise Unsupported  # PyYAML's job; Python's recursion limit is near
            value, end = self.sequence(pos + 1) if first == "[" else self.mapping(pos + 1)
            self.depth -= 1
            return value, end
        return self.scalar(pos)

    def scalar(self, pos: int, *, key: bool = False) -> tuple[Any, int]:
        text = self.text
        first = text[pos]
        if first in "'\"":
            body = (SQ_BODY if first == "'" else DQ_BODY).match(text, pos + 1)
            assert body is not None
            if text[body.end() : body.end() + 1] != first:
                raise Unsupported
            return decode(body.group(), first), body.end() + 1
        if first in INDICATORS and (first != "-" or text[pos + 1 : pos + 2] in ("", " ")):
            raise Unsupported
        stop = _FLOW_STOP.search(text, pos)
        end = stop.start() if stop else len(text)
        if stop and stop.group() in ":#" and not (key and text[end : end + 2] == ": "):
            raise Unsupported
        value = text[pos:end].rstrip(" ")
        if not value:
            raise Unsupported
        return plain_scalar(value), end

    def sequence(self, pos: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        pos = self.spaces(pos)
        if self.text[pos : pos + 1] == "]":
            return items, pos + 1
        while True:
            value, pos = self.node(self.spaces(pos))
            items.append(value)
            pos = self.spaces(pos)
            mark = self.text[pos : pos + 1]
            if mark == "]":
                return items, pos + 1
            if mark != ",":
                raise Unsupported
            pos = self.spaces(pos + 1)

    def mapping(self, pos: int) -> tuple[dict[Any, Any], int]:
        result: dict[Any, Any] = {}
        pos = self.spaces(pos)
        if self.text[pos : pos + 1] == "}":
            return result, pos + 1
        while True:
            pos = self.spaces(pos)
            if self.text[pos : pos + 1] in ("[", "{", ""):
                raise Unsupported
            key, pos = self.scalar(pos, key=True)
            if self.text[pos : pos + 2] != ": " or key in result:
                raise Unsupported
            if isinstance(key, float) and math.isnan(key):
                raise Unsupported
            value, pos = self.node(self.spaces(pos + 2))
            result[key] = value
            pos = self.spaces(pos)
            mark = self.text[pos : pos + 1]
            if mark == "}":
                return result, pos + 1
            if mark != ",":
                raise Unsupported
            pos += 1
