"""A fast reader for the plain block-style YAML that manifests are written in, and the scalar rules.

PyYAML, even on libyaml, builds a node with marks per scalar and needs most of a second for a
10,000-item manifest. This reader takes the common subset line by line (block mappings and
sequences, plain and quoted scalars, `|`/`>` block scalars, one-line flow collections, comments)
and raises `Unsupported` for anything else (anchors, tags, tabs, odd indentation, invalid YAML),
so the caller falls back to PyYAML. It must never read a document differently from PyYAML with
the resolver below: tests compare the two on generated and mutated documents.

Scalars follow YAML 1.2's core schema rather than PyYAML's 1.1 defaults: `yes`, `no`, `on`, `off`,
`12:30` and `2024-01-01` stay text (ids like `on` and prompts are common), only `true`/`false`
are booleans, and integers are decimal or `0x` hex.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["RESOLVERS", "Unsupported", "load"]

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
_MAYBE_NOT_TEXT = frozenset("~nNtTfF-+0123456789.<")

# Characters PyYAML's reader rejects or reads as line breaks, and tabs and BOMs: left to PyYAML.
_SPECIAL = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_MARKERS = ("\n---", "\n...", "\n%")  # document markers and directives
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_STOP = re.compile(r"[,\[\]{}:#]")
_SIMPLE_FLOW = re.compile(r"^[\[{][^\[\]{}'\"#&*!|>%@`?]*[\]}]$")
_SQ_BODY = re.compile(r"(?:[^']|'')*")
_DQ_BODY = re.compile(r'(?:[^"\\]|\\.)*')
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
    if text[:1] not in _MAYBE_NOT_TEXT:
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


def load(text: str) -> Any:
    """Read a YAML document of the supported subset; raise `Unsupported` for anything else."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    if _SPECIAL.search(text) or text.startswith(("---", "...", "%")):
        raise Unsupported
    if any(marker in text for marker in _MARKERS):
        raise Unsupported
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    return _Reader(lines, final_newline).document()


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


def _after_value(rest: str) -> None:
    """What follows a complete value on its line may only be spaces and a comment."""
    stripped = rest.lstrip(" ")
    if stripped and (stripped[0] != "#" or stripped == rest):
        raise Unsupported


