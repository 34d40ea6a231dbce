"""Suite 7, disk full and read-only places: a write that fails never costs what was there.

Disk full is simulated by making `os.fsync` of a regular file raise ENOSPC from its Nth call on
(every durable write goes through one: downloads before their rename, `files.write_atomic` before
its rename), optionally only for some paths; read-only places by `os.replace` raising EROFS, or,
when not running as root, by chmod. The promises: the lockfile is whole (the old one, or a new
complete one), every file on disk is whole, no temp file is left behind, the run says what failed
(exit 1 with a per-item reason, or exit 2 naming the lockfile) with no traceback, and a rerun on
a healthy disk completes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pipeline.backend
from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.imagecheck import check_image
from pipeline.lockfile import read_lock
from tests.e2e import FAST, copy_examples, invoke
from tests.reliability.conftest import FULL

ROOT_USER = os.geteuid() == 0
ENV = {"NO_COLOR": "1"}
UI = "ui-icons"  # the collection whose prompts the tests change: 9 items, 10 files


def _fast_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pipeline.backend, "local_emulator", lambda: Emulator(EmulatorConfig(**FAST))
    )


@pytest.fixture(autouse=True)
def _local(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's local backend is a fast in-process emulator."""
    _fast_local(monkeypatch)


@pytest.fixture(scope="module")
def _settled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example game after one complete run, made once and copied per test."""
    root = copy_examples(tmp_path_factory.mktemp("settled"))
    mp = pytest.MonkeyPatch()
    _fast_local(mp)
    try:
        assert invoke(root, "run", env=ENV).exit_code == 0
    finally:
        mp.undo()
    return root


@dataclass
class Snapshot:
    """Every file of a repo's output and its lock, as bytes."""

    lock: bytes
    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, root: Path) -> Snapshot:
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in (root / "output").rglob("*")
            if p.is_file()
        }
        return cls((root / "assets.lock").read_bytes(), files)


@pytest.fixture
def game(_settled: Path, tmp_path: Path) -> Path:
    """A settled game whose ui-icons prompts were just edited: `run` regenerates 9 items."""
    root = tmp_path / "game"
    shutil.copytree(_settled, root)
    manifest = root / "manifests" / f"{UI}.yaml"
    manifest.write_text(manifest.read_text().replace("pixel art", "pixel-art"))
    return root


