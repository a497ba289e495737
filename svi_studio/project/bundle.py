"""Project bundles: a whole project folder as one .zip, and back.

Import treats the zip as untrusted. Before it writes anything it checks, in order:
1. the central directory (read by hand from the zip's end record, before zipfile parses
   it): at most MAX_ENTRIES entries and MAX_DIRECTORY_BYTES of directory, so a zip of
   millions of tiny entries cannot fill memory while it is being listed;
2. every entry: no absolute paths, `..` segments, drive letters, links or special files,
   duplicated names, over-long or control-character names, encryption, or compression
   other than stored/deflate (bzip2 and LZMA decompress without a bound per read);
3. sizes: the declared unpacked total against a budget (MAX_UNPACKED_BYTES, and never
   more than the target disk's free space less FREE_DISK_MARGIN), each entry's and the
   whole archive's compression ratio (a zip bomb, or many small bombs);
4. project.json itself, read from the zip and loaded with Project.from_dict (the same
   limits as the editor: shot count, prompt and name lengths, nesting depth, reference
   and anchor paths inside the project).
Only the files of the project's layout (store.is_project_file) are unpacked; anything else
in the zip is dropped. It unpacks into a temporary folder beside the target (counting the
bytes really written, since headers can lie) and renames it into place only once the
project inside has loaded. Every refusal is a BundleError that says what was wrong and
what to do, without server paths.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..fsutil import fsync_dir, remove_stale_temps
from .model import Project, ProjectError, parse_json
from .store import (MAX_PROJECT_JSON_BYTES, PARTIAL_PREFIX, PROJECT_FILE, ProjectStore, StorageError,
                    is_project_file, storage_error)

log = logging.getLogger(__name__)

MAX_UNPACKED_BYTES = 2 * 1024**3  # what one import may unpack at most
FREE_DISK_MARGIN = 512 * 1024**2  # an import never leaves less than this free on the target's disk
MAX_ENTRIES = 20_000
MAX_DIRECTORY_BYTES = 8 * 1024**2  # the zip's central directory (about 400 bytes per entry at most)
MAX_RATIO = 200  # unpacked / packed size, of one entry over RATIO_FLOOR_BYTES or of the whole archive
RATIO_FLOOR_BYTES = 1024**2  # below this, a high ratio is ordinary (a small JSON file compresses well)
MAX_NAME_CHARS = 255  # an entry's whole path; a project's longest is takes/<64>/<64>/motion_out.safetensors
SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
REMAKE = "Make the zip with Download project (or `python -m svi_studio bundle`) and import that."


class BundleError(ProjectError):
    """A bundle that cannot be imported; nothing was written."""


# -- export ------------------------------------------------------------------------------------

def bundle_project(project_dir: str | Path, out_zip: str | Path) -> Path:
    """Zip the project folder (project.json, reference, anchors, complete takes) to out_zip, atomically.

    A full disk (or one without room for the zip, checked first) raises StorageError and leaves
    no partial zip behind."""
    root = Path(project_dir)
    if not (root / PROJECT_FILE).is_file():
        raise BundleError(f"the folder {root.name!r} holds no project to bundle.")
    out_zip = Path(out_zip)
    # 1. What goes in: regular files, no partial takes, temp files or the zip itself.
    members = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_symlink() or not path.is_file():
            continue
        if any(part.startswith((PARTIAL_PREFIX, ".")) for part in relative.parts):
            continue  # partial takes and temp files are not part of a project
        if path.resolve() == out_zip.resolve():
            continue
        members.append((path, relative.as_posix()))
    # 2. Room for it (clips hardly compress): refuse now rather than after writing most of it.
    try:
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        needed = sum(path.stat().st_size for path, _ in members)
        free = shutil.disk_usage(out_zip.parent).free
    except OSError as error:
        raise storage_error(error, f"the project zip {out_zip.name}", out_zip.parent) from None
    if needed > free:
        raise StorageError(f"could not save the project zip {out_zip.name}: it needs about {_mib(needed)} and the "
                           f"disk has {_mib(free)} free. Nothing was written; free some space and try again.")
    # 3. Write a hidden temporary zip beside the target, then rename it into place.
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_zip.stem}.", suffix=".tmp.zip", dir=out_zip.parent)
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, name in members:
                archive.write(path, name)
        os.replace(tmp, out_zip)
        fsync_dir(out_zip.parent)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise storage_error(error, f"the project zip {out_zip.name}", out_zip.parent) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return out_zip


# -- import ------------------------------------------------------------------------------------

def _mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MiB"


def entry_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """An entry's name as a project-relative path ('\\' read as '/', './' dropped)."""
    return PurePosixPath(info.filename.replace("\\", "/"))


