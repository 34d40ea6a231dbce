"""Local input files: the reference images, sketches and training images manifests name.

A path is relative to the project root (like `output` and the lockfile), written with `/`; a
list may hold globs, each expanded in sorted order. Every file is read once per load: checked to
be an image the API takes (PNG, JPEG or WebP, under the 6 MB `POST /assets` limit) and hashed.
The hash, never the path, goes into fingerprints: replacing a file's content regenerates what
uses it, moving or renaming it does not. Problems are reported as `Issue`s at the manifest key.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.yamlsrc import Issue, Key

MAX_UPLOAD_BYTES = 6 * 1024 * 1024  # POST /assets takes images under 6 MB
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))


@dataclass(frozen=True, slots=True)
class InputFile:
    """A local file sent to the API: where it is (posix, from the project root) and its hash."""

    path: str
    sha256: str
    mime_type: str = "image/png"
    width: int = 0
    height: int = 0

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


class InputFiles:
    """Resolves and checks the input files of one load, each file read once however often used."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[str, InputFile | str] = {}  # path -> the file, or why it is unusable

    def one(self, value: str, path: tuple[Key, ...], issues: list[Issue]) -> InputFile | None:
        """The file `value` names (no globs); None with an issue when it is unusable."""
        reason = _unsafe(value)
        if reason is None:
            found = self._file(PurePosixPath(value).as_posix())
            if isinstance(found, InputFile):
                return found
            reason = found
        issues.append(Issue(path, f"{value!r}: {reason}"))
        return None

    def many(
        self, values: list[str], path: tuple[Key, ...], issues: list[Issue]
    ) -> tuple[InputFile, ...] | None:
        """The files of paths and globs, in written order (a glob's matches sorted), each once."""
        found: dict[str, InputFile] = {}
        ok = True
        for index, value in enumerate(values):
            at = (*path, index) if len(values) > 1 else path
            if not _is_glob(value):
                file = self.one(value, at, issues)
                ok = ok and file is not None
                if file is not None:
                    found.setdefault(file.path, file)
                continue
            reason = _unsafe(value)
            matches = [] if reason else self._glob(value)
            if not matches:
                issues.append(Issue(at, f"{value!r}: {reason or 'the glob matches no file'}"))
                ok = False
            for match in matches:
                file = self.one(match, at, issues)
                ok = ok and file is not None
                if file is not None:
                    found.setdefault(file.path, file)
        return tuple(found.values()) if ok else None

    def _glob(self, pattern: str) -> list[str]:
        base = os.path.abspath(self.root)
        hits = glob.glob(pattern, root_dir=base, recursive=True)
        return sorted(PurePosixPath(Path(hit).as_posix()).as_posix() for hit in hits
                      if os.path.isfile(os.path.join(base, hit)))  # fmt: skip

    def _file(self, rel: str) -> InputFile | str:
        known = self._seen.get(rel)
        if known is None:
            known = self._seen[rel] = _read(self.root / rel, rel)
        return known


def _read(full: Path, rel: str) -> InputFile | str:
    try:
        data = full.read_bytes()
    except FileNotFoundError:
        return "file not found (paths are relative to the project root)"
    except IsADirectoryError:
        return "is a folder, not a file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if len(data) > MAX_UPLOAD_BYTES:
        return f"is {len(data) / 1e6:.1f} MB; the API takes images under 6 MB"
    facts = _image_facts(data)
    if isinstance(facts, str):
        return facts
    kind, width, height = facts
    return InputFile(rel, hashlib.sha256(data).hexdigest(), _MIME[kind], width, height)


def _image_facts(data: bytes) -> tuple[str, int, int] | str:
    kind = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WEBP"
    if kind is None:
        return "is not an image (expected a PNG, JPEG or WebP file)"
    from PIL import Image, UnidentifiedImageError  # here: loading manifests without images is quick

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"is not a readable {kind} image ({exc})"
    return kind, width, height


def _is_glob(value: str) -> bool:
    return any(char in value for char in "*?[")


def _unsafe(value: str) -> str | None:
    if not value.strip():
        return "an empty path"
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
        return "expected a path relative to the project root"
    if "\\" in value:
        return "write paths with '/'"
    if ".." in PurePosixPath(value).parts:
        return "a path cannot leave the project ('..')"
    return None
