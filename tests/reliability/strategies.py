"""Hypothesis strategies for hostile input: manifests, pipeline.yaml, lockfiles, block YAML.

Three families, because each finds different bugs: structured documents (plausible keys, random
values, dumped in several YAML styles), raw text and bytes (YAML punctuation, tabs, BOMs, NUL,
invalid UTF-8, long lines), and mutations of the real example files (delete, duplicate, retype or
swap a field; delete, duplicate, swap or damage a line), which stay close to valid and so reach
deeper into validation than pure noise does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from pipeline.yamlsrc import _Loader

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MANIFESTS = {p.name: p.read_text() for p in sorted((ROOT / "manifests").glob("*.yaml"))}
EXAMPLE_LOCK = (ROOT / "assets.lock").read_bytes()

# --- scalars and values -------------------------------------------------------------------------

_TRICKY_TEXT = [
    "", " ", "yes", "no", "on", "null", "~", "true", "False", "0x1F", "0o17", "012", "1_000",
    "1e3", ".inf", "-.inf", ".nan", "12:30", "2024-01-01", "<<", "- a", "a: b", "#c", "'q'",
    '"d"', "[x]", "{y: 1}", "|", ">", "&a", "*a", "!t", "? k", "{metal}", "{{", "}}", "{",
    "a/b", "../x", "..", "/abs", "C:\\x", "a\\b", "\t", "\x00", "\x7f", "\u2028", "\ufeff",
    "\U0001f600", "é", "\u202e", "x" * 300, "9" * 400,
]  # fmt: skip

text_values = st.one_of(
    st.sampled_from(_TRICKY_TEXT),
    st.text(max_size=20),
    st.text(alphabet="abc-_{}/. :#'\"\\0123456789", max_size=16),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**32 - 1, 2**32, 2**63, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(text_values, numbers, st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(text_values, st.integers(-3, 3)), inner, max_size=4),
    ),
    max_leaves=10,
)

# --- structured documents -------------------------------------------------------------------------

ITEM_KEYS = [
    "id", "prompt", "negative_prompt", "model", "lora", "seed", "width", "height", "outputs",
    "params", "matrix", "image", "strength", "then", "promt", "Seed", "collection", "defaults",
    "referenceImages", "caption", "reference_images",
]  # fmt: skip
TOP_KEYS = [
    "collection", "defaults", "items", "train", "item", "version", "id", "remote_collection",
]  # fmt: skip
# Paths a fuzzed manifest may name; the fuzzed repo holds the example's refs/ (tests/e2e.py REFS).
_PATHS = [
    "refs/potion-sketch.png", "refs/style/*.png", "refs/innkeeper/sheet-1.png", "refs/nope.png",
    "../x.png", "/etc/passwd", "refs", "refs/**/*.png", "", "manifests/ui-icons.yaml",
]  # fmt: skip
_STEPS = st.lists(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["photoroom-background-remover", "model_upscale-v3", "m", ""])},
        optional={
            "params": st.dictionaries(st.sampled_from(["scale", "image"]), scalars, max_size=2),
            "keep": st.one_of(st.booleans(), values),
            "name": st.sampled_from(["cut", "a/b", "", "cut"]),
        },
    ),
    max_size=3,
)
_TRAININGS = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["pixel", "Pixel", "a/b", ""])},
        optional={
            "images": st.one_of(st.sampled_from(_PATHS), st.lists(st.sampled_from(_PATHS))),
            "type": st.sampled_from(["flux.2-dev-lora", ""]),
            "preset": st.sampled_from(["style", "subject", "pop"]),
            "params": st.dictionaries(st.sampled_from(["rank", "maxTrainSteps"]), scalars),
        },
    ),
    max_size=2,
)


def _plausible(key: str) -> st.SearchStrategy[Any]:
    """Values that are right for `key` most of the time, and anything at all otherwise."""
    good: dict[str, st.SearchStrategy[Any]] = {
        "id": st.sampled_from(["a", "b", "sword", "{m}-x", "a/b", "..", ""]),
        "prompt": st.sampled_from(["a sword", "{m} shield", "p"]),
        "negative_prompt": st.sampled_from(["blurry", ""]),
        "model": st.sampled_from(["model_bfl-flux-2-dev", "m", ""]),
        "lora": st.sampled_from(
            ["model_x", ["model_x", {"model": "y", "scale": 0.5}], None, "pixel", "pixle"]
        ),
        "seed": st.integers(-2, 2**33),
        "width": st.sampled_from([64, 512, 0, -8, 513]),
        "height": st.sampled_from([64, 512, 0]),
        "outputs": st.integers(-1, 4),
        "params": st.dictionaries(st.sampled_from(["guidance", "steps"]), values, max_size=2),
        "matrix": st.dictionaries(st.sampled_from(["m", "n"]), st.lists(scalars, max_size=3)),
        "collection": st.sampled_from(["ui", "Tiles", "a/b", ""]),
        "image": st.sampled_from(_PATHS),
        "strength": st.sampled_from([0.6, 0, 1, 1.5, -1]),
        "referenceImages": st.one_of(st.sampled_from(_PATHS), st.lists(st.sampled_from(_PATHS))),
        "then": _STEPS,
        "caption": st.booleans(),
        "train": _TRAININGS,
        "remote_collection": st.booleans(),
    }
    base = good.get(key, values)
    return st.one_of(base, base, values)


@st.composite
def _mapping(draw: st.DrawFn, keys: list[str], max_size: int = 5) -> dict[Any, Any]:
    chosen = draw(st.lists(st.sampled_from(keys), max_size=max_size, unique=True))
    return {key: draw(_plausible(key)) for key in chosen}


@st.composite
def manifest_docs(draw: st.DrawFn) -> Any:
    """A manifest-shaped value: mostly a mapping with items, sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    top = ["collection", "defaults", "train", "version", "remote_collection"]
    doc: dict[Any, Any] = draw(_mapping(top, 3))
    if "defaults" in doc and draw(st.booleans()):
        doc["defaults"] = draw(_mapping(ITEM_KEYS, 4))
    if draw(st.integers(0, 5)):
        items = draw(st.lists(_mapping(ITEM_KEYS, 6), max_size=4))
        doc["items"] = [item if draw(st.integers(0, 7)) else draw(values) for item in items]
    return doc


