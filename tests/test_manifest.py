"""Manifests: loading, strict validation with located messages, defaults, matrix, ids."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidInput, Location
from pipeline.manifest import Collection, Item, Lora, Settings, derive_seed, load_manifests
from tests.helpers import png_bytes

EXAMPLE = """\
collection: ui-icons            # folder name under output/
defaults:
  model: model_bfl-flux-2-dev
  lora: model_pixel-style
  width: 512
  height: 512
  outputs: 2
  params: {guidance: 3.5}
items:
  - id: iron-sword
    prompt: iron sword icon, game item, top-down view
    seed: 42
  - id: "{metal}-shield"
    matrix: {metal: [wooden, iron, golden]}
    prompt: "{metal} shield icon, game item"
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / "manifests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(root: Path) -> list[Collection]:
    return load_manifests(root, Settings())


def problems(root: Path, *paths: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_manifests(root, Settings(), paths)
    return [str(problem) for problem in caught.value.problems]


def one(root: Path, text: str, name: str = "x.yaml") -> list[Item]:
    write(root, name, text)
    (collection,) = load(root)
    return list(collection.items)


def test_loads_the_design_example(tmp_path: Path) -> None:
    write(tmp_path, "ui-icons.yaml", EXAMPLE)
    (collection,) = load(tmp_path)
    assert (collection.name, collection.file) == ("ui-icons", "manifests/ui-icons.yaml")
    sword, *shields = collection.items
    assert sword == Item(
        collection="ui-icons",
        id="iron-sword",
        model="model_bfl-flux-2-dev",
        prompt="iron sword icon, game item, top-down view",
        negative_prompt=None,
        loras=(Lora("model_pixel-style"),),
        seed=42,
        seed_derived=False,
        width=512,
        height=512,
        outputs=2,
        params={"guidance": 3.5},
        file="manifests/ui-icons.yaml",
        index=0,
    )
    assert sword.key == "ui-icons/iron-sword"
    assert [(s.id, s.prompt, s.index) for s in shields] == [
        ("wooden-shield", "wooden shield icon, game item", 1),
        ("iron-shield", "iron shield icon, game item", 1),
        ("golden-shield", "golden shield icon, game item", 1),
    ]
    assert all(s.seed == derive_seed("ui-icons", s.id) and s.seed_derived for s in shields)


def test_collection_defaults_to_the_file_stem_and_outputs_to_one(tmp_path: Path) -> None:
    (item,) = one(tmp_path, "items:\n  - {id: a, prompt: p, model: m}\n", "props.yaml")
    assert (item.collection, item.outputs, item.loras, item.params) == ("props", 1, (), {})
    assert (item.width, item.height, item.negative_prompt) == (None, None, None)


def test_values_follow_yaml_1_2_so_on_and_no_stay_text(tmp_path: Path) -> None:
    (item,) = one(tmp_path, "defaults: {model: m}\nitems:\n  - id: on\n    prompt: no\n")
    assert (item.id, item.prompt) == ("on", "no")


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = """\
base: &base {model: m, width: 64}
items:
  - {<<: *base, id: a, prompt: p}
"""
    write(tmp_path, "x.yaml", text)
    assert problems(tmp_path) == [
        "manifests/x.yaml:1:1: base: unknown key 'base' (expected one of: collection, "
        "defaults, items, train, remote_collection)"
    ]
    text = "defaults: &d {model: m, width: 64}\nitems:\n  - {<<: *d, id: a, prompt: p}\n"
    (item,) = one(tmp_path, text)
    assert (item.model, item.width) == ("m", 64)
    assert item.locate("width") == Location("manifests/x.yaml", 1, 32, "items[0].width")


# --- strictness: every message exact, with file:line:column and the document path ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "items:\n  - id: a\n    prompt: [unclosed\n",
            "manifests/x.yaml:4:1: invalid YAML: did not find expected ',' or ']' "
            "(while parsing a flow sequence at line 3, column 13)",
        ),
        (
            "items:\n  - id: a\n   prompt: p\n",
            "manifests/x.yaml:3:4: invalid YAML: did not find expected '-' indicator (while "
            "parsing a block collection at line 2, column 3)",
        ),
        ("items:\n\t- id: a\n", "manifests/x.yaml:2:1: invalid YAML: found character that "
         "cannot start any token (while scanning for the next token at line 2, column 1); YAML "
         "indents with spaces, not tabs"),
        ("", "manifests/x.yaml:1:1: the file is empty; a manifest needs 'items', a list of items"),
        ("# nothing\n", "manifests/x.yaml:1:1: the file is empty; a manifest needs 'items', "
         "a list of items"),
        ("- id: a\n", "manifests/x.yaml:1:1: expected a mapping with 'items' at the top level, "
         "got a list"),
        ("items: []\n", "manifests/x.yaml:1:8: items: expected a non-empty list of items, "
         "got an empty list"),
        ("collection: x\n", "manifests/x.yaml:1:1: missing required key 'items'"),
        ("items:\n  - prompt: p\n    model: m\n", "manifests/x.yaml:2:5: items[0]: missing "
         "required key 'id'"),
        ("items: [7]\n", "manifests/x.yaml:1:9: items[0]: expected an item (a mapping with "
         "'id' and 'prompt'), got 7"),
        ("a: 1\n---\nb: 2\n", "manifests/x.yaml:2:1: invalid YAML: expected a single document "
         "in the stream, but found another document"),
    ],
)  # fmt: skip
def test_file_level_problems(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "x.yaml", text)
    assert problems(tmp_path) == [expected]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("promt: p", "4:5: items[0].promt: unknown key 'promt' (did you mean 'prompt'?)"),
        ("colour: red", "4:5: items[0].colour: unknown key 'colour' (expected one of: id, model, "
         "prompt, negative_prompt, lora, seed, width, height, outputs, image, strength, "
         "referenceImages, then, caption, params, matrix)"),
        ("width: big", "4:12: items[0].width: expected a positive integer, got 'big'"),
        ("width: true", "4:12: items[0].width: expected a positive integer, got a boolean (true)"),
        ("width: 0", "4:12: items[0].width: expected a positive integer, got 0"),
        ("height: 51.5", "4:13: items[0].height: expected a positive integer, got 51.5"),
        ("outputs: -1", "4:14: items[0].outputs: expected a positive integer, got -1"),
        ("seed: -1", "4:11: items[0].seed: expected an integer from 0 to 4294967295, got -1"),
        ("seed: 4294967296", "4:11: items[0].seed: expected an integer from 0 to 4294967295, "
         "got 4294967296"),
        ("seed: '42'", "4:11: items[0].seed: expected an integer from 0 to 4294967295, got '42'"),
        ("negative_prompt: 3", "4:22: items[0].negative_prompt: expected text, got 3; put it in "
         "quotes to make it text"),
        ("model: ''", "4:12: items[0].model: expected a model id (non-empty text), got ''"),
        ("lora: 5", "4:11: items[0].lora: expected a LoRA model id, or a list of model ids or "
         "{model, scale} mappings, got 5"),
        ("lora: [a, 5]", "4:15: items[0].lora[1]: expected a LoRA model id or a {model, scale} "
         "mapping, got 5"),
        ("lora: [{model: a, scale: big}]", "4:30: items[0].lora[0].scale: expected a finite "
         "number, got 'big'"),
        ("lora: [{model: a, weight: 1}]", "4:23: items[0].lora[0].weight: unknown key 'weight' "
         "(expected one of: model, scale)"),
        ("lora: [{scale: 1}]", "4:12: items[0].lora[0]: missing required key 'model'"),
        ("params: [1]", "4:13: items[0].params: expected a mapping of model inputs, got a list"),
        ("params: {1: x}", "4:14: items[0].params.1: keys must be text, got 1"),
        ("params: {seed: 1}", "4:14: items[0].params.seed: params.seed duplicates 'seed'; use "
         "the 'seed' key instead"),
        ("params: {numOutputs: 2}", "4:14: items[0].params.numOutputs: params.numOutputs "
         "duplicates 'outputs'; use the 'outputs' key instead"),
        ("params: {modelId: x}", "4:14: items[0].params.modelId: params.modelId duplicates "
         "'lora' (a LoRA's model id is sent as modelId); use the 'lora' key instead"),
        ("params: {guidance: .nan}", "4:24: items[0].params.guidance: expected a finite number, "
         "got the number nan"),
        ("params: {a: {b: [1, !!binary aGk=]}}", "4:25: items[0].params.a.b[1]: expected a JSON "
         "value (text, a number, true/false, null, a list or a mapping), got binary data"),
        ("matrix: {}", "4:13: items[0].matrix: expected a non-empty mapping from names to lists "
         "of values, got an empty mapping"),
        ("matrix: {m: []}", "4:17: items[0].matrix.m: expected a non-empty list of values, got "
         "an empty list"),
        ("matrix: {m: [a, [b]]}", "4:21: items[0].matrix.m[1]: expected text or a number, got "
         "a list"),
        ("image: refs/nope.png", "4:12: items[0].image: 'refs/nope.png': file not found (paths "
         "are relative to the project root)"),
        ("image: refs/notes.png", "4:12: items[0].image: 'refs/notes.png': is not an image "
         "(expected a PNG, JPEG or WebP file)"),
        ("image: ../a.png", "4:12: items[0].image: '../a.png': a path cannot leave the project "
         "('..')"),
        ("image: /etc/passwd", "4:12: items[0].image: '/etc/passwd': expected a path relative to "
         "the project root"),
        ("strength: 0.6", "4:15: items[0].strength: strength needs an 'image' (it says how far "
         "to move from it)"),
        ("strength: 2", "4:15: items[0].strength: expected a number from 0 to 1, got 2"),
        ("referenceImages: [nope.png]", "4:22: items[0].referenceImages: 'nope.png': file not "
         "found (paths are relative to the project root)"),
        ("referenceImages: 'x/*.png'", "4:22: items[0].referenceImages: 'x/*.png': the glob "
         "matches no file"),
        ("reference_images: [a.png]", "4:5: items[0].reference_images: unknown key "
         "'reference_images' (did you mean 'referenceImages'?)"),
        ("then: {model: bg}", "4:11: items[0].then: expected a list of steps, each a mapping with "
         "'model' (and 'params', 'keep', 'name'), got a mapping"),
        ("then: [{model: bg, kep: true}]", "4:24: items[0].then[0].kep: unknown key 'kep' in a "
         "step (did you mean 'keep'?)"),
        ("then: [{params: {}}]", "4:12: items[0].then[0]: missing required key 'model'"),
        ("then: [{model: bg, params: {image: x}}]", "4:40: items[0].then[0].params.image: a "
         "step's image is the previous stage's result; leave it out"),
        ("then: [{model: a/b}]", "4:12: items[0].then[0]: step name 'a/b' is not safe in a file "
         "name: it contains '/' (names here are file names, not paths)"),
        ("then: [{model: bg}, {model: bg}]", "4:25: items[0].then[1]: two steps named 'bg' "
         "(then[0] too); give one a 'name'"),
        ("caption: 1", "4:14: items[0].caption: expected true or false, got 1"),
    ],
)  # fmt: skip
def test_item_key_problems(tmp_path: Path, entry: str, expected: str) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "notes.png").write_text("not an image")
    write(
        tmp_path,
        "x.yaml",
        f"defaults: {{model: m}}\nitems:\n  - id: a\n    {entry}\n    prompt: p\n",
    )
    assert problems(tmp_path) == [f"manifests/x.yaml:{expected}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train: {}\n", "1:8: train: expected a list of trainings (each a mapping with 'name' "
         "and 'images'), got an empty mapping"),
        ("remote_collection: c\n", "1:20: remote_collection: expected true or false, got 'c'"),
        ("train: [{name: s}]\n", "1:9: train[0]: missing required key 'images'"),
        ("train: [{name: s, images: a.png, prest: style}]\n", "1:34: train[0].prest: unknown key "
         "'prest' in a training (did you mean 'preset'?)"),
        ("train: [{name: s, images: a.png, preset: pop}]\n", "1:42: train[0].preset: expected "
         "one of 'style', 'subject', 'default', got 'pop'"),
        ("train: [{name: s, images: []}]\n", "1:27: train[0].images: expected a path or glob, or "
         "a list of them (relative to the project root), got an empty list"),
        ("train: [{name: s, images: a.png}]\n", "1:27: train[0].images: 'a.png': file not found "
         "(paths are relative to the project root)"),
        ("defaults: {id: a}\n", "1:12: defaults.id: 'id' cannot be in defaults: each item sets "
         "its own"),
        ("defaults: {widht: 3}\n", "1:12: defaults.widht: unknown key 'widht' (did you mean "
         "'width'?)"),
        ("prompt: p\n", "1:1: prompt: unknown key 'prompt' at the top level: item keys go in "
         "'defaults' or on the items"),
        ("colection: c\n", "1:1: colection: unknown key 'colection' (did you mean 'collection'?)"),
        ("collection: 5\n", "1:13: collection: expected a collection name (text), got 5; put it "
         "in quotes to make it text"),
        ("collection: a/b\n", "1:13: collection: collection name 'a/b' is not safe as a folder "
         "name: it contains '/' (names here are file names, not paths)"),
        ("defaults: [1]\n", "1:11: defaults: expected a mapping of item keys, got a list"),
    ],
)  # fmt: skip
def test_top_level_and_defaults_problems(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "x.yaml", text + "items:\n  - {id: a, prompt: p, model: m}\n")
    assert problems(tmp_path) == [f"manifests/x.yaml:{expected}"]


