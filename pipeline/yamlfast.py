"""A fast reader for block-style YAML; PyYAML, even on libyaml, takes ~0.5 s per 10,000 items.

Reads the common subset line by line (block mappings and sequences, block and multi-line scalars,
comments; within a line, yamlinline) and raises `Unsupported` for anything else: PyYAML reads
that. It must never read a document differently from PyYAML: tests compare the two at random.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pipeline.yamlinline import (
    DQ_BODY,
    INDICATORS,
    MAYBE_NOT_TEXT,
    SQ_BODY,
    Unsupported,
    after_value,
    decode,
    flow_collection,
    plain_scalar,
    quoted_key,
)

__all__ = ["Unsupported", "load"]

# Characters PyYAML's reader rejects or reads as line breaks, and tabs and BOMs: left to PyYAML.
_SPECIAL = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_MARKERS = ("\n---", "\n...", "\n%")  # document markers and directives
_DEEPEST = 120  # indentation past which PyYAML reads the document (Python's recursion limit)


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
        if parent > _DEEPEST:
            raise Unsupported  # every level indents further: this bounds the recursion
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
                    text[0] not in INDICATORS
                    and text[-1] not in " :"
                    and " #" not in text
                    and ": " not in text
                    and following < end
                    and content[following]
                    and (indent[following] <= n or content[following][0] == "#")
                ):
                    self.i = following
                    result[key] = text if text[0] not in MAYBE_NOT_TEXT else plain_scalar(text)
                else:
                    result[key] = self.inline(text, n)
            i = self.i
            quick = i < end and content[i] and content[i][0] != "#"
            if (indent[i] if quick else self.skip()) != n:
                return result
            text = content[self.i]
            colon = text.find(": ")
            if (  # the usual key: plain text, no comment, no space before the colon
                0 < colon <= 1024
                and text[0] not in INDICATORS
                and text[0] not in MAYBE_NOT_TEXT
                and text[colon - 1] != " "
                and " #" not in text[:colon]
            ):
                key, rest = text[:colon], text[colon + 1 :]
                continue
            split = self.split_key(text)
            if split is None:
                raise Unsupported
            key, rest = split

    def split_key(self, text: str) -> tuple[Any, str] | None:
        """(key, text after the colon) when `text` starts with `key:`; None if it does not."""
        first = text[0]
        if first in INDICATORS:
            if first in "[{|>":
                return None  # flow collections and block scalars are values here, never keys
            if first in "'\"":
                return quoted_key(text)
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
        if key_text[0] not in MAYBE_NOT_TEXT:
            return key_text, text[colon + 1 :]
        key = plain_scalar(key_text)
        if isinstance(key, float) and math.isnan(key):
            raise Unsupported  # nan != nan: duplicates would go unseen
        return key, text[colon + 1 :]

    def inline(self, text: str, parent: int) -> Any:
        """A value that starts within the current line (at `text`); may continue below."""
        first = text[0]
        if first in INDICATORS:
            if first in "|>":
                return self.block_scalar(text, parent)
            if first in "[{":
                self.i += 1
                return flow_collection(text)
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
            if following[0] in INDICATORS or ": " in following or " #" in following:
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
        pattern = SQ_BODY if quote == "'" else DQ_BODY
        chunks: list[str] = []
        line, start, first = text, 1, True
        while True:
            body = pattern.match(line, start)
            assert body is not None
            raw, after = body.group(), line[body.end() :]
            if not first:
                raw = raw.lstrip(" ")
            if after[:1] == quote:
                chunks.append(decode(raw, quote))
                after_value(after[1:])
                self.i += 1
                return "".join(chunks)
            escaped_break = after == "\\"
            if not escaped_break:
                trimmed = raw.rstrip(" ")
                if quote == '"' and (len(trimmed) - len(trimmed.rstrip("\\"))) % 2:
                    raise Unsupported  # an escaped space right before the line break
                raw = trimmed
            chunks.append(decode(raw, quote))
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
        after_value(rest)
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
        blank_first = i > self.i + 1  # empty lines before the first line of text
        if indent <= parent or indent < 1 or leading > indent or (blank_first and style == ">"):
            raise Unsupported  # folding that starts with empty lines: PyYAML's job
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


def _is_entry(text: str) -> bool:
    """True when a line's content starts a block sequence entry."""
    return text[:2] == "- " or text == "-"


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