def _shown(name: str) -> str:
    """An entry name as a message shows it: quoted, control characters escaped, at most 60 characters."""
    return repr(name[:60] + ("…" if len(name) > 60 else ""))


def check_directory(zip_path: str | Path) -> None:
    """Refuse a zip whose central directory is too big to list, before zipfile reads it
    (zipfile builds one ZipInfo object per entry: millions of entries would fill memory)."""
    try:
        with open(zip_path, "rb") as handle:
            end = zipfile._EndRecData(handle)  # the end record (zip64 aware); zipfile's own reader of it
    except OSError as error:
        raise BundleError(f"{Path(zip_path).name} cannot be read ({error.strerror}).") from None
    if end is None:
        raise BundleError(f"{Path(zip_path).name} is not a readable zip (no end-of-archive record). {REMAKE}")
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > MAX_ENTRIES or size > MAX_DIRECTORY_BYTES:
        raise BundleError(f"the bundle lists {entries:,} entries ({_mib(size)} of directory); a project bundle has "
                          f"at most {MAX_ENTRIES:,}. It is not an SVI Studio project, or a hostile one; refused. {REMAKE}")


def unpack_budget(target: Path, max_unpacked: int = MAX_UNPACKED_BYTES) -> tuple[int, str]:
    """(bytes an import into `target` may unpack, why that much): MAX_UNPACKED_BYTES, or the free
    space of the target's disk less FREE_DISK_MARGIN if that is smaller."""
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        room = shutil.disk_usage(existing).free - FREE_DISK_MARGIN
    except OSError:
        room = max_unpacked
    if room < max_unpacked:
        return max(0, room), (f"the {_mib(max(0, room))} the server's disk can spare (it keeps "
                              f"{_mib(FREE_DISK_MARGIN)} free)")
    return max_unpacked, f"the {_mib(max_unpacked)} an import may unpack"


