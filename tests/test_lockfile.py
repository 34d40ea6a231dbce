from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import LockfileError
from pipeline.lockfile import (
    LOCK_VERSION,
    LockEntry,
    Lockfile,
    OutputRecord,
    StageRecord,
    _entry_json,
    read_lock,
    render_lock,
    write_lock,
)

GOLDEN = Path(__file__).parent / "golden" / "assets.lock"
SHA = "a" * 64


def sample_lock() -> Lockfile:
    """Built in a deliberately unsorted order: the bytes must not depend on it."""
    lock = Lockfile()
    lock.items["ui-icons/iron-sword"] = LockEntry(
        fingerprint="1" * 64,
        request={
            "seed": 42,
            "prompt": "iron sword icon",
            "model": "model_bfl-flux-2-dev",
            "backend": "local",
            "outputs": 1,
            "params": {"guidance": 3.5},
        },
        outputs=(
            OutputRecord(
                file="ui-icons/iron-sword.png",
                sha256=SHA,
                size=1234,
                width=512,
                height=512,
                asset_id="asset_abc",
            ),
        ),
    )
    lock.items["characters/knight-angry"] = LockEntry(
        fingerprint="2" * 64,
        request={
            "prompt": "portrait of a knight, ünïcode ok",
            "seed": 99,
            "backend": "local",
            "model": "model_bfl-flux-2-dev",
            "outputs": 2,
        },
        seed_derived=True,
        outputs=(
            OutputRecord(
                file="characters/knight-angry_1.png",
                sha256=SHA,
                size=10,
                width=8,
                height=8,
                asset_id="asset_1",
            ),
            OutputRecord(
                file="characters/knight-angry_2.png",
                sha256=SHA,
                size=10,
                width=8,
                height=8,
                asset_id="asset_2",
            ),
        ),
    )
    lock.items["ui-icons/gold-coin"] = LockEntry(
        fingerprint="3" * 64,
        request={"backend": "scenario", "model": "m", "prompt": "coin", "seed": 1, "outputs": 1,
                 "image": "b" * 64, "then": [{"model": "upscaler", "params": {"scale": 2}}]},
        outputs=(
            OutputRecord("ui-icons/gold-coin.png", SHA, 20, 16, 16, "asset_up", "A gold coin"),
        ),
        stages=(
            StageRecord(
                "4" * 64,
                ("asset_gen",),
                (OutputRecord("ui-icons/gold-coin.cut.png", SHA, 9, 8, 8),),
            ),
        ),
        remote_collection="collection_1",
    )  # fmt: skip
    lock.uploads["b" * 64] = "asset_sketch"
    lock.trainings["c" * 64] = "model_trained"
    lock.collections["ui-icons"] = "collection_1"
    return lock


def test_matches_the_golden_file() -> None:
    assert render_lock(sample_lock()) == GOLDEN.read_bytes()


def test_round_trip_rewrites_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "assets.lock"
    assert write_lock(path, sample_lock()) is True
    first = path.read_bytes()
    stat = path.stat()
    assert write_lock(path, read_lock(path)) is False  # nothing to write: untouched
    assert path.read_bytes() == first
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def test_rendering_has_no_timestamps_and_sorted_keys() -> None:
    text = render_lock(sample_lock()).decode()
    assert text.index('"characters/knight-angry"') < text.index('"ui-icons/iron-sword"')
    assert f'"version": {LOCK_VERSION}' in text
    assert text.endswith("}\n")


def test_missing_lock_is_empty(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "assets.lock") == Lockfile()


def test_lock_from_a_newer_pipeline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "assets.lock"
    path.write_text('{"version": 99, "items": {}, "futureField": 1}')
    with pytest.raises(LockfileError, match=r"newer pipeline \(lock version 99") as info:
        read_lock(path)
    assert info.value.exit_code == 2
    assert "upgrade" in str(info.value)


