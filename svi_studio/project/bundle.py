"""Project bundles: a whole project folder as one .zip, and back.

Import treats the zip as untrusted: it refuses absolute paths, `..` segments, drive
letters, links and other non-regular entries, duplicated names, and archives whose
unpacked size (or entry count, or compression ratio) exceeds a limit — before it
writes anything. It unpacks into a temporary folder beside the target and renames it
into place only once the project inside has loaded.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..fsutil import fsync_dir, remove_stale_temps
from .model import ProjectError
from .store import PARTIAL_PREFIX, PROJECT_FILE, ProjectStore, storage_error

MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_ENTRIES = 20_000
MAX_RATIO = 200  # unpacked / packed size of one entry; beyond this it is a zip bomb


class BundleError(ProjectError):
    """A bundle that cannot be imported; nothing was written."""


def bundle_project(project_dir: str | Path, out_zip: str | Path) -> Path:
    """Zip the project folder (project.json, reference, anchors, complete takes) to out_zip, atomically."""
    root = Path(project_dir)
    if not (root / PROJECT_FILE).is_file():
        raise BundleError(f"{root} holds no project to bundle.")
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_zip.stem}.", suffix=".tmp.zip", dir=out_zip.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                relative = path.relative_to(root)
                if path.is_symlink() or not path.is_file():
                    continue
                if any(part.startswith((PARTIAL_PREFIX, ".")) for part in relative.parts):
                    continue  # partial takes and temp files are not part of a project
                if path.resolve() == out_zip.resolve():
                    continue
                archive.write(path, relative.as_posix())
        os.replace(tmp, out_zip)
        fsync_dir(out_zip.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_zip


def check_entries(archive: zipfile.ZipFile, max_unpacked: int = MAX_UNPACKED_BYTES) -> list[zipfile.ZipInfo]:
    """Validate every entry of an untrusted zip; return the file entries. Writes nothing."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise BundleError(f"the bundle has {len(infos)} entries, more than the {MAX_ENTRIES} allowed.")
    seen: set[str] = set()
    total = 0
    files = []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or path.is_absolute():
            raise BundleError(f"the bundle entry {name!r} is an absolute path; refused.")
        if any(part == ".." for part in path.parts):
            raise BundleError(f"the bundle entry {name!r} points outside the project folder; refused.")
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)  # 0 when the tool that made the zip stored permission bits only (or nothing)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise BundleError(f"the bundle entry {name!r} is a link or special file; refused.")
        key = path.as_posix().rstrip("/").lower()
        if key in seen:
            raise BundleError(f"the bundle holds {name!r} twice; refused.")
        seen.add(key)
        if info.is_dir():
            continue
        total += info.file_size
        if total > max_unpacked:
            raise BundleError(f"the bundle unpacks to more than {max_unpacked // 1024**2} MiB; refused.")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1024**2:
            raise BundleError(f"the bundle entry {name!r} is compressed {info.file_size // info.compress_size}:1, "
                              "like a zip bomb; refused.")
        files.append(info)
    if PROJECT_FILE not in seen:
        raise BundleError(f"the zip has no {PROJECT_FILE} at its top level: it is not an SVI Studio project bundle.")
    return files


def unbundle_project(zip_path: str | Path, target_dir: str | Path,
                     max_unpacked: int = MAX_UNPACKED_BYTES) -> ProjectStore:
    """Unpack a bundle into `target_dir` (which must not exist or be empty); return the loaded store."""
    target = Path(target_dir)
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"{target} is not empty; unpack into a new folder.")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise BundleError(f"{Path(zip_path).name} is not a readable zip ({error}).") from None
    with archive:
        files = check_entries(archive, max_unpacked)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, f".{target.name}.unpack-*")  # left by an import that was killed
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
        try:
            written = 0
            for info in files:
                destination = staging / PurePosixPath(info.filename.replace("\\", "/"))
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > max_unpacked:  # sizes in the header can lie
                            raise BundleError(f"the bundle unpacks to more than {max_unpacked // 1024**2} MiB; refused.")
                        sink.write(chunk)
            ProjectStore.load(staging)  # refuse a bundle whose project does not load
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            # a damaged entry (bad CRC, cut-off data, a size header that lies) or an unsupported compression
            shutil.rmtree(staging, ignore_errors=True)
            raise BundleError(f"{Path(zip_path).name} is damaged ({error}); nothing was imported. "
                              "Download or copy the bundle again.") from None
        except OSError as error:  # disk full or read-only while unpacking
            shutil.rmtree(staging, ignore_errors=True)
            raise storage_error(error, "the imported project", target.parent) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
            fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return ProjectStore.load(target)
