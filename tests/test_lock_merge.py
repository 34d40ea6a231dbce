"""Merging assets.lock: plain git, the `pipeline lock merge` driver in real repositories, and
the three-way merge itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import LockfileError
from pipeline.lockfile import (
    LockEntry,
    Lockfile,
    OutputRecord,
    read_lock,
    render_conflicted,
    render_lock,
    write_lock,
)
from pipeline.lockmerge import merge_locks
from pipeline.plan import fingerprint_of
from tests.e2e import invoke

DRIVER = f'"{sys.executable}" -m pipeline lock merge %O %A %B --marker-size %L --path %P'
Change = Callable[[Lockfile], None]


def entry(name: str, prompt: str = "", *, seed: int = 1, derived: bool = False) -> LockEntry:
    """A lock entry as a run writes it: the fingerprint is the request's."""
    prompt = prompt or f"{name} icon"
    request = {"backend": "local", "model": "m", "outputs": 1, "prompt": prompt, "seed": seed}
    fingerprint = fingerprint_of(request)
    output = OutputRecord(
        file=f"c/{name}.png",
        sha256=fingerprint,  # any sha256 will do: these files are never read
        size=100 + seed,
        width=64,
        height=64,
        asset_id=f"asset_{fingerprint[:8]}",
    )
    return LockEntry(fingerprint, request, seed_derived=derived, outputs=(output,))


def base_lock() -> Lockfile:
    lock = Lockfile(items={f"c/{n}": entry(n) for n in ("b", "d", "f", "h")})
    lock.items["c/h"] = entry("h", derived=True)  # its last line is `"seed_derived": true`
    lock.uploads["1" * 64] = "asset_upload_1"
    return lock


class Repo:
    """A git repository under tmp_path holding a lock, hermetic: no system or user config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = root / "assets.lock"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.env.update(HOME=str(root.parent), XDG_CONFIG_HOME=str(root.parent / ".config"))
        self.env.update(GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1")
        root.mkdir()
        self.git("init", "-q", "-b", "main")
        (root / ".gitattributes").write_text("assets.lock merge=pipeline-lock\n")
        write_lock(self.lock, base_lock())
        self.git("add", ".")
        self.git("commit", "-q", "-m", "base")

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
        command += ["-c", "commit.gpgsign=false", *args]
        done = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def use_driver(self) -> None:
        """The git config lines the README documents (the .gitattributes line is committed)."""
        self.git("config", "merge.pipeline-lock.name", "pipeline lockfile merge")
        self.git("config", "merge.pipeline-lock.driver", DRIVER)

    def branches(self, ours: Change, theirs: Change) -> None:
        """`theirs` changes the lock on branch `other`, `ours` on main; main is checked out."""
        for branch, change in (("other", theirs), ("main", ours)):
            if branch == "other":
                self.git("checkout", "-q", "-b", "other")
            else:
                self.git("checkout", "-q", "main")
            lock = read_lock(self.lock)
            change(lock)
            write_lock(self.lock, lock)
            self.git("commit", "-q", "-a", "-m", f"change on {branch}")

    def merge(self) -> subprocess.CompletedProcess[str]:
        return self.git("merge", "--no-edit", "other", check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "game")


def expected(ours: Change, theirs: Change) -> Lockfile:
    """The lock with both sides' changes: what a merge of changes that do not meet must give."""
    lock = base_lock()
    ours(lock)
    theirs(lock)
    return lock


def change(key: str, value: LockEntry | None) -> Change:
    def apply(lock: Lockfile) -> None:
        if value is None:
            del lock.items[key]
        else:
            lock.items[key] = value

    return apply


def both(*changes: Change) -> Change:
    def apply(lock: Lockfile) -> None:
        for one in changes:
            one(lock)

    return apply


# --- plain git ------------------------------------------------------------------------------

PLAIN_CASES = {
    "different items": (change("c/b", entry("b", "sword")), change("c/h", entry("h", "axe"))),
    "adjacent items": (change("c/d", entry("d", "sword")), change("c/f", entry("f", "axe"))),
    "first and last items": (change("c/b", entry("b", "x", seed=2)), change("c/h", entry("h"))),
    "additions at different places": (change("c/a", entry("a")), change("c/e", entry("e"))),
    "a deletion beside a change": (change("c/d", None), change("c/f", entry("f", "axe"))),
}


@pytest.mark.parametrize("case", PLAIN_CASES)
def test_plain_git_merges_branches_that_change_different_items(repo: Repo, case: str) -> None:
    ours, theirs = PLAIN_CASES[case]
    repo.branches(ours, theirs)
    done = repo.merge()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CONFLICT" not in done.stdout
    assert repo.lock.read_bytes() == render_lock(expected(ours, theirs))  # as a run writes it