def test_duplicate_yaml_keys_are_errors(tmp_path: Path) -> None:
    text = "items:\n  - id: a\n    prompt: one\n    model: m\n    prompt: two\n"
    write(tmp_path, "x.yaml", text)
    assert problems(tmp_path) == [
        "manifests/x.yaml:5:5: items[0].prompt: duplicate key 'prompt' (also at "
        "manifests/x.yaml:3:5)"
    ]


def test_missing_prompt_and_model_after_merging_defaults(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", "defaults: {model: m}\nitems:\n  - id: a\n  - {id: b, prompt: p}\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:3:5: items[0]: missing required key 'prompt' (set it here or in defaults)"
    ]
    write(tmp_path, "x.yaml", "items:\n  - id: a\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:2:5: items[0]: missing required key 'model' (set it here or in defaults)",
        "manifests/x.yaml:2:5: items[0]: missing required key 'prompt' (set it here or in "
        "defaults)",
    ]


def test_a_mistake_is_reported_once_not_again_as_its_consequence(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", "defaults: {modle: m}\nitems:\n  - {id: a, promt: p}\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:1:12: defaults.modle: unknown key 'modle' (did you mean 'model'?)",
        "manifests/x.yaml:3:13: items[0].promt: unknown key 'promt' (did you mean 'prompt'?)",
    ]


