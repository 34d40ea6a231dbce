"""The fast YAML reader must read every document it accepts exactly as PyYAML does (same resolver),
and must refuse (raise Unsupported) whatever PyYAML finds invalid."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import yamlfast
from pipeline.yamlsrc import _Loader
from tests.helpers import same


def _pyyaml(text: str) -> tuple[bool, Any]:
    try:
        return True, yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return False, None


def _check(text: str) -> bool:
    """Assert the contract on one text; True when the fast reader took it."""
    ok, expected = _pyyaml(text)
    try:
        got = yamlfast.load(text)
    except yamlfast.Unsupported:
        return False
    assert ok, f"fast reader accepted YAML that PyYAML rejects: {text!r}"
    assert same(got, expected), f"{text!r}: fast {got!r} != PyYAML {expected!r}"
    return True


_words = st.text(
    alphabet=st.sampled_from([*"ab xyz-_:#'\"{}[],.?!&*|>%@`\\/0123456789eE+~", "é", "\u2028"]),
    max_size=12,
)
_special_words = st.sampled_from(
    ["yes", "no", "on", "off", "true", "False", "null", "~", "", "12:30", "2024-01-01", "0x1F",
     "0o17", "012", "1_000", "1e3", "1.5", ".5", "-.inf", ".NaN", "+7", "-0", "<<", "=", "- a",
     "a: b", "a #b", "#c", "'q'", '"d"', "[x]", "{y: 1}", "|", ">", "&a", "*a", "!t", "? k"]
)  # fmt: skip
_scalars = st.one_of(
    _words, _special_words, st.integers(-(2**40), 2**40), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
_data = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_words, _special_words), children, max_size=4),
    ),
    max_leaves=12,
)
_dump_options = st.fixed_dictionaries(
    {
        "default_flow_style": st.sampled_from([False, None, True]),
        "width": st.sampled_from([12, 40, 80, 1000]),
        "indent": st.sampled_from([2, 3, 4]),
        "allow_unicode": st.booleans(),
        "default_style": st.sampled_from([None, None, None, '"', "'", "|", ">"]),
    }
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(_words, _data, min_size=1, max_size=4), _dump_options)
def test_reads_dumped_documents_like_pyyaml(data: dict[str, Any], options: dict[str, Any]) -> None:
    _check(yaml.safe_dump(data, sort_keys=False, **options))


_INSERTS = [
    ":", ": ", " ", "  ", "-", "- ", "#", " #", "'", '"', "\n", "\n  ", "[", "]", "{", "}", ",",
    "|", ">", "&", "*", "!", "?", "\\", "x", "", "\t", "\r", "---", "<<",
]  # fmt: skip
_edits = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(_INSERTS), st.integers(0, 2)),
    min_size=1,
    max_size=3,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(_words, _data, min_size=1, max_size=3), _dump_options, _edits)
def test_mutated_documents_are_read_like_pyyaml_or_refused(
    data: dict[str, Any], options: dict[str, Any], edits: list[tuple[int, str, int]]
) -> None:
    text = yaml.safe_dump(data, sort_keys=False, **options)
    for position, insert, delete in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + delete :]
    _check(text)


_MANIFEST_LINES = st.lists(
    st.sampled_from(
        [
            "collection: icons", "defaults:", "  model: m", "  params: {guidance: 3.5, steps: 28}",
            "  lora: [a, b]", "items:", "  - id: a", "    prompt: a sword", "    seed: 42",
            "  - id: \"{metal}-shield\"", "    matrix: {metal: [wooden, iron]}",
            "    prompt: >-", "      folded", "      text", "", "    prompt: |", "      literal",
            "      block", "    # a comment", "- id: top", "  prompt: 'it''s'", "    width: 512",
            "    negative_prompt: \"blurry,\\n \\u00e9\"", "      continued plain", "   odd: 1",
            "    params:", "      guidance: 3.5", "    lora:", "    - x", "    -", "      model: y",
            "      scale: 0.5", "  -", "    id: b", "key: value # trailing", "k: 'multi",
            "   line'", "q: \"esc \\", "   aped\"", "empty:", "list: []", "map: {}",
        ]
    ),
    max_size=14,
)  # fmt: skip


@settings(max_examples=800, deadline=None)
@given(_MANIFEST_LINES)
@example(["items:", "  - id: a", "    prompt: >-", "      folded", "", "      text"])
@example(["k: 'multi", "   line'"])
def test_manifest_shaped_lines_are_read_like_pyyaml_or_refused(lines: list[str]) -> None:
    _check("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "text",
    [
        "collection: ui\ndefaults:\n  model: m\n  params: {guidance: 3.5}\nitems:\n"
        "  - id: a\n    prompt: a sword, top-down\n    seed: 42\n"
        "  - id: \"{m}-shield\"\n    matrix: {m: [wood, iron]}\n    prompt: '{m} shield'\n",
        "items:\n- id: on\n  prompt: yes\n  width: 0x10\n",
        "a: |\n  line one\n  line two\n\nb: >-\n  folded\n  text\n",
        "a: long plain\n  continued here\n\n  and a paragraph\nb: 1\n",
        'a: "x\\ty \\u00e9 \\\n  z"\n',
        "a: [1, -2, 3.5, ~, true, 'x', \"y\"]\nb: {k: v, 'q': [1]}\n",
        "a:\n- 1\n- 2\nb:\n  - c: 1\n    d: 2\n",
        "# only a comment\n",
        "",
        "a: 1\r\nb: 2\r\n",
    ],
)
def test_takes_the_common_forms(text: str) -> None:
    assert _check(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "--- \na: 1\n",
        "a: 1\na: 2\n",
        "a:\tb\n",
        "<<: {a: 1}\n",
        "a: [1,\n  2]\n",
        "? a\n: b\n",
        "a: b: c\n",
        "- a\nb: c\n",
    ],
)
def test_leaves_the_rest_to_pyyaml(text: str) -> None:
    with pytest.raises(yamlfast.Unsupported):
        yamlfast.load(text)
    _check(text)


def test_scalars_follow_yaml_1_2_core_rather_than_1_1() -> None:
    words = ["yes", "no", "on", "off", "12:30", "2024-01-01", "012", "0x1F", "1_000", "1e3", ".inf"]
    text = "".join(f"- {word}\n" for word in words)
    expected = ["yes", "no", "on", "off", "12:30", "2024-01-01", "012", 31, 1000, 1e3, math.inf]
    assert yamlfast.load(text) == expected
    assert _check(text)


# Documents in the style people write manifests in, built directly as text: the fast reader must
# take every one of them (not only agree when it does), so the fast path is what gets tested.
_letters = "abcdefghijklmnopqrstuvwxyzABCXYZ"
_plain_text = st.builds(
    lambda first, rest: (first + rest).rstrip(" "),
    st.sampled_from([*_letters, "é", "日"]),
    st.text(alphabet=_letters + "0123456789 ,.()/_-'\"!?%é", max_size=20).filter(
        lambda s: "  " not in s
    ),
)
_multiline = st.builds(
    lambda first, middle, last: "\n".join([first, *middle, last]),
    _plain_text,
    st.lists(st.one_of(_plain_text, st.just(""), st.just("  indented")), max_size=3),
    _plain_text,
)
_text = st.one_of(
    _plain_text, _multiline, st.text(alphabet=_letters + " :#'\"\\{}[],-é\u00e9", max_size=12)
)
_numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6).map(lambda f: round(f, 3)))
_keys = st.builds(
    str.__add__, st.sampled_from(_letters), st.text(alphabet=_letters + "_-", max_size=7)
)


def _scalar_text(draw: st.DrawFn, value: Any, column: int) -> list[str]:
    """Lines (the first continues the current line) writing the scalar `value` at `column`."""
    if not isinstance(value, str):
        return [yaml.safe_dump(value, default_flow_style=True).split("\n")[0]]
    if "\n" in value and value.strip():
        body = [(" " * (column + 2) + line) if line else "" for line in value.split("\n")]
        return ["|-", *body]
    style = draw(st.sampled_from(["plain", "plain", "single", "double", "wrapped"]))
    plain_ok = value == value.strip() and _pyyaml(f"k: {value}\n") == (True, {"k": value})
    if style == "plain" and plain_ok and not any(c in value for c in ":#'\"{}[],\\"):
        return [value]
    if style == "wrapped" and plain_ok and " " in value.strip() and value.isprintable():
        words = value.split(" ")
        if not any(c in value for c in ":#{}[],\\") and all(
            word[:1] not in "-?'\"!%&*|>@`" for word in words
        ):
            return [words[0], *(" " * (column + 2) + word for word in words[1:] if word)]
    if style == "double" or "\n" in value or not value.isprintable():
        return [yaml.safe_dump(value, default_style='"', width=10**6).split("\n")[0]]
    return ["'" + value.replace("'", "''") + "'"]


@st.composite
def _block(draw: st.DrawFn, depth: int = 0, column: int = 0) -> tuple[list[str], Any]:
    """(lines, expected value) of a block mapping or sequence at `column`."""
    pad = " " * column
    lines: list[str] = []
    if depth < 3 and draw(st.booleans()):
        count = draw(st.integers(1, 3))
        expected_list: list[Any] = []
        for _ in range(count):
            if draw(st.booleans()):
                inner, value = draw(_block(depth + 1, column + 2))
                lines.append(pad + "- " + inner[0].lstrip(" "))
                lines.extend(inner[1:])
            else:
                value = draw(st.one_of(_text, _numbers, st.booleans(), st.none()))
                first, *more = _scalar_text(draw, value, column)
                lines.append(pad + "- " + first)
                lines.extend(more)
            expected_list.append(value)
        return lines, expected_list
    expected: dict[str, Any] = {}
    for key in draw(st.lists(_keys, min_size=1, max_size=4, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            lines.append(pad + "# " + draw(_text).replace("\n", " "))
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            inner, value = draw(_block(depth + 1, column + draw(st.sampled_from([2, 4]))))
            lines.append(f"{pad}{key}:")
            lines.extend(inner)
        elif draw(st.integers(0, 4)) == 0:
            values = draw(st.lists(st.one_of(_keys, st.integers(-99, 99)), max_size=3))
            lines.append(f"{pad}{key}: [{', '.join(str(v) for v in values)}]")
            value = values
        else:
            value = draw(st.one_of(_text, _numbers, st.booleans(), st.none()))
            first, *more = _scalar_text(draw, value, column)
            comment = " # note" if draw(st.integers(0, 6)) == 0 and not more else ""
            lines.append(f"{pad}{key}: {first}{comment}".rstrip(" "))
            lines.extend(more)
        expected[key] = value
    return lines, expected


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_block())
def test_takes_every_document_written_in_the_usual_style(document: tuple[list[str], Any]) -> None:
    lines, expected = document
    text = "\n".join(lines) + "\n"
    assert _check(text), f"refused: {text!r}"
    assert same(yamlfast.load(text), expected) or _pyyaml(text)[1] != expected


def test_deep_nesting_is_left_to_pyyaml_instead_of_exhausting_the_stack() -> None:
    flow = "a: " + "[" * 300 + "]" * 300 + "\n"
    block = "".join(" " * depth + "k:\n" for depth in range(400))
    for text in (flow, block):
        with pytest.raises(yamlfast.Unsupported):
            yamlfast.load(text)
        _check(text)