# --- the merge driver -----------------------------------------------------------------------

DRIVER_CASES = {
    # two new icons sorted between the same neighbours: both insert after `c/b`'s block
    "both add items at the same place": (change("c/c1", entry("c1")), change("c/c2", entry("c2"))),
    # `}` of the last block becomes `},` on one side; the other rewrites the lines above it
    "an item added after the last while the last changes": (
        change("c/h", entry("h", seed=7)),
        change("c/z", entry("z")),
    ),
}


@pytest.mark.parametrize("case", DRIVER_CASES)
def test_plain_git_conflicts_where_the_driver_merges_cleanly(repo: Repo, case: str) -> None:
    ours, theirs = DRIVER_CASES[case]
    repo.branches(ours, theirs)
    plain = repo.merge()
    assert plain.returncode != 0
    assert "CONFLICT (content): Merge conflict in assets.lock" in plain.stdout
    repo.git("merge", "--abort")

    repo.use_driver()
    done = repo.merge()
    assert done.returncode == 0, done.stdout + done.stderr
    assert repo.lock.read_bytes() == render_lock(expected(ours, theirs))
    assert "assets.lock: merged cleanly: 1 item from ours, 1 from theirs" in done.stderr
    assert repo.git("status", "--porcelain").stdout == ""  # committed: nothing left to resolve


def test_a_plain_git_conflict_is_redone_by_the_driver_with_checkout_m(repo: Repo) -> None:
    ours, theirs = DRIVER_CASES["both add items at the same place"]
    repo.branches(ours, theirs)
    assert repo.merge().returncode != 0
    line = repo.lock.read_text().splitlines().index("<<<<<<< HEAD") + 1
    with pytest.raises(LockfileError) as info:
        read_lock(repo.lock)
    assert f"\n  {repo.lock}:{line}: c/c1, c/c2\n" in str(info.value)
    assert f"git checkout -m {repo.lock}" in str(info.value)

    repo.use_driver()
    repo.git("checkout", "-m", "assets.lock")
    assert read_lock(repo.lock) == expected(ours, theirs)


def test_a_real_conflict_is_marked_located_and_resolved_by_keeping_one_side(repo: Repo) -> None:
    ours_axe, theirs_axe = entry("d", "iron axe icon"), entry("d", "steel axe icon", seed=5)
    ours = both(change("c/d", ours_axe), change("c/b", entry("b", "sword")))
    theirs = both(change("c/d", theirs_axe), change("c/h", None))
    repo.use_driver()
    repo.branches(ours, theirs)
    done = repo.merge()
    assert done.returncode != 0
    assert "CONFLICT (content): Merge conflict in assets.lock" in done.stdout
    lines = repo.lock.read_text().splitlines()
    start, middle, end = (lines.index(m) for m in ("<<<<<<< ours", "=======", ">>>>>>> theirs"))
    assert f"assets.lock:{start + 1}: c/d: changed on both branches (prompt, seed)" in done.stderr
    assert "hint: in each conflict keep the block whose inputs match" in done.stderr
    assert "1 conflict left; merged around them: 1 item from ours, 1 from theirs" in done.stderr
    assert sum(1 for text in lines if text.startswith(("<<<<<<<", "=======", ">>>>>>>"))) == 3

    merged = expected(ours, theirs)
    for kept, side in (
        (lines[start + 1 : middle], ours_axe),
        (lines[middle + 1 : end], theirs_axe),
    ):
        repo.lock.write_text("\n".join([*lines[:start], *kept, *lines[end + 1 :]]) + "\n")
        merged.items["c/d"] = side
        assert read_lock(repo.lock) == merged
        assert repo.lock.read_bytes() == render_lock(merged)


def test_plan_on_a_conflicted_lock_exits_2_naming_the_item(repo: Repo) -> None:
    (repo.root / "manifests").mkdir()
    (repo.root / "manifests" / "c.yaml").write_text(
        "collection: c\nitems:\n  - id: d\n    model: m\n    prompt: axe icon\n"
    )
    repo.use_driver()
    repo.branches(change("c/d", entry("d", "iron axe")), change("c/d", entry("d", "steel axe")))
    assert repo.merge().returncode != 0
    line = repo.lock.read_text().splitlines().index("<<<<<<< ours") + 1
    result = invoke(repo.root, "plan")
    assert result.exit_code == 2
    assert "has unresolved git merge conflict markers" in result.stderr
    assert f"{repo.lock}:{line}: c/d\n" in result.stderr