def test_reports_every_problem_of_every_file_together_sorted(tmp_path: Path) -> None:
    write(
        tmp_path,
        "b.yaml",
        "defaults: {model: m}\nitems:\n  - {id: a, prompt: p, seed: x}\n"
        "  - {id: b/c, prompt: p}\n  - {id: a, prompt: p, width: 0}\n  - {id: d, prompt: '{x}'}\n",
    )
    write(tmp_path, "a.yaml", "items:\n  - {id: a, prompt: p, model: m, colour: red}\n")
    assert problems(tmp_path) == [
        "manifests/a.yaml:2:34: items[0].colour: unknown key 'colour' (expected one of: id, model,"
        " prompt, negative_prompt, lora, seed, width, height, outputs, image, strength,"
        " referenceImages, then, caption, params, matrix)",
        "manifests/b.yaml:3:30: items[0].seed: expected an integer from 0 to 4294967295, got 'x'",
        "manifests/b.yaml:4:10: items[1].id: id 'b/c' is not safe as a file name: it contains '/'"
        " (names here are file names, not paths)",
        "manifests/b.yaml:5:10: items[2].id: duplicate id 'a' (also at manifests/b.yaml:3:10)",
        "manifests/b.yaml:5:31: items[2].width: expected a positive integer, got 0",
        "manifests/b.yaml:6:21: items[3].prompt: placeholder '{x}' in prompt, but this item has "
        "no matrix (write '{{x}}' for literal braces)",
    ]