SETTINGS_KEYS = [
    "manifests", "output", "lockfile", "backend", "concurrency", "job_timeout",
    "request_timeout", "budget", "Backend", "manifest",
]  # fmt: skip


@st.composite
def settings_docs(draw: st.DrawFn) -> Any:
    """A pipeline.yaml-shaped value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    good: dict[str, st.SearchStrategy[Any]] = {
        "manifests": st.one_of(
            st.sampled_from(["manifests/*.yaml", "m/**/*.yml", "/abs/*.yaml", "", "[", "C:/x"]),
            st.lists(st.sampled_from(["a/*.yaml", "", "**"]), max_size=3),
        ),
        "output": st.sampled_from(["output", "out/x", ""]),
        "lockfile": st.sampled_from(["assets.lock", "locks/a.lock", ""]),
        "backend": st.sampled_from(["auto", "local", "scenario", "cloud", "LOCAL"]),
        "concurrency": st.sampled_from([1, 8, 0, -1, 2**40]),
        "job_timeout": st.sampled_from([1, 0.5, 0, -1, float("inf"), float("nan")]),
        "request_timeout": st.sampled_from([60, 0, 1e308]),
    }
    keys = draw(st.lists(st.sampled_from(SETTINGS_KEYS), max_size=4, unique=True))
    return {key: draw(st.one_of(good.get(key, values), values)) for key in keys}


_DUMP_STYLES = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, None, True]),
        "width": st.sampled_from([20, 80, 10_000]),
        "indent": st.sampled_from([2, 4]),
        "allow_unicode": st.booleans(),
        "sort_keys": st.booleans(),
    }
)


@st.composite
def dumped(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> str:
    """A document written as YAML text in one of several styles."""
    return yaml.safe_dump(draw(docs), **draw(_DUMP_STYLES))


# --- raw text -------------------------------------------------------------------------------------

_FRAGMENTS = [
    "items:", "- id: a", "  prompt: p", "defaults:", "  seed: 1", "collection: c", "&x ", "*x",
    "<<: *x", "!!int ", "!!binary ", "!!python/object:os.system ", "? ", "- ", ": ", "{", "}",
    "[", "]", ",", "'", '"', "|", ">-", "#", "%YAML 1.1", "---", "...", "\t", "\ufeff", "\x00",
    "\x85", "\u2028", "\r\n", "\r", "\n", "  ", "é", "\U0001f600", "9" * 5000, "a" * 2000,
]  # fmt: skip


@st.composite
def raw_yaml_text(draw: st.DrawFn) -> str:
    """Text assembled from YAML punctuation, key lines and hostile characters."""
    parts = draw(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=8)), max_size=30))
    return "".join(parts)


_BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\x80"]


@st.composite
def damaged_bytes(draw: st.DrawFn, text: str) -> bytes:
    """`text` as UTF-8 with a few hostile bytes spliced in (invalid UTF-8, BOMs, NULs)."""
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(_BAD_BYTES))
    return bytes(data)


# --- mutations of real files ----------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_data(draw: st.DrawFn, original: Any, replacement: st.SearchStrategy[Any]) -> Any:
    """`original` with 1-3 edits: delete, duplicate, retype or swap a field."""
    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(data, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "duplicate", "retype", "swap"]))
        if action == "delete":
            del parent[last]
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif action == "duplicate":
            parent[f"{last}_copy" if draw(st.booleans()) else "items"] = copy.deepcopy(parent[last])
        elif action == "retype":
            parent[last] = draw(replacement)
        else:
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                other_parent = _get(data, other[:-1])
                parent[last], other_parent[other[-1]] = other_parent[other[-1]], parent[last]
    return data


@st.composite
def mutated_lines(draw: st.DrawFn, text: str) -> str:
    """`text` with 1-3 line edits: delete, duplicate (duplicate keys), swap, indent with a tab,
    re-indent, truncate, or a hostile character spliced in."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(
            st.sampled_from(["delete", "duplicate", "swap", "tab", "indent", "cut", "splice"])
        )
        if action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif action == "tab":
            lines[at] = "\t" + lines[at].lstrip(" ")
        elif action == "indent":
            lines[at] = " " * draw(st.integers(0, 7)) + lines[at].lstrip(" ")
        elif action == "cut":
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
            if draw(st.booleans()):
                del lines[at + 1 :]
        else:
            position = draw(st.integers(0, len(lines[at])))
            piece = draw(st.sampled_from(_FRAGMENTS))
            lines[at] = lines[at][:position] + piece + lines[at][position:]
    return "\n".join(lines)


