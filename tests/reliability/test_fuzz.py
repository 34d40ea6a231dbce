"""Suite 4, bad input: hostile manifests, pipeline.yaml files and lockfiles.

The contract under test: any input file gives either a valid load or a located error
(`InvalidInput` whose every problem names file:line:column, `LockfileError` naming the lockfile),
never another exception; through the CLI that is exit 2, no traceback, and the lockfile's bytes
untouched. Property tests call the loaders in process (fast); a handful of literals go through the
real CLI. Also: the fast YAML reader never reads a document differently from PyYAML.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from pipeline import yamlfast
from pipeline.errors import InvalidInput, LockfileError
from pipeline.lockfile import read_lock, render_lock
from pipeline.manifest import Settings, load_manifests, load_settings
from pipeline.plan import plan_collections
from pipeline.state import StatCache
from pipeline.yamlsrc import _Loader
from tests.e2e import REFS, copy_examples, invoke
from tests.helpers import same
from tests.reliability import strategies as S
from tests.reliability.conftest import PROFILE

FUZZ = settings(parent=settings.get_profile(PROFILE))
MANIFEST = "manifests/fuzz.yaml"


# --- oracles ------------------------------------------------------------------------------------


def _note(outcome: str) -> None:
    """Count an outcome in hypothesis's statistics (`--hypothesis-show-statistics`)."""
    if currently_in_test_context():
        event(outcome)


def check_manifest(root: Path, data: bytes | str) -> str:
    """Load one manifest: a valid load that plans, or InvalidInput located in that file."""
    if not (root / "refs").exists():  # the example's input files, for the paths it may name
        shutil.copytree(REFS, root / "refs")
    path = root / MANIFEST
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    try:
        collections = load_manifests(root, Settings())
    except InvalidInput as err:
        assert err.problems
        for problem in err.problems:
            where = problem.location
            assert where.file == MANIFEST, problem
            assert where.line >= 1 and where.column >= 1, f"not located: {problem}"
            assert problem.message.strip()
        _note("manifest: located error")
        return "invalid"
    # A valid load must go on to plan (fingerprints, canonical JSON) without surprises.
    plan_collections(
        collections,
        read_lock(root / "assets.lock"),
        backend="local",
        output_dir=root / "output",
        stat_cache=StatCache(),
    )
    _note("manifest: valid load, planned")
    return "valid"


def check_settings(root: Path, data: bytes | str) -> str:
    """Load pipeline.yaml: Settings, or InvalidInput located in pipeline.yaml."""
    (root / "pipeline.yaml").write_bytes(data.encode() if isinstance(data, str) else data)
    try:
        loaded = load_settings(root)
    except InvalidInput as err:
        for problem in err.problems:
            assert problem.location.file == "pipeline.yaml", problem
            assert problem.location.line >= 1 and problem.location.column >= 1, problem
        _note("settings: located error")
        return "invalid"
    assert isinstance(loaded, Settings)
    _note("settings: valid load")
    return "valid"


def check_lock(root: Path, data: bytes) -> str:
    """Read a lockfile: a Lockfile that renders again, or a LockfileError naming the file."""
    path = root / "assets.lock"
    path.write_bytes(data)
    try:
        lock = read_lock(path)
    except LockfileError as err:
        assert err.path == str(path)
        assert err.reason.strip()
        _note("lock: LockfileError")
        return "invalid"
    render_lock(lock)
    _note("lock: valid read")
    return "valid"


# --- manifests ------------------------------------------------------------------------------------


@FUZZ
@given(text=S.dumped(S.manifest_docs()))
def test_structured_manifests_load_or_fail_located(repo: Path, text: str) -> None:
    """Manifest-shaped documents with random values and types: a valid load or located problems."""
    check_manifest(repo, text)


@FUZZ
@given(text=S.manifest_mutants())
@example(text=S.EXAMPLE_MANIFESTS["ui-icons.yaml"].replace("  - id: iron-sword", "\t- id: x"))
@example(text=S.EXAMPLE_MANIFESTS["tiles.yaml"] + "\nitems: []\n")
def test_mutated_example_manifests_load_or_fail_located(repo: Path, text: str) -> None:
    """The real examples with a field deleted, duplicated, retyped or swapped, or a line damaged."""
    check_manifest(repo, text)


@FUZZ
@given(text=S.raw_yaml_text())
def test_raw_text_manifests_load_or_fail_located(repo: Path, text: str) -> None:
    """YAML punctuation, anchors, tags, tabs, BOMs, NULs, odd line breaks, long lines."""
    check_manifest(repo, text)