# --- ids and collection names ---


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    text = "defaults: {model: m, prompt: p}\nitems:\n  - id: iron-shield\n  - id: x\n"
    write(tmp_path, "x.yaml", text + "  - id: iron-shield\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:5:9: items[2].id: duplicate id 'iron-shield' (also at "
        "manifests/x.yaml:3:9)"
    ]


def test_ids_differing_only_in_case_are_duplicates(tmp_path: Path) -> None:
    text = "defaults: {model: m, prompt: p}\nitems:\n  - id: iron-shield\n  - id: Iron-Shield\n"
    write(tmp_path, "x.yaml", text)
    assert problems(tmp_path) == [
        "manifests/x.yaml:4:9: items[1].id: duplicate id 'Iron-Shield' (also at "
        "manifests/x.yaml:3:9 as 'iron-shield'; ids must differ in more than letter case)"
    ]


def test_a_matrix_name_missing_from_the_id_makes_duplicates(tmp_path: Path) -> None:
    text = "defaults: {model: m}\nitems:\n  - id: shield\n    matrix: {metal: [a, b, c]}\n"
    write(tmp_path, "x.yaml", text + "    prompt: '{metal} shield'\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:3:9: items[0].id: duplicate ids: the matrix makes 'shield' more than "
        "once; put every matrix name in the id (missing: {metal})"
    ]