class _Reader:
    """Recursive descent over lines. `self.i` is the line being read; `content[i]` is line i
    without its indent, `indent[i]` the indent (a `- ` entry's line is rewritten to its rest)."""

    def __init__(self, lines: list[str], final_newline: bool) -> None:
        self.lines = lines
        self.content = [line.lstrip(" ") for line in lines]
        self.indent = [len(a) - len(b) for a, b in zip(lines, self.content, strict=True)]
        self.final_newline = final_newline
        self.i = 0

    def skip(self) -> int:
        """Move to the next line with content; its indent, or -1 at the end."""
        content, i = self.content, self.i
        end = len(content)
        while i < end:
            text = content[i]
            if text and text[0] != "#":
                self.i = i
                return self.indent[i]
            i += 1
        self.i = i
        return -1

    def document(self) -> Any:
        if self.skip() < 0:
            return None
        text = self.content[self.i]
        if self.indent[self.i] or not (_is_entry(text) or self.split_key(text)):
            raise Unsupported  # top-level scalars, flow collections, indented roots: PyYAML's job
        value = self.node(-1)
        if self.skip() >= 0:
            raise Unsupported
        return value

    def node(self, parent: int) -> Any:
        """The block node starting on the current line, indented more than `parent`."""
        text = self.content[self.i]
        if _is_entry(text):
            return self.sequence(self.indent[self.i])
        key = self.split_key(text)
        if key is not None:
            return self.mapping(self.indent[self.i], key)
        return self.inline(text, parent)

    def sequence(self, n: int) -> list[Any]:
        items: list[Any] = []
        content, indent = self.content, self.indent
        while True:
            rest = content[self.i][1:]
            text = rest.lstrip(" ")
            if not text or text[0] == "#":
                self.i += 1
                items.append(self.node(n) if self.skip() > n else None)
            else:
                content[self.i] = text
                indent[self.i] = n + 1 + len(rest) - len(text)
                items.append(self.node(n))
            if self.skip() != n or not _is_entry(content[self.i]):
                return items

    def mapping(self, n: int, first: tuple[Any, str]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        content, indent, end = self.content, self.indent, len(self.content)
        key, rest = first
        while True:
            if key in result:
                raise Unsupported  # duplicate key: PyYAML's reader reports it with positions
            text = rest.lstrip(" ")
            if not text or text[0] == "#":
                self.i += 1
                ind = self.skip()
                if ind > n:
                    result[key] = self.node(n)
                elif ind == n and _is_entry(content[self.i]):
                    result[key] = self.sequence(n)
                else:
                    result[key] = None
            else:
                # The usual line, `key: some text`, without the calls of the general path.
                following = self.i + 1
                if (
                    text[0] not in _INDICATORS
                    and text[-1] not in " :"
                    and " #" not in text
                    and ": " not in text
                    and following < end
                    and content[following]
                    and (indent[following] <= n or content[following][0] == "#")
                ):
                    self.i = following
                    result[key] = text if text[0] not in _MAYBE_NOT_TEXT else plain_scalar(text)
                else:
                    result[key] = self.inline(text, n)
            i = self.i
            quick = i < end and content[i] and content[i][0] != "#"
            if (indent[i] if quick else self.skip()) != n:
                return result
            split = self.split_key(content[self.i])
            if split is None:
                raise Unsupported
            key, rest = split

    def split_key(self, text: str) -> tuple[Any, str] | None:
        """(key, text after the colon) when `text` starts with `key:`; None if it does not."""
        first = text[0]
        if first in _INDICATORS:
            if first in "[{|>":
                return None  # flow collections and block scalars are values here, never keys
            if first in "'\"":
                return _quoted_key(text)
            if first not in "-?:" or text[1:2] in (" ", ""):
                raise Unsupported
        colon = text.find(": ")
        if colon < 0:
            if not text.endswith(":"):
                return None
            colon = len(text) - 1
        key_text = text[:colon].rstrip(" ")
        if " #" in key_text or len(key_text) > 1024 or not key_text:
            raise Unsupported
        if key_text[0] not in _MAYBE_NOT_TEXT:
            return key_text, text[colon + 1 :]
        key = plain_scalar(key_text)
        if isinstance(key, float) and math.isnan(key):
            raise Unsupported  # nan != nan: duplicates would go unseen
        return key, text[colon + 1 :]

    def inline(self, text: str, parent: int) -> Any:
        """A value that starts within the current line (at `text`); may continue below."""
        first = text[0]
        if first in _INDICATORS:
            if first in "|>":
                return self.block_scalar(text, parent)
            if first in "[{":
                self.i += 1
                simple = _simple_flow(text)
                if simple is not None:
                    return simple
                value, end = _Flow(text).node(0)
                _after_value(text[end:])
                return value
            if first in "'\"":
                return self.quoted(text, parent)
            if first not in "-?:" or text[1:2] in (" ", ""):
                raise Unsupported
        comment = text.find(" #")
        value = (text if comment < 0 else text[:comment]).rstrip(" ")
        if ": " in value or value[-1] == ":":
            raise Unsupported
        self.i += 1
        content, indent = self.content, self.indent
        if comment >= 0 or self.i >= len(content):
            return plain_scalar(value)
        following = content[self.i]
        if following and (indent[self.i] <= parent or following[0] == "#"):
            return plain_scalar(value)  # the usual case: no continuation lines
        parts = [value]
        blank = 0
        while self.i < len(content):
            following = content[self.i]
            if not following:
                blank += 1
                self.i += 1
                continue
            if indent[self.i] <= parent or following[0] == "#":
                break
            following = following.rstrip(" ")
            if following[0] in _INDICATORS or ": " in following or " #" in following:
                raise Unsupported
            if following[-1] == ":":
                raise Unsupported
            parts.append("\n" * blank if blank else " ")
            parts.append(following)
            blank = 0
            self.i += 1
        if len(parts) == 1:
            return plain_scalar(value)
        return "".join(parts)

    def quoted(self, text: str, parent: int) -> str:
        quote = text[0]
        pattern = _SQ_BODY if quote == "'" else _DQ_BODY
        chunks: list[str] = []
        line, start, first = text, 1, True
        while True:
            body = pattern.match(line, start)
            assert body is not None
            raw, after = body.group(), line[body.end() :]
            if not first:
                raw = raw.lstrip(" ")
            if after[:1] == quote:
                chunks.append(_decode(raw, quote))
                _after_value(after[1:])
                self.i += 1
                return "".join(chunks)
            escaped_break = after == "\\"
            if not escaped_break:
                trimmed = raw.rstrip(" ")
                if quote == '"' and (len(trimmed) - len(trimmed.rstrip("\\"))) % 2:
                    raise Unsupported  # an escaped space right before the line break
                raw = trimmed
            chunks.append(_decode(raw, quote))
            blank = 0
            while True:
                self.i += 1
                if self.i >= len(self.content):
                    raise Unsupported
                line = self.content[self.i]
                if line:
                    break
                blank += 1
            if self.indent[self.i] <= parent:
                raise Unsupported
            if escaped_break:
                chunks.append("\n" * blank)
            else:
                chunks.append("\n" * blank if blank else " ")
            start, first = 0, False

    def block_scalar(self, header: str, parent: int) -> str:
        style, chomp = header[0], header[1:2]
        rest = header[2:] if chomp in ("-", "+") else header[1:]
        _after_value(rest)
        if chomp not in ("-", "+"):
            chomp = ""
        lines = self.lines
        i = self.i + 1
        leading = 0
        while i < len(lines) and not lines[i].strip(" "):
            leading = max(leading, len(lines[i]))
            i += 1
        if i >= len(lines):
            raise Unsupported
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        if indent <= parent or indent < 1 or leading > indent or (leading and style == ">"):
            raise Unsupported
        body: list[str] = [""] * (i - self.i - 1)
        while i < len(lines):
            line = lines[i]
            stripped = line.lstrip(" ")
            if not stripped:
                if len(line) > indent:
                    raise Unsupported
                body.append("")
            elif len(line) - len(stripped) < indent:
                break
            else:
                content = line[indent:]
                if style == ">" and content[0] == " ":
                    raise Unsupported  # folding around more-indented lines: PyYAML's job
                body.append(content)
            i += 1
        if i >= len(lines) and not self.final_newline:
            raise Unsupported  # chomping at the very end of the text: PyYAML's job
        self.i = i
        trailing = 0
        while body and not body[-1]:
            body.pop()
            trailing += 1
        text = "\n".join(body) if style == "|" else _fold(body)
        if chomp == "-":
            return text
        return text + "\n" + ("\n" * trailing if chomp == "+" else "")


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
    return first not in _INDICATORS or (first == "-" and text[1:2] not in ("", " "))


def _is_entry(text: str) -> bool:
    """True when a line's content starts a block sequence entry."""
    return text[:2] == "- " or text == "-"


def _quoted_key(text: str) -> tuple[str, str] | None:
    quote = text[0]
    body = (_SQ_BODY if quote == "'" else _DQ_BODY).match(text, 1)
    assert body is not None  # both patterns match the empty string
    end = body.end()
    if text[end : end + 1] != quote:
        return None  # a multi-line quoted scalar: keys are one line
    after = text[end + 1 :]
    if not (after == ":" or after.startswith(": ")):
        return None
    if end > 1024:
        raise Unsupported
    return _decode(body.group(), quote), after[1:]


def _decode(raw: str, quote: str) -> str:
    if quote == "'":
        return raw.replace("''", "'")
    return _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw


def _fold(lines: list[str]) -> str:
    parts = [lines[0]]
    blank = 0
    for line in lines[1:]:
        if not line:
            blank += 1
            continue
        parts.append("\n" * blank if blank else " ")
        parts.append(line)
        blank = 0
    return "".join(parts)


class _Flow:
    """A flow collection that opens and closes within one line."""

    def __init__(self, text: str) -> None:
        self.text = text

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
        if first == "[":
            return self.sequence(pos + 1)
        if first == "{":
            return self.mapping(pos + 1)
        return self.scalar(pos)

    def scalar(self, pos: int, *, key: bool = False) -> tuple[Any, int]:
        text = self.text
        first = text[pos]
        if first in "'\"":
            body = (_SQ_BODY if first == "'" else _DQ_BODY).match(text, pos + 1)
            assert body is not None
            if text[body.end() : body.end() + 1] != first:
                raise Unsupported
            return _decode(body.group(), first), body.end() + 1
        if first in _INDICATORS and (first != "-" or text[pos + 1 : pos + 2] in ("", " ")):
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