def test_a_deletion_against_a_change_keeps_the_change_and_uploads_are_united(repo: Repo) -> None:
    changed = entry("f", "golden shield")

    def ours(lock: Lockfile) -> None:
        lock.items["c/f"] = changed
        lock.uploads["2" * 64] = "asset_upload_2"
        lock.trainings["3" * 64] = "model_ours"

    def theirs(lock: Lockfile) -> None:
        del lock.items["c/f"]  # pruned on the other branch
        lock.uploads["4" * 64] = "asset_upload_4"
        lock.trainings["3" * 64] = "model_theirs"

    repo.use_driver()
    repo.branches(ours, theirs)
    done = repo.merge()
    assert done.returncode == 0, done.stdout + done.stderr
    merged = read_lock(repo.lock)
    assert merged.items["c/f"] == changed
    assert merged.uploads == {
        "1" * 64: "asset_upload_1",
        "2" * 64: "asset_upload_2",
        "4" * 64: "asset_upload_4",
    }
    assert merged.trainings == {"3" * 64: "model_ours"}
    assert "assets.lock: c/f: deleted on theirs, changed on ours: the change is kept" in done.stderr
    assert f"trainings {'3' * 64}: model_ours on ours, model_theirs on theirs: ours kept" in (
        done.stderr
    )
    assert "merged cleanly: 1 item from ours, 0 from theirs, 0 the same on both; 2 notes" in (
        done.stderr
    )


# --- the command on plain files -------------------------------------------------------------


def lock_files(tmp_path: Path, base: Lockfile | None, ours: Lockfile, theirs: Lockfile) -> Path:
    """base/ours/theirs files as git hands them to a driver; None writes an empty base."""
    (tmp_path / "base").write_bytes(b"" if base is None else render_lock(base))
    (tmp_path / "ours").write_bytes(render_lock(ours))
    (tmp_path / "theirs").write_bytes(render_lock(theirs))
    return tmp_path


def merge_command(tmp_path: Path, *options: str) -> tuple[int, str]:
    files = [str(tmp_path / name) for name in ("base", "ours", "theirs")]
    result = invoke(tmp_path, "lock", "merge", *files, *options)
    return result.exit_code, result.stderr


def test_a_lock_added_on_both_branches_merges_from_an_empty_base(tmp_path: Path) -> None:
    ours = Lockfile(items={"c/a": entry("a"), "c/same": entry("same")})
    theirs = Lockfile(items={"c/b": entry("b"), "c/same": entry("same")})
    lock_files(tmp_path, None, ours, theirs)
    code, stderr = merge_command(tmp_path, "--path", "assets.lock")
    assert code == 0, stderr
    assert (
        stderr
        == "assets.lock: merged cleanly: 1 item from ours, 1 from theirs, 1 the same on both\n"
    )
    assert read_lock(tmp_path / "ours").items.keys() == {"c/a", "c/b", "c/same"}


def test_the_marker_size_is_git_s(tmp_path: Path) -> None:
    base = base_lock()
    ours, theirs = base_lock(), base_lock()
    ours.items["c/b"], theirs.items["c/b"] = entry("b", "red"), entry("b", "blue")
    lock_files(tmp_path, base, ours, theirs)
    code, stderr = merge_command(tmp_path, "--marker-size", "10", "--path", "art/assets.lock")
    assert code == 1
    assert "art/assets.lock:3: c/b: changed on both branches (prompt)\n" in stderr
    lines = (tmp_path / "ours").read_text().splitlines()
    assert lines[2] == "<" * 10 + " ours"
    assert ">" * 10 + " theirs" in lines


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (b'{"items": {', "the theirs side is not valid JSON"),
        (b'{"version": 9, "items": {}}', "the theirs side was written by a newer pipeline"),
        (b"<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> x\n", "the theirs side has unresolved git"),
    ],
)
def test_a_side_that_is_not_a_lockfile_is_merged_as_text(
    tmp_path: Path, broken: bytes, why: str
) -> None:
    ours = base_lock()
    ours.items["c/b"] = entry("b", "red")
    lock_files(tmp_path, base_lock(), ours, base_lock())
    (tmp_path / "theirs").write_bytes(broken)
    code, stderr = merge_command(tmp_path, "--path", "assets.lock")
    assert code == 1
    assert f"assets.lock: {why}" in stderr
    assert "merged as plain text by `git merge-file` instead (1 conflict left" in stderr
    text = (tmp_path / "ours").read_text()
    assert text.startswith("<<<<<<< ours\n")
    assert "\n>>>>>>> theirs\n" in text