def test_merge_conflict_markers_are_named(tmp_path: Path) -> None:
    path = tmp_path / "assets.lock"
    text = render_lock(sample_lock()).decode()
    path.write_text("<<<<<<< HEAD\n" + text + "=======\n" + text + ">>>>>>> branch\n")
    with pytest.raises(LockfileError, match="merge conflict markers"):
        read_lock(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "is not valid JSON"),
        ("[1, 2]", "top level is not an object"),
        ('{"items": {}}', "no integer 'version'"),
        (
            '{"version": 1, "items": {"a/b": {"fingerprint": "xyz", "request": {}}}}',
            "malformed at items.a/b.fingerprint",
        ),
        ('{"version": 1, "items": {}, "extra": 1}', "malformed at extra"),
    ],
)
def test_unreadable_lock_says_where(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "assets.lock"
    path.write_text(text)
    with pytest.raises(LockfileError, match=expected):
        read_lock(path)


@pytest.mark.parametrize("bad", ["../escape.png", "/etc/passwd", "a/../../b.png", "a\\b.png", ""])
def test_output_paths_must_stay_inside_the_output_folder(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "assets.lock"
    output = {"file": bad, "sha256": SHA, "size": 1, "width": 1, "height": 1}
    entry = {"fingerprint": "1" * 64, "request": {}, "outputs": [output]}
    path.write_text(json.dumps({"version": 1, "items": {"c/i": entry}}))
    with pytest.raises(LockfileError, match=r"outputs\.0\.file"):
        read_lock(path)


def test_failed_write_keeps_the_previous_lock_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "assets.lock"
    write_lock(path, Lockfile())
    before = path.read_bytes()

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(LockfileError, match="cannot be written: No space left"):
        write_lock(path, sample_lock())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets.lock"]


_keys = st.text(min_size=1, max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    requests=st.dictionaries(
        _keys, st.dictionaries(st.text(max_size=6), _json, max_size=4), max_size=6
    ),
    uploads=st.dictionaries(_keys, st.text(max_size=10), max_size=3),
    trainings=st.dictionaries(_keys, st.text(max_size=10), max_size=3),
    collections=st.dictionaries(_keys, st.text(max_size=10), max_size=2),
)
@settings(max_examples=150, deadline=None)
def test_render_is_the_plain_json_of_the_whole_document(
    requests: dict[str, dict[str, Any]],
    uploads: dict[str, str],
    trainings: dict[str, str],
    collections: dict[str, str],
) -> None:
    lock = Lockfile(uploads=uploads, trainings=trainings, collections=collections)
    for n, (key, request) in enumerate(requests.items()):
        lock.items[key] = LockEntry(
            fingerprint=f"{n:064x}", request=request, seed_derived=n % 2 == 0
        )
    doc = {
        "version": LOCK_VERSION,
        "items": {key: _entry_json(entry) for key, entry in lock.items.items()},
        "uploads": uploads,
        "trainings": trainings,
    }
    if collections:  # left out when empty
        doc["collections"] = collections
    plain = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert render_lock(lock).decode() == plain
    # the cached blocks give the same bytes again, and follow a replaced entry
    assert render_lock(lock).decode() == plain
    if requests:
        key = next(iter(requests))
        lock.items[key] = LockEntry(fingerprint="f" * 64, request={"changed": True})
        doc["items"][key] = _entry_json(lock.items[key])
        assert (
            render_lock(lock).decode()
            == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )


def test_a_version_1_lock_is_read_and_written_back_as_version_2(tmp_path: Path) -> None:
    path = tmp_path / "assets.lock"
    old = render_lock(sample_lock()).decode()
    doc = json.loads(old)
    doc["version"] = 1
    del doc["collections"], doc["items"]["ui-icons/gold-coin"]
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    lock = read_lock(path)
    assert set(lock.items) == {"characters/knight-angry", "ui-icons/iron-sword"}
    write_lock(path, lock)
    assert json.loads(path.read_text())["version"] == LOCK_VERSION == 2