def example_data(name: str) -> Any:
    """An example manifest as data, read with the project's own YAML rules."""
    return yaml.load(EXAMPLE_MANIFESTS[name], Loader=_Loader)


@st.composite
def manifest_mutants(draw: st.DrawFn) -> str:
    """An example manifest, damaged as data (then dumped) or as text."""
    name = draw(st.sampled_from(sorted(EXAMPLE_MANIFESTS)))
    if draw(st.booleans()):
        data = draw(mutated_data(example_data(name), _plausible("any")))
        return yaml.safe_dump(data, **draw(_DUMP_STYLES))
    return draw(mutated_lines(EXAMPLE_MANIFESTS[name]))


# --- lockfiles ------------------------------------------------------------------------------------

_SHA = "a" * 64


@st.composite
def lock_docs(draw: st.DrawFn) -> Any:
    """A lockfile-shaped JSON value with plausible keys and random values."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    record = st.fixed_dictionaries(
        {},
        optional={
            "file": st.sampled_from(["c/a.png", "../x.png", "/abs.png", "c\\a.png", "", "c//a"]),
            "sha256": st.sampled_from([_SHA, "A" * 64, "a" * 63, ""]),
            "size": st.sampled_from([0, 1, -1, 2**70]),
            "width": st.sampled_from([1, 0, 512]),
            "height": st.sampled_from([1, 0, 512]),
            "asset_id": st.sampled_from(["asset_1", None, 3]),
            "extra": values,
        },
    )
    entry = st.fixed_dictionaries(
        {},
        optional={
            "fingerprint": st.sampled_from([_SHA, "xyz", 1]),
            "request": st.one_of(st.dictionaries(text_values, values, max_size=3), values),
            "seed_derived": st.one_of(st.booleans(), values),
            "outputs": st.one_of(st.lists(st.one_of(record, values), max_size=2), values),
            "unknown": values,
        },
    )
    doc = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "version": st.one_of(st.sampled_from([1, 2, 0, -1, 1.0, True, "1"]), values),
                "items": st.one_of(st.dictionaries(text_values, entry, max_size=3), values),
                "uploads": st.one_of(st.dictionaries(text_values, text_values), values),
                "trainings": st.one_of(st.dictionaries(text_values, text_values), values),
                "extra": values,
            },
        )
    )
    return doc


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=True, default=str))


@st.composite
def lock_bytes_strategy(draw: st.DrawFn) -> bytes:
    """Lockfile bytes: structured JSON, the real lock mutated, raw bytes, or damaged JSON."""
    kind = draw(st.sampled_from(["structured", "mutant", "raw", "damaged"]))
    if kind == "structured":
        text = json.dumps(draw(lock_docs()), indent=draw(st.sampled_from([None, 2])))
        return text.encode()
    if kind == "mutant":
        data = json.loads(EXAMPLE_LOCK)
        data = draw(mutated_data(data, values.map(_json_safe)))
        return json.dumps(data, indent=2, sort_keys=True).encode()
    if kind == "raw":
        return draw(st.binary(max_size=200))
    text = EXAMPLE_LOCK.decode()
    cut = draw(st.integers(0, len(text)))
    choice = draw(st.sampled_from(["truncate", "splice", "bytes"]))
    if choice == "truncate":
        return text[:cut].encode()
    if choice == "splice":
        pieces = ['"', "{", "]", ",", "NaN", "<<<<<<< HEAD\n", "\x00", "1e999"]
        piece = draw(st.sampled_from(pieces))
        return (text[:cut] + piece + text[cut:]).encode()
    return draw(damaged_bytes(text[:2000]))


# --- block YAML for the fast reader ---------------------------------------------------------------

_PLAIN_WORDS = st.sampled_from(
    ["a", "b c", "x-y", "1", "-2", "0x1f", "1.5", ".5", "1e3", "true", "False", "null", "~",
     "yes", "12:30", "2024-01-01", "a#b", "a:b", "é", "{m}", "x_y", "0", "+1", "-.inf", ".NaN"]
)  # fmt: skip
_QUOTED = st.text(alphabet="ab '\"\\#:-{}é\t", max_size=8)


@st.composite
def _scalar_text(draw: st.DrawFn, indent: int) -> str:
    """One scalar written inline after `key:` or `- `, in a random style."""
    style = draw(st.sampled_from(["plain", "single", "double", "flow", "block", "empty"]))
    if style == "plain":
        return " " + draw(_PLAIN_WORDS)
    if style == "single":
        return " '" + draw(_QUOTED).replace("'", "''") + "'"
    if style == "double":
        body = draw(_QUOTED).replace("\\", "\\\\").replace('"', '\\"')
        return ' "' + body + '"'
    if style == "flow":
        words = draw(st.lists(_PLAIN_WORDS.filter(lambda w: ":" not in w), max_size=3))
        if draw(st.booleans()):
            return " [" + ", ".join(words) + "]"
        return " {" + ", ".join(f"k{i}: {w}" for i, w in enumerate(words)) + "}"
    if style == "block":
        header = draw(st.sampled_from(["|", "|-", "|+", ">", ">-", ">+"]))
        lines = draw(st.lists(st.sampled_from(["x", "y z", "", "  w"]), min_size=1, max_size=3))
        pad = " " * (indent + 2)
        return " " + header + "".join("\n" + (pad + line if line else "") for line in lines)
    return ""


@st.composite
def block_yaml(draw: st.DrawFn, depth: int = 0, indent: int = 0) -> str:
    """A block-style mapping or sequence with comments, blank lines and mixed scalar styles."""
    pad = " " * indent
    lines = []
    as_list = depth > 0 and draw(st.booleans())
    keys = draw(
        st.lists(st.sampled_from(["a", "b", "id", "seed", "x y", "'q'", '"d"', "1", "k-1"]),
                 min_size=1, max_size=4, unique=True)
    )  # fmt: skip
    step = draw(st.sampled_from([2, 4]))
    for key in keys:
        head = f"{pad}- " if as_list else f"{pad}{key}:"
        if draw(st.integers(0, 5)) == 0:
            lines.append(pad + "# note")
        if draw(st.integers(0, 6)) == 0:
            lines.append("")
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            child = draw(block_yaml(depth + 1, indent + step))
            lines.append(head.rstrip() if as_list else head)
            lines.append(child)
        else:
            value = draw(_scalar_text(indent))
            if as_list and not value:
                value = " ~"
            comment = " # c" if draw(st.integers(0, 4)) == 0 and "\n" not in value else ""
            lines.append((head.rstrip(" ") if as_list else head) + value + comment)
    return "\n".join(lines)
