"""Atomic file writes: every write to a project goes through here.

A write lands in a temporary file in the same folder, is fsynced, then renamed
over the target, so a crash at any moment leaves either the old file or the new
one, never a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


STALE_TEMP_SECONDS = 3600


def remove_stale_temps(folder: str | os.PathLike, pattern: str, older_than_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove our own temporary files/folders (`pattern`, e.g. ".film.*.tmp.mp4") left in `folder`
    by a process killed mid-write, once they are older than `older_than_s` (so a write still in
    progress elsewhere is never touched). Returns what was removed."""
    removed = []
    cutoff = time.time() - older_than_s
    for path in Path(folder).glob(pattern):
        try:
            if path.is_symlink() or path.lstat().st_mtime > cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entry table so a rename inside it survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with stable key order and a trailing newline, written atomically.

    A lone UTF-16 surrogate in a string (it has no UTF-8 form) is written as its JSON
    escape (\\udXXX), which reads back as the same string, instead of failing the write."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    atomic_write_bytes(dst, Path(src).read_bytes())


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` for a writer (ffmpeg, a zip) to fill; fsynced and renamed over
    `path` when the block ends, removed if it raises. Temporaries left by a killed process are named
    `.<stem>.*<suffix>` for `remove_stale_temps` to sweep."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
