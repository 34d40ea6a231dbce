"""Atomic file placement: a reader or a crash sees the old file or the new one, whole.

Used for the lockfile, the state under .pipeline/ and the outputs: write a temp file beside the
target, fsync it, rename it over the target, fsync the folder so the rename itself is durable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data`; on any failure the old file is left as it was.

    `durable=False` skips the fsyncs: still atomic, and it survives the process being killed,
    but not the machine losing power. For what can be found again if it is lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if durable:
            place(Path(tmp), path)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def place(temp: Path, path: Path) -> None:
    """Rename a complete, fsync'd temp file over `path` and make the rename durable."""
    os.replace(temp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries; a no-op where the file system cannot."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def sweep_temp_files(output_dir: Path, lockfile: Path, state_dir: Path) -> int:
    """Remove temp files a killed run left behind (downloads, lock writes); how many went.

    One pass over each folder (a no-op run calls this on every output): hidden `.*.part` and
    `.*.tmp` files anywhere under output/ and .pipeline/, and the lockfile's own temp files.
    """
    stale = [
        Path(folder, name)
        for top in (output_dir, state_dir)
        for folder, _, names in os.walk(top)
        for name in names
        if name.startswith(".") and name.endswith((".part", ".tmp"))
    ]
    stale += lockfile.parent.glob(f".{lockfile.name}.*.tmp")
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