def test_duplicate_collections_across_files_name_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "collection: props\nitems:\n  - {id: a, prompt: p, model: m}\n")
    write(tmp_path, "b.yaml", "collection: Props\nitems:\n  - {id: a, prompt: p, model: m}\n")
    write(tmp_path, "props.yaml", "items:\n  - {id: a, prompt: p, model: m}\n")
    assert problems(tmp_path) == [
        "manifests/b.yaml:1:13: collection: duplicate collection 'Props' (also in "
        "manifests/a.yaml:1:13)",
        "manifests/props.yaml: duplicate collection 'props' (also in manifests/a.yaml:1:13; set "
        "'collection:' to tell them apart)",
    ]


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("a/b", "it contains '/' (names here are file names, not paths)"),
        ("'a\\b'", "it contains '\\\\' (names here are file names, not paths)"),
        ("/etc", "it contains '/' (names here are file names, not paths)"),
        ("'..'", "'..' is not a file name"),
        ("'.'", "'.' is not a file name"),
        ("''", "it is empty"),
        ('"a\\tb"', "it contains a control character ('\\t')"),
        ('"a\\x7fb"', "it contains a control character ('\\x7f')"),
        ("'a:b'", "it contains ':', which Windows does not allow in file names"),
        ("a*b", "it contains '*', which Windows does not allow in file names"),
        ("'a?b'", "it contains '?', which Windows does not allow in file names"),
        ("a<b", "it contains '<', which Windows does not allow in file names"),
        ("a>b", "it contains '>', which Windows does not allow in file names"),
        ("'C:\\x'", "it contains ':', which Windows does not allow in file names"),
        ("'a|b'", "it contains '|', which Windows does not allow in file names"),
        ("'a\"b'", "it contains '\"', which Windows does not allow in file names"),
        ("'a.'", "it ends with a dot, which Windows drops"),
        ("'a '", "it ends with a space, which Windows drops"),
        ("con", "CON is a reserved device name on Windows"),
        ("Aux.png", "AUX is a reserved device name on Windows"),
        ("lpt9.tar.gz", "LPT9 is a reserved device name on Windows"),
        ("COM1", "COM1 is a reserved device name on Windows"),
        ("x" * 101, "it is 101 characters long (at most 100)"),
    ],
)
def test_unsafe_ids_are_refused(tmp_path: Path, written: str, reason: str) -> None:
    write(tmp_path, "x.yaml", f"defaults: {{model: m, prompt: p}}\nitems:\n  - id: {written}\n")
    value = yaml.safe_load(f"v: {written}")["v"]
    assert problems(tmp_path) == [
        f"manifests/x.yaml:3:9: items[0].id: id {value!r} is not safe as a file name: {reason}"
    ]


def test_safe_ids_pass(tmp_path: Path) -> None:
    ids = ["x" * 100, "console", "com10", "a.b", "..a", "über-schild", "a b", "con_fused"]
    text = "defaults: {model: m, prompt: p}\nitems:\n" + "".join(f"  - id: {i}\n" for i in ids)
    assert [item.id for item in one(tmp_path, text)] == ids


def test_collection_names_from_file_names_must_be_safe_too(tmp_path: Path) -> None:
    write(tmp_path, "con.yaml", "items:\n  - {id: a, prompt: p, model: m}\n")
    assert problems(tmp_path) == [
        "manifests/con.yaml:1:1: collection name 'con' (from the file name) is not safe as a "
        "folder name: CON is a reserved device name on Windows"
    ]


# --- placeholders and matrix ---


def test_matrix_expands_every_combination_in_written_order(tmp_path: Path) -> None:
    text = """\
defaults: {model: m, params: {steps: 20}}
items:
  - id: first
    prompt: p
  - id: "{size}-{metal}-shield"
    matrix:
      size: [small, 2, 1.5, true]
      metal: [iron, gold]
    prompt: "{metal} shield, {size}"
    negative_prompt: "no {metal}"
  - id: last
    prompt: p
"""
    items = one(tmp_path, text)
    assert [item.id for item in items] == [
        "first",
        "small-iron-shield", "small-gold-shield", "2-iron-shield", "2-gold-shield",
        "1.5-iron-shield", "1.5-gold-shield", "true-iron-shield", "true-gold-shield",
        "last",
    ]  # fmt: skip
    assert [item.index for item in items] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert (items[2].prompt, items[2].negative_prompt) == ("gold shield, small", "no gold")
    assert items[1].params == {"steps": 20} and items[1].params is not items[2].params