def check_entries(archive: zipfile.ZipFile, max_unpacked: int = MAX_UNPACKED_BYTES,
                  budget_reason: str | None = None) -> list[zipfile.ZipInfo]:
    """Validate every entry of an untrusted zip (names, kinds, encryption, compression, sizes,
    ratios); return the file entries. Writes nothing."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise BundleError(f"the bundle has {len(infos):,} entries, more than the {MAX_ENTRIES:,} allowed. {REMAKE}")
    budget_reason = budget_reason or f"the {_mib(max_unpacked)} an import may unpack"
    seen: set[str] = set()
    total = packed = 0
    files = []
    for info in infos:
        name = info.filename
        path = entry_path(info)
        # 1. The name: inside the folder, of a sane length, printable.
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or path.is_absolute():
            raise BundleError(f"the bundle entry {_shown(name)} is an absolute path; refused. {REMAKE}")
        if any(part == ".." for part in path.parts):
            raise BundleError(f"the bundle entry {_shown(name)} points outside the project folder; refused. {REMAKE}")
        if len(name) > MAX_NAME_CHARS:
            raise BundleError(f"the bundle entry {_shown(name)} has a name {len(name):,} characters long; names in a "
                              f"project are at most {MAX_NAME_CHARS}. {REMAKE}")
        longest = max((len(part.encode("utf-8", "surrogatepass")) for part in path.parts), default=0)
        if longest > 255:
            raise BundleError(f"the bundle entry {_shown(name)} has a folder or file name of {longest:,} bytes; "
                              f"file systems allow 255. {REMAKE}")
        if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
            raise BundleError(f"the bundle entry {_shown(name)} has control characters in its name; refused. {REMAKE}")
        # 2. The kind: regular files and folders only, each name once.
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)  # 0 when the tool that made the zip stored permission bits only (or nothing)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise BundleError(f"the bundle entry {_shown(name)} is a link or special file; refused. {REMAKE}")
        key = path.as_posix().rstrip("/").lower()
        if key in seen:
            raise BundleError(f"the bundle holds {_shown(name)} twice; refused. {REMAKE}")
        seen.add(key)
        if info.is_dir():
            continue
        # 3. How it is stored: no passwords, no compression that inflates without a bound.
        if info.flag_bits & 0x1:
            raise BundleError(f"the bundle entry {_shown(name)} is encrypted (password-protected); SVI Studio "
                              f"imports only zips without a password. {REMAKE}")
        if info.compress_type not in SUPPORTED_COMPRESSION:
            raise BundleError(f"the bundle entry {_shown(name)} uses a compression SVI Studio does not import "
                              f"(method {info.compress_type}); only stored and deflate (any zip tool's default) "
                              f"are read. {REMAKE}")
        # 4. Sizes: the total against the budget, and the ratio of each entry and of the whole.
        total += info.file_size
        packed += info.compress_size
        if total > max_unpacked:
            raise BundleError(f"the bundle unpacks to more than {budget_reason}; refused before anything was "
                              "written. Import a smaller project, or free space on the server.")
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise BundleError(f"the bundle entry {_shown(name)} is compressed "
                              f"{info.file_size // max(1, info.compress_size):,}:1, like a zip bomb; refused. {REMAKE}")
        files.append(info)
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(1, packed):
        raise BundleError(f"the bundle's {len(files):,} files are compressed {total // max(1, packed):,}:1 together, "
                          f"like a zip bomb; refused. {REMAKE}")
    if not any(entry_path(info).as_posix() == PROJECT_FILE for info in files):
        raise BundleError(f"the zip has no {PROJECT_FILE} at its top level: it is not an SVI Studio project bundle.")
    return files


def read_project(archive: zipfile.ZipFile, files: list[zipfile.ZipInfo]) -> Project:
    """project.json from the zip, loaded by Project.from_dict (every limit the editor has), before
    anything is unpacked."""
    info = next(i for i in files if entry_path(i).as_posix() == PROJECT_FILE)
    if info.file_size > MAX_PROJECT_JSON_BYTES:
        raise BundleError(f"the bundle's {PROJECT_FILE} is {_mib(info.file_size)}; no SVI Studio project file is over "
                          f"{_mib(MAX_PROJECT_JSON_BYTES)}. {REMAKE}")
    with archive.open(info) as source:
        data = source.read(MAX_PROJECT_JSON_BYTES + 1)
    advice = "Nothing was imported."
    project = Project.from_dict(parse_json(data, f"the bundle's {PROJECT_FILE}", advice))
    return project


def unbundle_project(zip_path: str | Path, target_dir: str | Path,
                     max_unpacked: int = MAX_UNPACKED_BYTES) -> ProjectStore:
    """Unpack a bundle into `target_dir` (which must not exist or be empty); return the loaded store."""
    target = Path(target_dir)
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"the folder {target.name!r} is not empty; unpack into a new folder.")
    name = Path(zip_path).name
    check_directory(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise BundleError(f"{name} is not a readable zip ({reason}). {REMAKE}") from None
    with archive:
        budget, reason = unpack_budget(target, max_unpacked)
        try:
            files = check_entries(archive, budget, reason)
            project = read_project(archive, files)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            raise BundleError(f"{name} is damaged ({error}); nothing was imported. "
                              "Download or copy the bundle again.") from None
        kept = [info for info in files if is_project_file(entry_path(info), project)]
        if len(kept) < len(files):
            log.info("import of %s: dropped %d entries that are not part of a project", name, len(files) - len(kept))
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, f".{target.name}.unpack-*")  # left by an import that was killed
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
        try:
            written = 0
            for info in kept:
                destination = staging / entry_path(info)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > budget:  # zipfile stops at the declared size; this is belt and braces
                            raise BundleError(f"the bundle unpacks to more than {reason}; refused.")
                        sink.write(chunk)
            ProjectStore.load(staging)  # refuse a bundle whose project does not load
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            # a damaged entry (bad CRC, cut-off data, a size header that lies)
            shutil.rmtree(staging, ignore_errors=True)
            raise BundleError(f"{name} is damaged ({error}); nothing was imported. "
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
