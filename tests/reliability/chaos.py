"""Crash chaos: run `pipeline run` as a real process, SIGKILL it at chosen moments, check the repo.

A kill is aimed at a moment by watching the repo from outside while the run works (the tree is
small, so a scan takes well under a millisecond):
  random          after a random delay (seeded)
  intent          when a journal file in .pipeline/jobs/ appears or changes (right around a POST)
  download-temp   when a `.<name>.part` download temp file appears under output/
  output          when a new output file has just been renamed into place
  lock-temp       when the lockfile's temp file (`.assets.lock.*.tmp`) exists
  lock-change     right after assets.lock was replaced (the rename has just happened)
  any-temp        when any `*.tmp` exists (journal, stat cache, index.json, lock writes)
A watched moment that does not come within its fallback delay becomes a random kill (recorded as
such). The invariants checked between kills and at the end are below (`check_*`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.lockfile import read_lock

TRIGGERS = (
    "random",
    "intent",
    "download-temp",
    "output",
    "lock-temp",
    "lock-change",
    "any-temp",
)
TEMP_SUFFIXES = (".part", ".tmp")
_POLL = 0.001


@dataclass(frozen=True)
class Scan:
    """What the repo looks like at one instant, as far as the chaos harness cares."""

    lock_mtime: int | None
    temps: tuple[str, ...]
    intents: frozenset[tuple[str, int]]  # (name, mtime_ns) of the journal files
    outputs: int

    @classmethod
    def of(cls, root: Path) -> Scan:
        temps: list[str] = []
        outputs = 0
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(TEMP_SUFFIXES):
                    temps.append(os.path.relpath(os.path.join(folder, name), root))
                elif name.endswith(".png"):
                    outputs += 1
        intents: set[tuple[str, int]] = set()
        try:
            with os.scandir(root / ".pipeline" / "jobs") as entries:
                for entry in entries:
                    if entry.name.endswith(".json"):
                        with contextlib.suppress(FileNotFoundError):
                            intents.add((entry.name, entry.stat().st_mtime_ns))
        except FileNotFoundError:
            pass
        try:
            lock_mtime: int | None = (root / "assets.lock").stat().st_mtime_ns
        except FileNotFoundError:
            lock_mtime = None
        return cls(lock_mtime, tuple(sorted(temps)), frozenset(intents), outputs)


def fired(trigger: str, before: Scan, now: Scan) -> bool:
    """Whether the watched moment of `trigger` has come."""
    if trigger == "intent":
        return now.intents - before.intents != frozenset()
    if trigger == "download-temp":
        return any(t.endswith(".part") for t in now.temps)
    if trigger == "output":
        return now.outputs > before.outputs
    if trigger == "lock-temp":
        return any(re.fullmatch(r"\.assets\.lock\..*\.tmp", t) for t in now.temps)
    if trigger == "lock-change":
        return now.lock_mtime != before.lock_mtime
    if trigger == "any-temp":
        return any(t.endswith(".tmp") for t in now.temps)
    return False


@dataclass
class Attempt:
    """One started run and what happened to it."""

    trigger: str
    outcome: str  # "killed" (aimed moment), "killed-fallback" (random), "finished"
    seconds: float
    exit_code: int | None
    temps_at_kill: tuple[str, ...] = ()
    intents_at_kill: int = 0

    @property
    def phase(self) -> str:
        """Where the run was when it died, read from the files it had on disk then."""
        if self.outcome == "finished":
            return f"finished (exit {self.exit_code})"
        kinds = sorted({_temp_kind(t) for t in self.temps_at_kill})
        writing = f" while writing {'+'.join(kinds)}" if kinds else ""
        intents = "intents open" if self.intents_at_kill else "no intent open"
        return f"{intents}{writing}"


def _temp_kind(path: str) -> str:
    name = Path(path).name
    if name.endswith(".part"):
        return "download"
    for kind in ("assets.lock", "index.json", "stat-cache.json"):
        if name.startswith(f".{kind}."):
            return kind
    return "journal" if "jobs" in Path(path).parts else "other"


def pipeline_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "-C", str(root), *args]


def run_and_kill(
    root: Path,
    env: dict[str, str],
    args: list[str],
    trigger: str,
    delay: float,
) -> Attempt:
    """Start a run; SIGKILL it when `trigger` fires or `delay` seconds pass, whichever is first."""
    before = Scan.of(root)
    started = time.monotonic()
    process = subprocess.Popen(
        pipeline_command(root, *args),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            code = process.poll()
            if code is not None:
                return Attempt(trigger, "finished", time.monotonic() - started, code)
            now = Scan.of(root)
            aimed = fired(trigger, before, now)
            if aimed or time.monotonic() - started >= delay:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(30)
                outcome = "killed" if aimed else "killed-fallback"
                if process.returncode != -signal.SIGKILL:  # it ended on its own just before
                    outcome = "finished"
                return Attempt(
                    trigger,
                    outcome,
                    time.monotonic() - started,
                    process.returncode,
                    temps_at_kill=now.temps,
                    intents_at_kill=len(now.intents),
                )
            time.sleep(_POLL)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


@dataclass
class Tally:
    """Figures for the report."""

    attempts: list[Attempt] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(a.outcome != "finished" for a in self.attempts)

    def summary(self) -> str:
        triggers = Counter(f"{a.trigger}:{a.outcome}" for a in self.attempts)
        phases = Counter(a.phase for a in self.attempts)
        lines = [f"kills: {self.kills} of {len(self.attempts)} runs started"]
        lines += [f"  {k}: {v}" for k, v in sorted(triggers.items())]
        lines.append("phases at kill:")
        lines += [f"  {k}: {v}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def tag_prompts(root: Path, tag: str) -> None:
    """Make every request of this repo unique to one chaos round: a suffix on each prompt, and
    each input file saved again with the tag in a PNG text chunk (the same pixels, other bytes:
    other uploads, another training).

    Rounds share one emulator, whose duplicate counters must only see work paid (or uploaded)
    twice *within* the runs that should have shared it.
    """
    from PIL import Image, PngImagePlugin

    for picture in sorted((root / "refs").rglob("*.png")):
        info = PngImagePlugin.PngInfo()
        info.add_text("chaos", tag)
        with Image.open(picture) as image:
            image.load()
            image.save(picture, pnginfo=info)
    for manifest in (root / "manifests").glob("*.yaml"):
        lines = []
        for line in manifest.read_text().splitlines():
            match = re.match(r"^(\s*prompt: )(.*)$", line)
            if match:
                head, value = match.groups()
                quoted = value.endswith('"')
                value = f'{value[:-1]}, {tag}"' if quoted else f"{value}, {tag}"
                line = head + value
            lines.append(line)
        manifest.write_text("\n".join(lines) + "\n")


def temp_files(root: Path) -> list[Path]:
    """Temp files anywhere in the repo (download parts, atomic-write temps)."""
    return sorted(p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIXES))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_lock_matches_disk(root: Path) -> int:
    """The lock parses, and every file it records exists with the recorded size and sha256.

    This must hold at every instant, not just at the end: a locked result is a paid result.
    Returns the number of outputs checked.
    """
    lock = read_lock(root / "assets.lock")
    checked = 0
    for key, entry in lock.items.items():
        for record in entry.files():  # outputs and kept intermediate results
            path = root / "output" / record.file
            assert path.is_file(), f"{key}: the lock records {record.file}, which is missing"
            assert path.stat().st_size == record.size, f"{key}: {record.file} has the wrong size"
            assert sha256(path) == record.sha256, f"{key}: {record.file} does not match the lock"
            checked += 1
    return checked


def check_final(root: Path, *, items: int, files: int) -> None:
    """After the last, uninterrupted run: everything done, whole, locked, and nothing left over
    (no temp file of any write, no journal intent)."""
    assert check_lock_matches_disk(root) == files
    lock = read_lock(root / "assets.lock")
    assert len(lock.items) == items
    pngs = sorted((root / "output").rglob("*.png"))
    assert len(pngs) == files, [p.name for p in pngs]
    for png in pngs:
        with Image.open(png) as image:
            image.load()  # decodes whole: no truncated file slipped through
    locked = {r.file for e in lock.items.values() for r in e.files()}
    assert {p.relative_to(root / "output").as_posix() for p in pngs} == locked
    left = [path.relative_to(root).as_posix() for path in temp_files(root)]
    assert left == [], f"temp files left behind: {left}"
    jobs = root / ".pipeline" / "jobs"
    intents = sorted(path.name for path in jobs.iterdir()) if jobs.exists() else []
    held = {name: (jobs / name).read_text() for name in intents}
    assert intents == [], f"journal intents left behind: {held}; lock uploads {lock.uploads}"