def test_double_braces_are_literal(tmp_path: Path) -> None:
    text = "defaults: {model: m}\nitems:\n  - id: a\n    prompt: '{{literal}} and }}{{'\n"
    (item,) = one(tmp_path, text)
    assert item.prompt == "{literal} and }{"
    text = "defaults: {model: m}\nitems:\n  - id: '{m}'\n    matrix: {m: [x]}\n"
    (item,) = one(tmp_path, text + "    prompt: '{{{m}}}'\n")
    assert item.prompt == "{x}"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            ["id: '{metal}'", "matrix: {metal: [a]}", "prompt: '{metla} shield'"],
            "5:13: items[0].prompt: unknown placeholder '{metla}' in prompt (did you mean "
            "'{metal}'?); matrix: metal",
        ),
        (
            ["id: '{m}-{n}'", "matrix: {m: [a], n: [b]}", "prompt: '{size}'"],
            "5:13: items[0].prompt: unknown placeholder '{size}' in prompt; matrix: m, n",
        ),
        (
            ["id: '{m}'", "prompt: p"],
            "3:9: items[0].id: placeholder '{m}' in id, but this item has no matrix (write "
            "'{{m}}' for literal braces)",
        ),
        (
            ["id: a", "prompt: p", "negative_prompt: '{ugly'"],
            "5:22: items[0].negative_prompt: unmatched '{' (write '{{' for a literal brace) in "
            "negative_prompt",
        ),
        (
            ["id: a", "prompt: 'a } b'"],
            "4:13: items[0].prompt: unmatched '}' (write '}}' for a literal brace) in prompt",
        ),
    ],
)
def test_unresolved_placeholders_name_the_placeholder_and_the_matrix(
    tmp_path: Path, lines: list[str], expected: str
) -> None:
    body = "".join(f"    {line}\n" for line in lines).replace("    ", "  - ", 1)
    write(tmp_path, "x.yaml", f"defaults: {{model: m}}\nitems:\n{body}")
    assert problems(tmp_path) == [f"manifests/x.yaml:{expected}"]


def test_a_placeholder_in_defaults_is_reported_on_the_item_lacking_it(tmp_path: Path) -> None:
    text = "defaults: {model: m, prompt: '{metal} icon'}\nitems:\n  - id: '{metal}'\n"
    text += "    matrix: {metal: [a]}\n  - id: plain\n"
    write(tmp_path, "x.yaml", text)
    assert problems(tmp_path) == [
        "manifests/x.yaml:5:5: items[1]: placeholder '{metal}' in prompt (from defaults), but "
        "this item has no matrix (write '{{metal}}' for literal braces)"
    ]


def test_a_matrix_too_large_is_refused_before_expanding(tmp_path: Path) -> None:
    values = "[" + ", ".join(str(i) for i in range(400)) + "]"
    text = "defaults: {model: m}\nitems:\n  - id: '{a}-{b}'\n    prompt: p\n"
    write(tmp_path, "x.yaml", text + f"    matrix: {{a: {values}, b: {values}}}\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:5:13: items[0].matrix: the matrix makes 160000 items; at most 100000 "
        "per item"
    ]


# --- defaults ---


def test_defaults_merge_under_items_and_params_merge_key_by_key(tmp_path: Path) -> None:
    text = """\
defaults:
  model: base
  prompt: default prompt
  negative_prompt: blurry
  lora: [style-a, {model: style-b, scale: 0.5}]
  width: 512
  params: {guidance: 3.5, steps: 28, sampler: euler}
items:
  - id: inherits
  - id: overrides
    model: other
    width: 1024
    height: null
    lora: {}
    params: {steps: 40, sampler: null, extra: [1, 2]}
  - id: lora-null
    lora: null
    negative_prompt: null
    params: null
  - id: lora-empty
    lora: []
  - id: lora-one
    lora: special
"""
    write(tmp_path, "x.yaml", text.replace("    lora: {}\n", ""))
    inherits, overrides, lora_null, lora_empty, lora_one = load(tmp_path)[0].items
    assert inherits.loras == (Lora("style-a"), Lora("style-b", 0.5))
    assert (inherits.model, inherits.prompt, inherits.negative_prompt) == (
        "base", "default prompt", "blurry",
    )  # fmt: skip
    assert inherits.params == {"guidance": 3.5, "steps": 28, "sampler": "euler"}
    assert (overrides.model, overrides.width, overrides.height) == ("other", 1024, None)
    assert overrides.params == {"guidance": 3.5, "steps": 40, "extra": [1, 2]}
    assert overrides.loras == inherits.loras
    assert (lora_null.loras, lora_null.negative_prompt, lora_null.params) == ((), None, {})
    assert lora_empty.loras == ()
    assert lora_one.loras == (Lora("special"),)


# --- locate ---