@FUZZ
@given(data=st.data())
def test_manifests_with_invalid_bytes_fail_located(repo: Path, data: st.DataObject) -> None:
    """Invalid UTF-8, stray BOMs and NULs spliced into a real manifest: located, never a crash."""
    name = data.draw(st.sampled_from(sorted(S.EXAMPLE_MANIFESTS)))
    check_manifest(repo, data.draw(S.damaged_bytes(S.EXAMPLE_MANIFESTS[name])))


_ITEM = "items:\n  - id: a\n    prompt: p\n    model: m\n"
HOSTILE_MANIFESTS = {
    "bom": "\ufeff" + _ITEM,
    "bom-twice": "\ufeff\ufeff" + _ITEM,
    "nul": _ITEM + "\x00",
    "tab-indent": "items:\n\t- id: a\n",
    "crlf": _ITEM.replace("\n", "\r\n"),
    "lone-cr": _ITEM.replace("\n", "\r"),
    "duplicate-key": _ITEM + "    prompt: q\n",
    "duplicate-top": _ITEM + "items: []\n",
    "merge-key": "base: &b {model: m, prompt: p}\n" + "items:\n  - <<: *b\n    id: a\n",
    "merge-in-item": "items:\n  - &i {id: a, prompt: p, model: m}\n  - {<<: *i, id: b}\n",
    "self-alias": "items: &x\n  - *x\n",
    "recursive-params": "items:\n  - &i\n    id: a\n    prompt: p\n    model: m\n    params: *i\n",
    "alias-undefined": "items:\n  - *nope\n",
    "python-tag": "items:\n  - !!python/object/apply:os.system [echo]\n",
    "binary-tag": "items:\n  - id: !!binary aGVsbG8=\n    prompt: p\n",
    "int-tag-bad": "items:\n  - id: a\n    seed: !!int x\n",
    "huge-seed": _ITEM + "    seed: " + "9" * 5000 + "\n",
    "huge-width": _ITEM + "    width: 99999999999999999999999\n",
    "inf-width": _ITEM + "    width: .inf\n",
    "nan-param": _ITEM + "    params: {g: .nan}\n",
    "long-line": "items:\n  - id: a\n    prompt: " + "x" * 1_000_000 + "\n",
    "long-key": "items:\n  - " + "k" * 5000 + ": 1\n",
    "complex-key": "items:\n  - ? [a, b]\n    : 1\n",
    "null-key": "items:\n  - ~: 1\n",
    "int-key": "items:\n  - 1: 1\n",
    "deep-flow": "items: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep-block": "items:\n" + "".join("  " * (i + 1) + "- \n" for i in range(300)),
    "directive": "%YAML 1.1\n---\n" + _ITEM,
    "two-documents": _ITEM + "---\n" + _ITEM,
    "only-comment": "# nothing\n",
    "empty": "",
    "scalar-root": "just text\n",
    "list-root": "- a\n",
    "unicode-id": "items:\n  - id: \u202eevil\U0001f600\n    prompt: p\n    model: m\n",
    "control-id": 'items:\n  - id: "a\\x01b"\n    prompt: p\n    model: m\n',
    "path-id": "items:\n  - id: ../../etc/passwd\n    prompt: p\n    model: m\n",
    "matrix-bomb": "items:\n  - id: '{a}{b}{c}{d}'\n    prompt: p\n    model: m\n    matrix:\n"
    + "".join(f"      {k}: [{', '.join(str(i) for i in range(40))}]\n" for k in "abcd"),
    "unclosed-quote": "items:\n  - id: 'a\n",
    "unclosed-flow": "items: [\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifest_literals_load_or_fail_located(repo: Path, name: str) -> None:
    """Each classic YAML trap on its own: a valid load or located problems, nothing else."""
    check_manifest(repo, HOSTILE_MANIFESTS[name])


_DEEP_PARAMS = _ITEM + "    params:\n      x: " + "[" * 2000 + "]" * 2000 + "\n"


def test_deeply_nested_params_are_refused_not_crashed(repo: Path) -> None:
    """A params value nested 2000 lists deep is a located problem, not a RecursionError."""
    assert check_manifest(repo, _DEEP_PARAMS) == "invalid"


def _bomb(levels: int) -> str:
    lines = ["    params:", "      l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, levels):
        refs = ", ".join([f"*l{n - 1}"] * 9)
        lines.append(f"      l{n}: &l{n} [{refs}]")
    return _ITEM + "\n".join(lines) + "\n"


def test_a_small_alias_bomb_is_read_without_blowing_up(repo: Path) -> None:
    """Aliases are shared, not copied: 9^4 leaves through aliases load and plan quickly."""
    check_manifest(repo, _bomb(4))


def _limited() -> None:  # pragma: no cover (runs in the child)
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_a_billion_laughs_bomb_is_refused_quickly(repo: Path) -> None:
    """`pipeline plan` on a 9-level alias bomb ends within seconds with exit 2 (bounded memory)."""
    (repo / MANIFEST).write_text(_bomb(9))
    command = [sys.executable, "-m", "pipeline", "-C", str(repo), "plan"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=4, preexec_fn=_limited, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("plan still expanding the alias bomb after 4 s")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# --- pipeline.yaml --------------------------------------------------------------------------------


@FUZZ
@given(text=S.dumped(S.settings_docs()))
def test_structured_settings_load_or_fail_located(repo: Path, text: str) -> None:
    """pipeline.yaml with plausible keys and random values: Settings or located problems."""
    check_settings(repo, text)


@FUZZ
@given(text=st.one_of(S.raw_yaml_text(), S.dumped(S.values)))
@example(text="concurrency: 1\nconcurrency: 2\n")
@example(text="\ufeffbackend: local\n")
@example(text="manifests: &m [a]\nlockfile: *m\n")
@example(text="job_timeout: 1e999\n")
@example(text="\tbackend: local\n")
def test_raw_settings_load_or_fail_located(repo: Path, text: str) -> None:
    """Raw text and arbitrary YAML values as pipeline.yaml: Settings or located problems."""
    check_settings(repo, text)


@FUZZ
@given(data=st.data())
def test_settings_with_invalid_bytes_fail_located(repo: Path, data: st.DataObject) -> None:
    """Invalid UTF-8, BOMs and NULs inside pipeline.yaml: a located problem."""
    check_settings(repo, data.draw(S.damaged_bytes("backend: local\nconcurrency: 4\n")))


# --- lockfiles ------------------------------------------------------------------------------------


@FUZZ
@given(data=S.lock_bytes_strategy())
@example(data=b'{"version": 1, "items": {"a/b": {"fingerprint": 1}}}')
@example(data=b"<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> other\n")
@example(data=b'\xef\xbb\xbf{"version": 1}')
@example(data=b'{"version": ' + b"9" * 5000 + b"}")
def test_lockfiles_read_or_fail_with_a_lockfile_error(repo: Path, data: bytes) -> None:
    """Structured, mutated, truncated, spliced and random lockfiles: a lock or a LockfileError."""
    check_lock(repo, data)


@pytest.mark.parametrize(
    "data",
    [b"[" * 2000 + b"]" * 2000, b'{"version": 1, "items": ' + b"[" * 2000 + b"]" * 2000 + b"}"],
    ids=["deep-root", "deep-items"],
)
def test_a_deeply_nested_lockfile_is_a_lockfile_error(repo: Path, data: bytes) -> None:
    """JSON nested 2000 deep in assets.lock is reported as an unreadable lock."""
    assert check_lock(repo, data) == "invalid"


# --- through the CLI: exit 2, no traceback, the lock untouched ------------------------------------

BAD_MANIFESTS = {
    "tab": "items:\n\t- id: a\n",
    "duplicate-key": _ITEM + "    prompt: q\n",
    "invalid-utf8": b"items:\n  - id: \xff\n",
    "nul": _ITEM + "\x00",
    "wrong-type": _ITEM + "    seed: [1]\n",
    "unclosed": "items: [\n",
}


@pytest.mark.parametrize(
    "command", [["validate"], ["plan"], ["plan", "--json"], ["run"], ["prune"]]
)
@pytest.mark.parametrize("name", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_exits_2_and_leaves_the_lock_alone(
    repo: Path, name: str, command: list[str]
) -> None:
    """Every command on a broken manifest: exit 2, a located message, no traceback, same lock."""
    copy_examples(repo)
    (repo / "assets.lock").write_bytes(S.EXAMPLE_LOCK)
    data = BAD_MANIFESTS[name]
    (repo / MANIFEST).write_bytes(data.encode() if isinstance(data, str) else data)
    result = invoke(repo, *command, env={"NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert f"{MANIFEST}:" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""  # --json prints nothing when there is no plan
    assert (repo / "assets.lock").read_bytes() == S.EXAMPLE_LOCK
    assert not list(repo.glob(".assets.lock.*"))


BAD_LOCKS = {
    "truncated": S.EXAMPLE_LOCK[: len(S.EXAMPLE_LOCK) // 2],
    "conflict": b"<<<<<<< HEAD\n" + S.EXAMPLE_LOCK,
    "newer": b'{"version": 99}',
    "bad-sha": S.EXAMPLE_LOCK.replace(b'"sha256": "7', b'"sha256": "Z', 1),
    "binary": b"\x00\xff\xfe garbage",
}


@pytest.mark.parametrize("command", [["plan"], ["plan", "--json"], ["run"], ["prune"]])
@pytest.mark.parametrize("name", sorted(BAD_LOCKS))
def test_a_bad_lockfile_exits_2_and_is_not_rewritten(
    repo: Path, name: str, command: list[str]
) -> None:
    """Every lock-reading command on a broken assets.lock: exit 2, no traceback, bytes unchanged."""
    copy_examples(repo)
    (repo / "assets.lock").write_bytes(BAD_LOCKS[name])
    result = invoke(repo, *command, env={"NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert "assets.lock" in result.stderr
    assert "Traceback" not in result.output
    assert (repo / "assets.lock").read_bytes() == BAD_LOCKS[name]


BAD_SETTINGS = {
    "unknown-key": "backnd: local\n",
    "wrong-type": "concurrency: many\n",
    "tab": "\tbackend: local\n",
    "invalid-utf8": b"backend: \xc3\n",
    "absolute-glob": "manifests: /etc/*.yaml\n",
}


@pytest.mark.parametrize("command", [["validate"], ["plan", "--json"], ["run"], ["prune"]])
@pytest.mark.parametrize("name", sorted(BAD_SETTINGS))
def test_a_bad_settings_file_exits_2(repo: Path, name: str, command: list[str]) -> None:
    """A broken pipeline.yaml: exit 2 pointing at pipeline.yaml, no traceback, same lock."""
    copy_examples(repo)
    (repo / "assets.lock").write_bytes(S.EXAMPLE_LOCK)
    data = BAD_SETTINGS[name]
    (repo / "pipeline.yaml").write_bytes(data.encode() if isinstance(data, str) else data)
    result = invoke(repo, *command, env={"NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert "pipeline.yaml:" in result.stderr
    assert "Traceback" not in result.output
    assert (repo / "assets.lock").read_bytes() == S.EXAMPLE_LOCK


# --- the fast reader agrees with PyYAML -----------------------------------------------------------


def _agree(text: str) -> bool:
    """yamlfast's claim: whatever it reads (no Unsupported), PyYAML reads the same way."""
    try:
        fast = yamlfast.load(text)
    except yamlfast.Unsupported:
        _note("yamlfast: left to PyYAML")
        return False
    try:
        slow = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        pytest.fail(f"yamlfast read what PyYAML rejects ({err}): {text!r}")
    assert same(fast, slow), f"{text!r}: yamlfast {fast!r} != PyYAML {slow!r}"
    _note("yamlfast: read, same as PyYAML")
    return True


@FUZZ
@given(text=S.block_yaml())
@example(text="a: |\n  x\n\n  y\nb: 1")
@example(text="- a\n- 'b '' c'\n-  \"d\\te\"")
def test_fast_reader_agrees_with_pyyaml_on_block_documents(text: str) -> None:
    """Generated block YAML (nested, comments, blank lines, every scalar style) reads alike."""
    _agree(text)
    _agree(text + "\n")


@FUZZ
@given(text=st.one_of(S.manifest_mutants(), S.raw_yaml_text()))
def test_fast_reader_agrees_with_pyyaml_on_damaged_manifests(text: str) -> None:
    """Damaged manifests and raw YAML: yamlfast refuses or reads exactly as PyYAML does."""
    _agree(text)


@pytest.mark.parametrize("text", ["a: >\n\n  x\n", "- >\n\n  x\n  y\n"])
def test_fast_reader_keeps_a_folded_scalars_leading_empty_line(text: str) -> None:
    """Found by the block-document property (full mode), minimised: `a: >` then an empty line."""
    _agree(text)


def test_fast_reader_reads_every_example_manifest() -> None:
    """The fast path is the usual path: every example manifest is read by yamlfast, identically."""
    for text in S.EXAMPLE_MANIFESTS.values():
        assert _agree(text)