def _path_of(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@dataclass
class DiskFull:
    """Make fsync of regular files raise ENOSPC from the `after`th matching call on."""

    after: int
    sticky: bool = True  # a full disk stays full; False: only that one write fails
    only: Callable[[str], bool] = lambda path: True
    calls: int = 0
    failed: int = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = os.fsync

        def fsync(fd: int) -> None:
            if stat.S_ISREG(os.fstat(fd).st_mode) and self.only(_path_of(fd)):
                self.calls += 1
                if self.calls == self.after or (self.sticky and self.calls > self.after):
                    self.failed += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def _not_state(path: str) -> bool:
    """Outputs and the lockfile: what the design's write promises cover (not index/state)."""
    name = os.path.basename(path)
    return ".pipeline" not in path and not name.startswith(".index.json")


def assert_whole(root: Path, before: Snapshot) -> None:
    """The lock reads; every output is a whole image; no temp file; other collections as before."""
    read_lock(root / "assets.lock")
    leftovers = [p for p in root.rglob(".*") if p.suffix in (".tmp", ".part")]
    assert not leftovers, leftovers
    after = Snapshot.of(root)
    for name, data in after.files.items():
        if name.endswith(".png"):
            check_image(root / name)
        if not name.startswith(f"output/{UI}/"):
            assert data == before.files[name], f"{name} changed"


def assert_recovers(root: Path) -> None:
    """On a healthy disk the next run completes, and the lock matches every file on disk."""
    result = invoke(root, "run", env=ENV)
    assert result.exit_code == 0, result.stderr
    lock = read_lock(root / "assets.lock")
    assert len(lock.items) == 21
    for entry in lock.items.values():
        for record in entry.outputs:
            data = (root / "output" / record.file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.sha256


def assert_said_what_failed(
    result_stderr: str, exit_code: int, before: Snapshot, root: Path
) -> None:
    """Exit 1 names each failed item and the disk's reason; exit 2 names the intact lockfile."""
    assert "Traceback" not in result_stderr
    if exit_code == 1:
        assert "cannot write (No space left on device)" in result_stderr
        assert "item(s) failed" in result_stderr
    elif exit_code == 2:  # the lock may hold what an earlier flush of this run wrote
        assert "assets.lock: cannot be written: No space left on device" in result_stderr
        assert "the previous lock is intact" in result_stderr
    else:
        assert exit_code == 0, result_stderr


# A run of the edited game fsyncs 10 downloads and at least one lock: 11 points always exist.
_POINTS = list(range(1, 12)) if FULL else [1, 3, 7, 11]


@pytest.mark.parametrize("sticky", [True, False], ids=["stays-full", "one-write"])
@pytest.mark.parametrize("after", _POINTS)
def test_disk_full_at_the_nth_write_keeps_the_lock_and_files_whole(
    game: Path, monkeypatch: pytest.MonkeyPatch, after: int, sticky: bool
) -> None:
    """ENOSPC at the Nth output/lock write (and after, or just that one): whole files, a whole
    lock, a reason per failed item or for the lock, no traceback; a rerun then completes."""
    before = Snapshot.of(game)
    disk = DiskFull(after, sticky=sticky, only=_not_state)
    disk.install(monkeypatch)
    result = invoke(game, "run", env=ENV)
    assert disk.failed, "the fault point was never reached: lower it"
    assert_said_what_failed(result.stderr, result.exit_code, before, game)
    if sticky:  # a full disk that stays full must fail something; one lost periodic lock
        assert result.exit_code != 0  # flush may be made good by the final flush (exit 0)
    assert_whole(game, before)
    monkeypatch.undo()
    _fast_local(monkeypatch)
    assert_recovers(game)


def test_a_lockfile_that_cannot_be_replaced_keeps_its_old_bytes(
    game: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only lock (rename refused, EROFS): exit 2 naming it, old bytes, no temp file."""
    before = Snapshot.of(game)
    real = os.replace

    def replace(src: str, dst: str) -> None:
        if os.path.basename(dst) == "assets.lock":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    result = invoke(game, "run", env=ENV)
    assert result.exit_code == 2, result.stderr
    assert "assets.lock: cannot be written: Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr
    assert (game / "assets.lock").read_bytes() == before.lock
    assert_whole(game, before)


def test_prune_whose_lock_write_fails_keeps_the_lock(
    game: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prune` on a full disk: exit 2 naming the lockfile, old lock bytes, no traceback."""
    (game / "manifests" / "tiles.yaml").unlink()  # 5 orphans
    before = Snapshot.of(game)
    DiskFull(1).install(monkeypatch)
    result = invoke(game, "prune", env=ENV)
    assert result.exit_code == 2, result.stderr
    assert "cannot be written: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert (game / "assets.lock").read_bytes() == before.lock


def test_a_lockfile_folder_that_is_not_a_folder_is_exit_2(game: Path) -> None:
    """`lockfile: locks/assets.lock` where `locks` is a file (unwritable as root too): exit 2."""
    (game / "pipeline.yaml").write_text("lockfile: locks/assets.lock\n")
    (game / "locks").write_text("not a folder")
    for command in (["plan"], ["run"], ["prune"]):
        result = invoke(game, *command, env=ENV)
        assert result.exit_code == 2, (command, result.stderr)
        assert "locks/assets.lock" in result.stderr
        assert "Traceback" not in result.stderr
    assert (game / "locks").read_text() == "not a folder"


def test_an_index_json_that_cannot_be_written_is_reported(
    game: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full when index.json is written: exit 1 or 2 with a message, no traceback."""
    before = Snapshot.of(game)
    DiskFull(1, only=lambda path: os.path.basename(path).startswith(".index.json")).install(
        monkeypatch
    )
    result = invoke(game, "run", env=ENV)  # raises OSError today
    assert result.exit_code in (1, 2)
    assert "index.json" in result.stderr
    assert (game / "output" / UI / "index.json").read_bytes() == before.files[
        f"output/{UI}/index.json"
    ]


def test_a_stat_cache_that_cannot_be_written_does_not_fail_the_run(
    game: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full for .pipeline/stat-cache.json only: the run still ends 0 (a cache, not data)."""
    DiskFull(1, only=lambda path: "stat-cache.json" in path).install(monkeypatch)
    result = invoke(game, "run", env=ENV)  # raises OSError today
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("command", ["run", "prune"])
def test_an_unwritable_state_folder_is_reported(game: Path, command: str) -> None:
    """`.pipeline` is a file (as unwritable as a read-only folder, even for root): a clear exit 2
    (or 1) naming it, no traceback, the lock unchanged."""
    shutil.rmtree(game / ".pipeline", ignore_errors=True)
    (game / ".pipeline").write_text("in the way")
    before = Snapshot.of(game)
    result = invoke(game, command, env=ENV)  # raises FileExistsError today
    assert result.exit_code in (1, 2)
    assert ".pipeline" in result.stderr
    assert (game / "assets.lock").read_bytes() == before.lock


# --- chmod: meaningful only when not root -------------------------------------------------------


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """read_only(folder): chmod a-w, undone at teardown (so tmp_path can be cleaned)."""
    changed: list[tuple[Path, int]] = []

    def make(folder: Path) -> None:
        changed.append((folder, folder.stat().st_mode))
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)

    yield make
    for folder, mode in reversed(changed):
        folder.chmod(mode)


@pytest.mark.skipif(ROOT_USER, reason="root ignores chmod; the monkeypatched variants cover it")
def test_a_read_only_output_folder_fails_each_item_with_a_reason(
    game: Path, read_only: Callable[[Path], None]
) -> None:
    """chmod a-w output/ui-icons: exit 1, a reason per item, the old files and lock intact."""
    before = Snapshot.of(game)
    read_only(game / "output" / UI)
    result = invoke(game, "run", env=ENV)
    assert result.exit_code == 1, result.stderr
    assert "9 item(s) failed" in result.stderr
    assert "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert Snapshot.of(game).files == before.files


@pytest.mark.skipif(ROOT_USER, reason="root ignores chmod; the monkeypatched variants cover it")
def test_a_read_only_lockfile_folder_is_exit_2_with_the_lock_intact(
    game: Path, read_only: Callable[[Path], None]
) -> None:
    """Lockfile in a chmod a-w folder: exit 2 naming it, the old lock's bytes kept."""
    (game / "locks").mkdir()
    (game / "locks" / "assets.lock").write_bytes((game / "assets.lock").read_bytes())
    (game / "pipeline.yaml").write_text("lockfile: locks/assets.lock\n")
    before = (game / "locks" / "assets.lock").read_bytes()
    read_only(game / "locks")
    result = invoke(game, "run", env=ENV)
    assert result.exit_code == 2, result.stderr
    assert "cannot be written: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert (game / "locks" / "assets.lock").read_bytes() == before