def test_locate_points_at_the_item_then_defaults_then_the_item_itself(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", EXAMPLE)
    sword, wooden, *_ = load(tmp_path)[0].items
    file = "manifests/x.yaml"
    assert sword.locate("seed") == Location(file, 12, 11, "items[0].seed")
    assert sword.locate("prompt") == Location(file, 11, 13, "items[0].prompt")
    assert sword.locate("width") == Location(file, 5, 10, "defaults.width")
    assert sword.locate("params.guidance") == Location(file, 8, 22, "defaults.params.guidance")
    assert sword.locate("loras") == Location(file, 4, 9, "defaults.lora")
    assert sword.locate("negative_prompt") == Location(file, 10, 5, "items[0]")
    assert sword.locate() == Location(file, 10, 5, "items[0]")
    assert wooden.locate("prompt") == Location(file, 15, 13, "items[1].prompt")
    assert wooden.locate("id") == Location(file, 13, 9, "items[1].id")
    assert wooden.locate("seed") == Location(file, 13, 5, "items[1]")
    assert str(wooden.locate("matrix.metal")) == "manifests/x.yaml:14:21: items[1].matrix.metal"


def test_locate_without_a_source_still_names_the_path() -> None:
    item = Item("c", "a", "m", "p", None, (), 1, False, None, None, 1, {}, "manifests/c.yaml", 3)
    assert item.locate("params.guidance") == Location(
        "manifests/c.yaml", 0, 0, "items[3].params.guidance"
    )


# --- seeds, files ---


def test_derived_seeds_are_stable_distinct_and_in_range() -> None:
    digest = hashlib.sha256(b"ui-icons/iron-sword").digest()
    assert derive_seed("ui-icons", "iron-sword") == int.from_bytes(digest[:4], "big") % 2**31
    seeds = {derive_seed("c", f"item-{i}") for i in range(2000)}
    assert len(seeds) == 2000
    assert all(0 <= seed < 2**31 for seed in seeds)
    assert derive_seed("c", "item-1") == derive_seed("c", "item-1") != derive_seed("d", "item-1")


def test_the_largest_seed_is_accepted(tmp_path: Path) -> None:
    (item,) = one(tmp_path, "items:\n  - {id: a, prompt: p, model: m, seed: 4294967295}\n")
    assert (item.seed, item.seed_derived) == (2**32 - 1, False)


def test_a_glob_matching_nothing_is_not_an_error_but_a_missing_path_is(tmp_path: Path) -> None:
    assert load(tmp_path) == []
    assert problems(tmp_path, tmp_path / "nope.yaml") == ["nope.yaml: file not found"]


def test_explicit_paths_and_folders(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "items:\n  - {id: a, prompt: p, model: m}\n")
    b = write(tmp_path, "sub/b.yaml", "items:\n  - {id: b, prompt: p, model: m}\n")
    assert [c.name for c in load(tmp_path)] == ["a"]
    assert [c.file for c in load_manifests(tmp_path, Settings(), [b])] == ["manifests/sub/b.yaml"]
    folder = load_manifests(tmp_path, Settings(), [tmp_path / "manifests"])
    assert [c.name for c in folder] == ["a"]
    both = load_manifests(tmp_path, Settings(manifests=("manifests/**/*.yaml",)))
    assert [c.name for c in both] == ["a", "b"]


def test_a_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "")
    path.write_bytes(b"items:\n  - id: caf\xe9\n")
    assert problems(tmp_path) == [
        "manifests/x.yaml:2:12: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    ]


# --- robustness ---

_keys = st.sampled_from(
    ["collection", "defaults", "items", "id", "prompt", "model", "lora", "seed", "width",
     "params", "matrix", "outputs", "negative_prompt", "scale", "image", "x", "<<", "1"]
)  # fmt: skip
_leaves = st.one_of(
    st.text(alphabet="ab{}/:. \t\\-", max_size=6), st.integers(-3, 2**33), st.booleans(),
    st.none(), st.floats(allow_nan=True), st.sampled_from(["{a}", "{{", "con", "..", "a/b"]),
)  # fmt: skip
_documents = st.recursive(
    _leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)
_texts = st.one_of(
    _documents.map(lambda doc: yaml.safe_dump(doc, sort_keys=False)),
    st.dictionaries(_keys, _documents, max_size=4).map(lambda d: yaml.safe_dump(d)),
    st.text(alphabet="ab:-[]{}#&*!|>'\"\n ,?%@`\t\\", max_size=60),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_texts)
def test_any_document_gives_collections_or_invalid_input_never_a_crash(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:  # hypothesis reruns: no function fixtures
        write(Path(folder), "x.yaml", text)
        try:
            collections = load(Path(folder))
        except InvalidInput as err:
            assert err.problems
            for problem in err.problems:
                assert problem.location.file == "manifests/x.yaml"
                assert problem.message
                assert "Input should be" not in problem.message
        else:
            assert all(isinstance(c, Collection) for c in collections)
            for item in (i for c in collections for i in c.items):
                assert item.locate("prompt").file == "manifests/x.yaml"


def test_a_glob_pathlib_cannot_use_is_a_settings_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_manifests(tmp_path, Settings(manifests=("ok/*.yaml", "a**")))
    assert [str(p) for p in caught.value.problems] == [
        "pipeline.yaml: manifests[1]: cannot use the glob 'a**': Invalid pattern: '**' can only "
        "be an entire path component"
    ]


def test_locate_survives_a_mapping_that_merges_itself(tmp_path: Path) -> None:
    (item,) = one(tmp_path, "items:\n  - &i {id: a, prompt: p, model: m, <<: *i}\n")
    assert item.locate("width") == Location("manifests/x.yaml", 2, 5, "items[0]")


def test_items_copy_and_convert_without_copying_their_file(tmp_path: Path) -> None:
    (item,) = one(tmp_path, "items:\n  - {id: a, prompt: p, model: m, params: {k: [1]}}\n")
    copied = copy.deepcopy(item)
    assert copied == item and copied.locate("prompt") == item.locate("prompt")
    assert dataclasses.replace(item, prompt="q").locate("prompt") == item.locate("prompt")
    assert dataclasses.asdict(item)["params"] == {"k": [1]}


# --- the full workflow's keys: input files, steps, captions, trainings ---------------------


def _refs(root: Path, *names: str) -> dict[str, str]:
    (root / "refs").mkdir(exist_ok=True)
    digests = {}
    for n, name in enumerate(names):
        data = png_bytes(8 + n, 8, (n, 2 * n, 3 * n))
        (root / "refs" / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def test_input_files_steps_and_captions_are_read(tmp_path: Path) -> None:
    digests = _refs(tmp_path, "b.png", "a.png", "sketch.png")
    text = """\
defaults:
  model: m
  caption: true
  then:
    - model: photoroom-background-remover
    - {model: model_upscale-v3, params: {scale: 4}, keep: true, name: big}
items:
  - id: a
    prompt: p
    image: refs/sketch.png
    strength: 0.5
    referenceImages: [refs/*.png, refs/a.png]
  - id: b
    prompt: p
    then: null
    caption: false
"""
    first, second = one(tmp_path, text)
    assert first.image is not None and first.image.sha256 == digests["sketch.png"]
    assert first.strength == 0.5
    # a glob in sorted order, each file once however often named
    assert [f.path for f in first.reference_images] == [
        "refs/a.png",
        "refs/b.png",
        "refs/sketch.png",
    ]
    assert [(s.name, s.model, dict(s.params), s.keep) for s in first.steps] == [
        ("photoroom-background-remover", "photoroom-background-remover", {}, False),
        ("big", "model_upscale-v3", {"scale": 4}, True),
    ]
    assert first.caption and not second.caption and second.steps == ()
    assert str(first.locate("steps[1].params.scale")).startswith("manifests/x.yaml:6:")


def test_a_lora_names_a_training_of_any_manifest(tmp_path: Path) -> None:
    _refs(tmp_path, "s1.png", "s2.png")
    write(
        tmp_path,
        "style.yaml",
        "train:\n  - {name: Pixel, images: 'refs/*.png'}\n"
        "items:\n  - {id: x, prompt: p, model: m}\n",
    )
    write(
        tmp_path,
        "icons.yaml",
        "items:\n  - {id: a, prompt: p, model: m, lora: pixel}\n"
        "  - {id: b, prompt: p, model: m, lora: model_other}\n",
    )
    icons, style = load(tmp_path)
    (training,) = style.trainings
    assert (training.name, training.type, training.preset) == ("Pixel", "flux.2-dev-lora", "style")
    assert [image.path for image in training.images] == ["refs/s1.png", "refs/s2.png"]
    assert icons.items[0].loras == (Lora("Pixel", None, "Pixel"),)
    assert icons.items[1].loras == (Lora("model_other"),)


def test_training_names_are_unique_across_manifests(tmp_path: Path) -> None:
    _refs(tmp_path, "s.png")
    for name in ("a.yaml", "b.yaml"):
        write(
            tmp_path,
            name,
            f"collection: {name[0]}\ntrain: [{{name: pixel, images: refs/s.png}}]\n"
            "items:\n  - {id: x, prompt: p, model: m}\n",
        )
    assert problems(tmp_path) == [
        "manifests/b.yaml:2:16: train[0].name: duplicate training name 'pixel' (also at "
        "manifests/a.yaml:2:16)"
    ]
