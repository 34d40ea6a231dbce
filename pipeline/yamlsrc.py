"""User YAML files in, plain data and located problems out; shared by manifests and settings.

Reading is position-blind and fast (yamlfast, else PyYAML's C loader, duplicate keys noted). Only
when something is wrong is the text composed into nodes with marks, to place a document path
like ("items", 3, "seed") at file:line:column; pydantic's errors become our words here, once.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipeline import yamlfast
from pipeline.errors import Location, Problem
from pipeline.yamlinline import RESOLVERS

Key = Any  # one step of a document path: a mapping key (usually str) or a list index (int)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SourceError(Exception):
    """The file cannot be read as YAML at all; `problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Loader(yaml.CSafeLoader):
    """The C loader with yamlinline's scalar rules; notes duplicate keys rather than drop them."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (PyYAML's own registry)

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys = False

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, LookupError, TypeError, ArithmeticError) as err:
            # PyYAML's own constructors raise these for explicit tags like `!!int "x"`.
            problem = f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from err

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        pairs = list(node.value)
        mapping = super().construct_mapping(node, deep)
        if len(mapping) != len(pairs):  # fewer keys than written: a duplicate, or a merge
            keys = [self.construct_object(k) for k, _ in pairs if k.tag != _MERGE_TAG]
            if len(set(keys)) != len(keys):
                self.duplicate_keys = True
        return mapping


for _tag, _pattern, _first in RESOLVERS:
    _Loader.add_implicit_resolver(_tag, _pattern, _first)


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem found in plain data, waiting for its position: `path` inside the document."""

    path: tuple[Key, ...]
    message: str
    at_key: bool = False  # point at the key itself (unknown keys), not at its value
    also: tuple[Key, ...] | None = None  # another place in the same file the message refers to
    also_note: str = ""


class Source:
    """One YAML file's text; composes it into nodes with marks the first time a place is asked."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._root: Node | None = None
        self._composed = False

    def __copy__(self) -> Source:
        return self  # shared, never changed: copying an Item (or asdict) must not copy a file

    def __deepcopy__(self, memo: dict[int, Any]) -> Source:
        return self

    @classmethod
    def read(cls, path: Path, name: str) -> Source:
        """The file at `path`, shown as `name`; SourceError when it cannot be read as text."""
        try:
            data = path.read_bytes()
        except FileNotFoundError as err:
            raise SourceError(Problem(Location(name), "file not found")) from err
        except OSError as err:
            raise SourceError(Problem(Location(name), f"cannot read: {err.strerror}")) from err
        try:
            return cls(name, data.decode("utf-8-sig"))
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
            message = f"not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
            raise SourceError(Problem(Location(name, line, column), message)) from err

    def parse(self) -> tuple[Any, list[Problem]]:
        """The document's data, and its duplicate keys; raises SourceError for invalid YAML."""
        try:
            return yamlfast.load(self.text), []
        except yamlfast.Unsupported:
            pass
        loader = _Loader(self.text)
        try:
            data = loader.get_single_data()
        except yaml.MarkedYAMLError as err:
            raise SourceError(self._yaml_problem(err)) from err
        except yaml.reader.ReaderError as err:
            raise SourceError(self._reader_problem(err)) from err
        except yaml.YAMLError as err:
            raise SourceError(Problem(Location(self.name), f"invalid YAML: {err}")) from err
        finally:
            loader.dispose()
        return data, self._duplicate_keys() if loader.duplicate_keys else []

    def problems(self, issues: Sequence[Issue]) -> list[Problem]:
        """Each issue placed at its line and column."""
        found = []
        for issue in issues:
            message = issue.message
            if issue.also is not None:
                other = self.locate(issue.also)
                message += f" (also at {self.name}:{other.line}:{other.column}{issue.also_note})"
            found.append(Problem(self.locate(issue.path, key=issue.at_key), message))
        return found

    def locate(self, path: Sequence[Key], *, key: bool = False) -> Location:
        """Where `path` is, or the nearest enclosing node that exists; `key` for the key's place."""
        return self._walk(path, key=key)[0]

    def find(self, path: Sequence[Key]) -> Location | None:
        """Where `path` is, or None when the document does not have it."""
        location, complete = self._walk(path, key=False)
        return location if complete else None

    def _node_tree(self) -> Node | None:
        if not self._composed:
            self._root = yaml.compose(self.text, Loader=_Loader)
            self._composed = True
        return self._root

    def _walk(self, path: Sequence[Key], *, key: bool) -> tuple[Location, bool]:
        node = self._node_tree()
        place, rendered, complete = node, "", node is not None
        for number, step in enumerate(path, 1):
            found: tuple[Node | None, Node] | None = None
            if complete and isinstance(node, MappingNode):
                found = _lookup(node, step)
            elif complete and isinstance(node, SequenceNode) and _is_index(step):
                found = (None, node.value[step]) if step < len(node.value) else None
            in_mapping = found[0] is not None if found else not _is_index(step)
            rendered = _join(rendered, step, in_mapping)
            if found is None:
                complete = False
                continue
            key_node, node = found
            place = key_node if key and key_node is not None and number == len(path) else node
        if place is None:
            return Location(self.name, 1, 1, rendered), False
        mark = place.start_mark
        return Location(self.name, mark.line + 1, mark.column + 1, rendered), complete

    def _duplicate_keys(self) -> list[Problem]:
        root = self._node_tree()
        problems = []
        stack: list[tuple[Node, str]] = [(root, "")] if root is not None else []
        visited: set[int] = set()
        while stack:
            node, path = stack.pop()
            if id(node) in visited:
                continue
            visited.add(id(node))
            if isinstance(node, SequenceNode):
                stack.extend((child, _join(path, i, False)) for i, child in enumerate(node.value))
            elif isinstance(node, MappingNode):
                seen: dict[tuple[str, str], Node] = {}
                for key_node, value in node.value:
                    name = key_node.value if isinstance(key_node, ScalarNode) else "?"
                    stack.append((value, _join(path, name, True)))
                    if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                        continue
                    first = seen.setdefault((key_node.tag, name), key_node)
                    if first is not key_node:
                        mark, here = first.start_mark, key_node.start_mark
                        where = f"{self.name}:{mark.line + 1}:{mark.column + 1}"
                        place = _join(path, name, True)
                        location = Location(self.name, here.line + 1, here.column + 1, place)
                        message = f"duplicate key {name!r} (also at {where})"
                        problems.append(Problem(location, message))
        return problems

    def _yaml_problem(self, err: yaml.MarkedYAMLError) -> Problem:
        mark = err.problem_mark or err.context_mark
        problem, context = err.problem or "", err.context or ""
        if problem.startswith("but ") and context:  # "expected X" + "but found Y": one sentence
            message = f"invalid YAML: {context}, {problem}"
        else:
            message = f"invalid YAML: {problem or context}"
            if problem and context and err.context_mark is not None:
                start = err.context_mark
                message += f" ({context} at line {start.line + 1}, column {start.column + 1})"
        if mark is None:
            return Problem(Location(self.name), message)
        lines = self.text.split("\n", mark.line + 1)
        if mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
            message += "; YAML indents with spaces, not tabs"
        return Problem(Location(self.name, mark.line + 1, mark.column + 1), message)

    def _reader_problem(self, err: yaml.reader.ReaderError) -> Problem:
        position = max(0, min(err.position, len(self.text)))
        line = self.text.count("\n", 0, position) + 1
        column = position - (self.text.rfind("\n", 0, position) + 1) + 1
        character = chr(err.character) if isinstance(err.character, int) else err.character
        message = f"invalid YAML: {err.reason} (found {character!r})"
        return Problem(Location(self.name, line, column), message)


def render_path(path: Sequence[Key]) -> str:
    """A document path as users read it, e.g. items[3].params.guidance (without the document)."""
    text = ""
    for step in path:
        text = _join(text, step, not _is_index(step))
    return text


def parse_path(text: str) -> tuple[Key, ...]:
    """The inverse of render_path: "lora[1].scale" -> ("lora", 1, "scale")."""
    steps: list[Key] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        if part.startswith("["):
            steps.append(int(part[1:-1]))
        else:
            steps.append(part)
    return tuple(steps)


def _join(path: str, step: Key, in_mapping: bool) -> str:
    if not in_mapping:
        return f"{path}[{step}]"
    return f"{path}.{step}" if path else str(step)


def _is_index(step: Key) -> bool:
    return isinstance(step, int) and not isinstance(step, bool) and step >= 0


def _lookup(
    node: MappingNode, step: Key, seen: frozenset[int] = frozenset()
) -> tuple[Node, Node] | None:
    """(key node, value node) for `step`, the last written winning, then merged mappings."""
    text = step if isinstance(step, str) else str(step)
    merges: list[Node] = []
    for key_node, value in reversed(node.value):
        if key_node.tag == _MERGE_TAG:
            merges[:0] = value.value if isinstance(value, SequenceNode) else [value]
        elif isinstance(key_node, ScalarNode) and key_node.value == text:
            return key_node, value
    seen |= {id(node)}  # an alias can merge a mapping into itself
    for merged in merges:
        if isinstance(merged, MappingNode) and id(merged) not in seen:
            found = _lookup(merged, step, seen)
            if found is not None:
                return found
    return None


def describe(value: object) -> str:
    """A short account of a value the user wrote, for "expected X, got Y"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"the number {value}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for a close match, or the options when none is close."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(options)})"


def validation_issues(
    error: ValidationError,
    *,
    expected: Callable[[tuple[Key, ...]], str],
    unknown_key: Callable[[tuple[Key, ...], Key], str],
) -> list[Issue]:
    """pydantic's errors in our words: one issue per place, "expected X, got Y"."""
    issues = []
    seen: set[tuple[Key, ...]] = set()
    for entry in error.errors(include_url=False):
        loc, kind, value = tuple(entry["loc"]), entry["type"], entry.get("input")
        if loc and loc[-1] == "[key]":
            loc, kind = loc[:-1], "invalid_key"
        if loc in seen:
            continue
        seen.add(loc)
        if kind == "missing":
            issues.append(Issue(loc[:-1], f"missing required key {loc[-1]!r}"))
        elif kind == "extra_forbidden":
            issues.append(Issue(loc, unknown_key(loc[:-1], loc[-1]), at_key=True))
        elif kind == "invalid_key":
            issues.append(Issue(loc, f"keys must be text, got {describe(value)}", at_key=True))
        elif kind == "recursion_loop":
            issues.append(Issue(loc, "a value that contains itself (through an alias)"))
        else:
            want = expected(loc)
            message = f"expected {want}, got {describe(value)}"
            if "text" in want and isinstance(value, int | float):
                message += "; put it in quotes to make it text"
            issues.append(Issue(loc, message))
    return issues


MAX_DEPTH = 100  # levels of nesting a passthrough value may have
MAX_NODES = 100_000  # values it may hold once its aliases are expanded (a YAML bomb has billions)


def json_problem(root: Any) -> tuple[tuple[Key, ...], str] | None:
    """The first value JSON cannot carry, and why; iterative, so depth and aliases are safe.

    Besides types: nesting deeper than MAX_DEPTH, and more than MAX_NODES values once aliases
    are expanded (the size the request would have on the wire), are refused.
    """
    stack: list[tuple[Any, tuple[Key, ...], bool]] = [(root, (), False)]
    active: set[int] = set()
    sizes: dict[int, int] = {}  # expanded size of each container already seen
    while stack:
        value, path, leaving = stack.pop()
        if leaving:
            active.discard(id(value))
            children = value.values() if isinstance(value, dict) else value
            size = 1 + sum(sizes.get(id(child), 1) for child in children)
            if size > MAX_NODES:
                return path, f"too large: more than {MAX_NODES:,} values once aliases are expanded"
            sizes[id(value)] = size
        elif isinstance(value, dict | list):
            if id(value) in sizes:
                continue
            if id(value) in active:
                return path, "a value that contains itself (through an alias)"
            if len(path) > MAX_DEPTH:
                return path, f"nested too deep (more than {MAX_DEPTH} levels)"
            active.add(id(value))
            stack.append((value, path, True))
            pairs = list(value.items() if isinstance(value, dict) else enumerate(value))
            for key, child in reversed(pairs):
                if isinstance(value, dict) and not isinstance(key, str):
                    return path, f"keys must be text, got {describe(key)}"
                stack.append((child, (*path, key), False))
        elif isinstance(value, float) and not math.isfinite(value):
            return path, f"expected a finite number, got {describe(value)}"
        elif not (value is None or isinstance(value, str | int | float)):
            expected = "text, a number, true/false, null, a list or a mapping"
            return path, f"expected a JSON value ({expected}), got {describe(value)}"
    return None