# --- the three-way merge, unit by unit ------------------------------------------------------

A, A2, A3 = entry("a"), entry("a", "changed"), entry("a", "changed again")
REGENERATED = LockEntry(A2.fingerprint, A2.request, outputs=())  # same inputs, other files

ITEM_CASES = [
    # base, ours, theirs -> merged (None: absent), conflict, notes
    pytest.param(A, A, A2, A2, False, 0, id="changed on theirs only"),
    pytest.param(A, A2, A, A2, False, 0, id="changed on ours only"),
    pytest.param(A, A2, A2, A2, False, 0, id="the same change on both"),
    pytest.param(A, None, A, None, False, 0, id="deleted on ours, untouched on theirs"),
    pytest.param(A, A, None, None, False, 0, id="deleted on theirs, untouched on ours"),
    pytest.param(A, None, None, None, False, 0, id="deleted on both"),
    pytest.param(A, None, A2, A2, False, 1, id="deleted on ours, changed on theirs"),
    pytest.param(A, A2, None, A2, False, 1, id="changed on ours, deleted on theirs"),
    pytest.param(A, A2, REGENERATED, A2, False, 1, id="regenerated on both: ours"),
    pytest.param(A, A2, A3, None, True, 0, id="changed on both differently"),
    pytest.param(None, A2, A2, A2, False, 0, id="added on both, the same"),
    pytest.param(None, A2, A3, None, True, 0, id="added on both, differently"),
    pytest.param(None, None, A2, A2, False, 0, id="added on theirs"),
]


@pytest.mark.parametrize(("base", "ours", "theirs", "merged", "conflict", "notes"), ITEM_CASES)
def test_three_way_merge_of_one_item(
    base: LockEntry | None,
    ours: LockEntry | None,
    theirs: LockEntry | None,
    merged: LockEntry | None,
    conflict: bool,
    notes: int,
) -> None:
    def lock(value: LockEntry | None) -> Lockfile:
        return Lockfile(items={"c/z": entry("z"), **({"c/a": value} if value else {})})

    result = merge_locks(lock(base), lock(ours), lock(theirs))
    assert result.lock.items.get("c/a") == merged
    assert result.lock.items["c/z"] == entry("z")
    assert [c.key for c in result.conflicts] == (["c/a"] if conflict else [])
    assert len(result.notes) == notes


def test_a_conflict_names_the_inputs_that_differ() -> None:
    ours = LockEntry("1" * 64, {"prompt": "a", "seed": 1, "params": {"guidance": 3, "steps": 9}})
    theirs = LockEntry("2" * 64, {"prompt": "a", "seed": 2, "params": {"guidance": 4, "steps": 9}})
    same_inputs = LockEntry("3" * 64, dict(ours.request))
    result = merge_locks(
        Lockfile(),
        Lockfile(items={"c/x": ours, "c/y": ours}),
        Lockfile(items={"c/x": theirs, "c/y": same_inputs}),
    )
    assert [(c.key, c.differences, c.added) for c in result.conflicts] == [
        ("c/x", ("params.guidance", "seed"), True),
        ("c/y", ("recipe",), True),
    ]


@pytest.mark.parametrize("position", ["c/a", "c/e", "c/z"])  # first, middle, last
def test_deleting_one_side_of_a_rendered_conflict_gives_render_lock_bytes(position: str) -> None:
    lock = base_lock()
    ours, theirs = entry(position[2:], "ours"), entry(position[2:], "theirs")
    text = render_conflicted(lock, {position: (ours, theirs)}).decode()
    before, rest = text.split("<<<<<<< ours\n")
    ours_text, rest = rest.split("=======\n")
    theirs_text, after = rest.split(">>>>>>> theirs\n")
    for kept, side in ((ours_text, ours), (theirs_text, theirs)):
        lock.items[position] = side
        assert (before + kept + after).encode() == render_lock(lock)


def test_conflicts_outside_the_items_name_their_section(repo: Repo) -> None:
    def ours(lock: Lockfile) -> None:
        lock.uploads["2" * 64] = "asset_ours"

    def theirs(lock: Lockfile) -> None:
        lock.uploads["2" * 64] = "asset_theirs"

    repo.git("config", "merge.conflictStyle", "diff3")
    repo.branches(ours, theirs)
    assert repo.merge().returncode != 0
    line = repo.lock.read_text().splitlines().index("<<<<<<< HEAD") + 1
    with pytest.raises(LockfileError, match=rf"assets\.lock:{line}: uploads\n"):
        read_lock(repo.lock)
