"""The project on disk: atomic writes, complete takes only, clear errors.

A take is written into takes/<shot_id>/.partial-<take_id>/, fsynced, then renamed to
takes/<shot_id>/<take_id>/ — so a take folder without the `.partial-` prefix is
always complete. project.json is written after the rename (temp file, fsync,
rename). A crash between the two leaves a complete take that project.json does not
list yet; loading adopts it (unselected, or selected if its shot had none).
Leftover `.partial-*` folders are incomplete by construction and are removed on load —
but only abandoned ones: a process renders while holding the project's render lock
(`render_lock`: flock on the project folder, released by the kernel when the process
dies, even by SIGKILL), and every partial folder records its writer's pid and host
(.owner.json). Opening a project (`status` in another terminal, the app) sweeps a
partial only when no other process holds the lock, or when its writer is gone.

A failed save changes nothing: the in-memory project returns to what project.json
holds, and the store never writes a project that `Project.from_dict` would refuse.

Another program may save the same project.json (the CLI rendering a folder the app opened
in place, a GPU worker's copy of the project). `refresh()` reads it again when its stamp
changed, and the places that change a project after a wait call it first: the render loop
before planning each shot, the take record after a clip, the app before every event. So a
save puts back nothing the other program wrote, except within the few milliseconds of one
change (there is no lock across programs for edits; the render lock keeps renders apart).
"""

from __future__ import annotations

import copy
import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; partials are then judged by their owner file alone
    fcntl = None

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..fsutil import atomic_write_bytes, atomic_write_json, fsync_dir
from ..motion import MotionState
from ..seams import tail_window
from ..settings import LIMITS
from ..video_io import iter_frames, probe_clip, write_mp4
from .model import ID_PATTERN, Project, ProjectError, Take, new_id, parse_json

log = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
REFERENCE_FILE = "reference.png"
TAKE_FILE = "take.json"
CLIP_FILE = "clip.mp4"
LATENTS_FILE = "latents.safetensors"
MOTION_IN_FILE = "motion_in.safetensors"
MOTION_OUT_FILE = "motion_out.safetensors"
PARTIAL_PREFIX = ".partial-"
OWNER_FILE = ".owner.json"  # in a partial take folder: {"pid", "host", "started"} of the process writing it
TAKE_FILES = (TAKE_FILE, CLIP_FILE, LATENTS_FILE, MOTION_IN_FILE, MOTION_OUT_FILE)
MAX_PROJECT_JSON_BYTES = 32 * 1024**2  # 24 shots of 100,000-character prompts fit easily
MAX_TAKE_JSON_BYTES = 8 * 1024**2
PARTIAL_STALE_S = 3600  # a partial whose writer cannot be checked (another host) is abandoned after this
LOCK_WAIT_S = 5.0  # a new render waits this long for an open (which holds the lock for milliseconds) to finish
TRASH_PREFIX = ".trash-"  # a deleted take between its rename and its removal


class BrokenTake(ProjectError):
    """A take whose files are missing or unreadable (it is shown as broken, never deleted)."""


class ClipUnavailable(ProjectError):
    """A clip that could not be read just now (out of memory, an I/O error, a timeout). The take
    is not broken: nothing was changed, and the same request may work a moment later."""


# errno values of a read that may work when tried again (EIO: a flaky disk or network mount).
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ENOMEM, errno.ETIMEDOUT, errno.EBUSY,
                    errno.ENFILE, errno.EMFILE, errno.ESTALE}
# How ffmpeg (a separate process) reports the same conditions in its error text.
TRANSIENT_TEXTS = ("out of memory", "cannot allocate memory", "input/output error", "resource temporarily unavailable",
                   "timed out", "too many open files")


def is_transient(error: BaseException) -> bool:
    """True for failures that say nothing about the file: out of memory (MemoryError, torch's
    OutOfMemoryError), a timeout, or an OSError whose errno means "try again"."""
    if isinstance(error, (MemoryError, TimeoutError, subprocess.TimeoutExpired, torch.OutOfMemoryError)):
        return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
        return True
    return any(text in str(error).lower() for text in TRANSIENT_TEXTS)


def _reason(error: BaseException) -> str:
    """One short line saying what went wrong, for a message (no traceback, no server path)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, subprocess.TimeoutExpired):
        return f"reading it took longer than {error.timeout:g} s"
    if isinstance(error, MemoryError):
        return "out of memory"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), text)[:160]


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")  # shown as its last part only


class StorageError(ProjectError):
    """The project could not be written (disk full, read-only, no permission); nothing was lost."""


class ProjectBusy(ProjectError):
    """Another process is rendering this project (it holds the render lock)."""


def storage_error(error: OSError, what: str, folder: Path) -> StorageError:
    """A readable StorageError for an OSError raised while writing `what` into `folder`."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the disk is read-only",
        errno.EACCES: "permission was denied",
        errno.EPERM: "permission was denied",
    }
    text = str(error)
    if error.errno in reasons:
        reason = reasons[error.errno]
    elif "No space left on device" in text:  # ffmpeg (through moviepy) reports it only in its message
        reason = reasons[errno.ENOSPC]
    else:
        reason = error.strerror or (text.splitlines()[0][:200] if text else type(error).__name__)
    return StorageError(f"could not save {what}: {reason} (in the folder {Path(folder).name!r}). Nothing was lost: "
                        "earlier takes and the project are as they were. Free some space (or fix the folder's "
                        "permissions) and try again.")


def read_json(path: Path, what: str, max_bytes: int, advice: str = "") -> Any:
    """The JSON value in the file at `path` (see model.parse_json), refusing files over `max_bytes`
    before reading them. FileNotFoundError passes through."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ProjectError(f"{what} is {size / 1024**2:,.1f} MiB; no SVI Studio {what} is over "
                           f"{max_bytes // 1024**2} MiB. {advice}".strip())
    return parse_json(path.read_bytes(), what, advice)


def is_project_file(relative: PurePosixPath, project: Project) -> bool:
    """Whether a project-relative path belongs to the project's layout (see model.py): project.json,
    the reference and anchor images it names, and the files of takes of its shots."""
    name = relative.as_posix()
    if name == PROJECT_FILE or name in {project.reference} | {shot.anchor_image for shot in project.shots}:
        return True
    parts = relative.parts
    return (len(parts) == 4 and parts[0] == "takes" and parts[3] in TAKE_FILES
            and any(shot.id == parts[1] for shot in project.shots) and bool(ID_PATTERN.fullmatch(parts[2])))


# -- the render lock ---------------------------------------------------------------------------
# flock on the project folder itself (no file is added to the project). One open file per
# project per process, shared by every render_lock in the process (flock locks belong to an
# open file, so a second open in the same process would conflict with the first).
_LOCKS: dict[str, list] = {}  # resolved project folder → [fd or None, depth]
_LOCKS_GUARD = threading.Lock()


@contextmanager
def render_lock(root: str | Path, wait_s: float | None = None) -> Iterator[None]:
    """Hold the project's render lock: while it is held no other process renders into the
    project, and no other process's open sweeps this process's partial takes. Re-entrant within
    a process. ProjectBusy (after waiting up to `wait_s` for a reader's brief hold to end) if
    another process is rendering. Where the filesystem has no flock, it holds nothing and says so
    in the log: partial takes are then protected by their owner file only."""
    key = str(Path(root).resolve())
    with _LOCKS_GUARD:
        entry = _LOCKS.get(key)
        if entry is None:
            entry = _LOCKS[key] = [_acquire(key, LOCK_WAIT_S if wait_s is None else wait_s), 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _LOCKS_GUARD:
            entry[1] -= 1
            if entry[1] == 0:
                del _LOCKS[key]
                if entry[0] is not None:
                    os.close(entry[0])  # closing the file releases the lock


def _acquire(folder: str, wait_s: float) -> int | None:
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None  # no such folder (yet): opening or creating the project says what is wrong
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            os.close(fd)
            holder = _lock_holder(folder)
            who = f"another process (pid {holder})" if holder else "another process"
            raise ProjectBusy(f"this project is being rendered by {who}; wait for it to finish or cancel it"
                              + (f" (Ctrl-C in its terminal, or kill {holder})" if holder else "")
                              + ", then try again.") from None
        except OSError as error:  # ENOLCK, EOPNOTSUPP: a filesystem without flock (some network mounts)
            os.close(fd)
            log.warning("cannot lock %s (%s); renders from two processes are not kept apart", folder, error.strerror)
            return None


def _lock_holder(folder: str) -> int | None:
    """The pid of the process holding a flock on `folder`, from /proc/locks (Linux), else None."""
    try:
        info = os.stat(folder)
        inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
                    pid = int(fields[4])
                    if pid != os.getpid():
                        return pid
    except OSError:
        pass
    return None


@contextmanager
def _lock_state(root: Path) -> Iterator[str]:
    """Who renders into the project now: "self" (this process holds the render lock), "other"
    (another process does), "free" (nobody; a shared lock is held until the block ends, so no
    render can start meanwhile) or "unknown" (no flock here)."""
    with _LOCKS_GUARD:
        held_here = str(root.resolve()) in _LOCKS
    fd = None
    state = "self" if held_here else "unknown"
    if not held_here and fcntl is not None:
        try:
            fd = os.open(root, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            state = "free"
        except BlockingIOError:
            state = "other"
        except OSError:
            state = "unknown"
    try:
        yield state
    finally:
        if fd is not None:
            os.close(fd)


def _write_owner(partial: Path) -> None:
    """Record which process writes this partial take folder (see _abandoned)."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 3)}
    (partial / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")


def _abandoned(partial: Path, state: str) -> bool:
    """Whether nobody is writing `partial` any more, given the render lock's state."""
    if state == "free":
        return True  # every writer holds the lock while its partial exists
    try:
        owner = json.loads((partial / OWNER_FILE).read_text(encoding="utf-8"))
        pid, host, started = int(owner["pid"]), str(owner["host"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        if state == "self":
            return True  # this process holds the lock and writes an owner file first: nobody else writes it
        try:  # no readable owner file: judged by age
            return time.time() - partial.stat().st_mtime > PARTIAL_STALE_S
        except OSError:
            return False
    if host == socket.gethostname():
        if pid == os.getpid():
            return False  # this process's own write in progress
        if state == "self":
            return True  # another process cannot be writing while this one holds the lock
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # its writer is gone
        except OSError:
            pass  # alive, owned by another user
        return False
    return time.time() - started > PARTIAL_STALE_S


def _version(stat: os.stat_result) -> tuple[int, int, int]:
    """A file's version as the caches here compare it: (mtime ns, size, inode). Every atomic
    write (a rename onto the file) gives it a new one."""
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """_version of the file at `path`, None when it cannot be read (missing)."""
    try:
        return _version(os.stat(path))
    except OSError:
        return None


def image_fingerprint(path: str | Path) -> str:
    """sha256 (first 16 hex) of an image file; cached per (path, size, mtime), since status
    asks for the reference's fingerprint once per shot on every refresh."""
    stat = os.stat(path)
    return _fingerprint_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _fingerprint_cached(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class ProjectStore:
    """One project folder. `project` is the in-memory state; `save()` writes project.json."""

    def __init__(self, root: str | Path, project: Project):
        self.root = Path(root)
        self.project = project
        self.broken_takes: dict[str, str] = {}  # take id → why it is broken
        self._takes: dict[tuple[str, str], tuple[tuple[int, int, int], Take]] = {}  # see take()
        self._clips: dict[tuple[str, str], tuple] = {}  # clip file versions check_clip found sound
        self._saved = copy.deepcopy(project.to_dict())  # what project.json holds (see save())
        self._disk_stamp: tuple[int, int, int] | None = None  # project.json as last read or written (see refresh())

    # -- create / load / save ---------------------------------------------------------------

    @classmethod
    def create(cls, root: str | Path, project: Project, reference: Image.Image | None = None) -> "ProjectStore":
        root = Path(root)
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} already holds a project; open it instead, or choose another folder.")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, project)
        if reference is not None:
            store.set_reference(reference)
        store.save()
        return store

    @classmethod
    def load(cls, root: str | Path) -> "ProjectStore":
        root = Path(root)
        path = root / PROJECT_FILE
        if not path.is_file():
            raise ProjectError(f"the folder {root.name!r} holds no {PROJECT_FILE}: it is not an SVI Studio project.")
        stamp = _file_stamp(path)  # before reading: a write in between is seen by the next refresh()
        try:
            data = read_json(path, PROJECT_FILE, MAX_PROJECT_JSON_BYTES,
                             "The file and every take were left as they are; restore project.json from a bundle "
                             "or a backup.")
        except OSError as error:
            raise ProjectError(f"{PROJECT_FILE} cannot be read ({error.strerror}); it was left as it is.") from None
        store = cls(root, Project.from_dict(data))
        store._disk_stamp = stamp
        store._recover()
        return store

    def render_lock(self, wait_s: float | None = None):
        """See the module's render_lock: held by a render for its whole duration."""
        return render_lock(self.root, wait_s)

    def save(self) -> None:
        """Write project.json atomically. If that fails (StorageError when the disk refuses; ProjectError
        when the project could not be opened again, e.g. over the shot limit), project.json is left as it
        was and the in-memory project returns to what it holds: what the app and `status` show is what
        is on disk. Every save is a new revision of the project (Project.revision)."""
        self.project.revision += 1
        data = self.project.to_dict()
        try:
            Project.from_dict(copy.deepcopy(data))  # never write a project file the loader would refuse
            atomic_write_json(self.root / PROJECT_FILE, data)
            self._disk_stamp = _file_stamp(self.root / PROJECT_FILE)
        except OSError as error:
            self._restore()
            raise storage_error(error, "the project", self.root) from None
        except BaseException:
            self._restore()
            raise
        self._saved = copy.deepcopy(data)

    def refresh(self) -> bool:
        """Read project.json again if another program wrote it since this store last read or
        wrote it (the CLI rendering or editing a folder the app opened in place, a GPU worker's
        copy of the project, another server); True when the in-memory project was replaced.

        Every change here is saved at once, so nothing unsaved is lost by the reload; callers
        refresh before they change the project, so that their save does not put back what the
        other program replaced. A file that changed but holds what this store last saved, or
        that cannot be read now, leaves the in-memory project as it is (a broken file is
        reported when the project is next opened)."""
        path = self.root / PROJECT_FILE
        stamp = _file_stamp(path)
        if stamp is None or stamp == self._disk_stamp:
            return False
        try:
            data = read_json(path, PROJECT_FILE, MAX_PROJECT_JSON_BYTES)
            fresh = Project.from_dict(data)
        except (OSError, ProjectError) as error:
            log.warning("project.json of %s changed on disk but cannot be read (%s); keeping the copy in memory",
                        self.root, error)
            return False
        self._disk_stamp = stamp
        saved = fresh.to_dict()
        if saved == self._saved:
            return False
        self.project, self._saved = fresh, copy.deepcopy(saved)
        log.info("project.json of %s was changed by another program; reloaded (revision %d)",
                 self.root, fresh.revision)
        return True

    def _restore(self) -> None:
        """Put the in-memory project back to the last state saved (or loaded)."""
        self.project = Project.from_dict(copy.deepcopy(self._saved))

    def _recover(self) -> None:
        """Drop abandoned partial take folders, adopt complete takes project.json does not list yet,
        and mark listed takes whose files are missing or damaged as broken.

        While another process renders into the project (it holds the render lock) its partial
        folder and its complete-but-not-yet-listed take are its own: they are left alone, and
        nothing is saved (the renderer records its take itself)."""
        changed = False
        by_id = {shot.id: shot for shot in self.project.shots}
        takes_root = self.root / "takes"
        with _lock_state(self.root) as state:
            for shot_dir in sorted(takes_root.iterdir()) if takes_root.is_dir() else []:
                if not shot_dir.is_dir():
                    continue
                for take_dir in sorted(shot_dir.iterdir()):
                    if take_dir.name.startswith(TRASH_PREFIX):  # a deletion that was interrupted: finish it
                        shutil.rmtree(take_dir, ignore_errors=True)
                        continue
                    if take_dir.name.startswith(PARTIAL_PREFIX):
                        if _abandoned(take_dir, state):
                            log.warning("removing incomplete take folder %s (left by an interrupted render)", take_dir)
                            shutil.rmtree(take_dir, ignore_errors=True)
                        continue
                    shot = by_id.get(shot_dir.name)
                    if (state == "other" or shot is None or take_dir.name in shot.takes
                            or not ID_PATTERN.fullmatch(take_dir.name) or not (take_dir / TAKE_FILE).is_file()
                            or self._check_take_files(shot.id, take_dir.name)):
                        continue  # only complete, readable takes are adopted; anything else is left where it is
                    shot.takes.append(take_dir.name)  # complete, but the crash came before project.json
                    if shot.selected_take is None:
                        shot.selected_take = take_dir.name
                        shot.seed = self.take(shot.id, take_dir.name).seed
                    changed = True
        if changed:
            try:
                self.save()
            except StorageError as error:  # a read-only folder still opens; the next open adopts them again
                log.warning("could not record adopted takes: %s", error)
        for shot in self.project.shots:
            for take_id in shot.takes:
                problem = self._check_take_files(shot.id, take_id)
                if problem:
                    self.broken_takes[take_id] = problem

    def _check_take_files(self, shot_id: str, take_id: str) -> str | None:
        folder = self.take_dir(shot_id, take_id)
        for name in (TAKE_FILE, CLIP_FILE, MOTION_OUT_FILE):
            if not (folder / name).is_file():
                return f"{folder / name} is missing"
        try:
            self.take(shot_id, take_id)
        except ProjectError as error:
            return str(error)
        return None

    # -- reference and anchors -------------------------------------------------------------

    def set_reference(self, image: Image.Image) -> None:
        atomic_write_bytes(self.root / REFERENCE_FILE, _png_bytes(image))
        self.project.reference = REFERENCE_FILE

    def reference_path(self) -> Path | None:
        if not self.project.reference:
            return None
        return self.safe_path(self.project.reference)

    def add_media(self, data: bytes, suffix: str) -> str:
        """Store a per-shot media file under media/, named by its content; returns its project-relative path."""
        relative = f"media/{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
        if not (self.root / relative).is_file():
            try:
                atomic_write_bytes(self.root / relative, data)
            except OSError as error:
                raise storage_error(error, "the media file", self.root / "media") from None
        return relative

    def add_media_image(self, image: Image.Image) -> str:
        """Store a checked picture (anchor image, end frame) as PNG under media/."""
        return self.add_media(_png_bytes(image), ".png")

    def safe_path(self, relative: str) -> Path:
        """A project-relative path resolved inside the project folder, or ProjectError."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ProjectError(f"path {relative!r} points outside the project folder.")
        return path

    # -- takes --------------------------------------------------------------------------------

    def take_dir(self, shot_id: str, take_id: str) -> Path:
        """takes/<shot_id>/<take_id>; ids that could leave that folder ('..', '/') are refused."""
        if not (isinstance(shot_id, str) and isinstance(take_id, str)
                and ID_PATTERN.fullmatch(shot_id) and ID_PATTERN.fullmatch(take_id)):
            raise ProjectError(f"invalid shot or take id ({shot_id!r:.40}, {take_id!r:.40}).")
        return self.root / "takes" / shot_id / take_id

    def take(self, shot_id: str, take_id: str) -> Take:
        """The take's metadata (a copy). take.json is parsed once per version of the file:
        status is derived from it for every shot on every refresh and after every clip."""
        path = self.take_dir(shot_id, take_id) / TAKE_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise BrokenTake(f"{path} is missing.") from None
        version = _version(stat)
        cached = self._takes.get((shot_id, take_id))
        if cached is None or cached[0] != version:
            cached = (version, self._read_take(path, shot_id, take_id))
            self._takes[(shot_id, take_id)] = cached
        return copy.deepcopy(cached[1])

    def _read_take(self, path: Path, shot_id: str, take_id: str) -> Take:
        try:
            data = read_json(path, TAKE_FILE, MAX_TAKE_JSON_BYTES)
            take = Take.from_dict(data if isinstance(data, dict) else {})
        except FileNotFoundError:
            raise BrokenTake(f"{path} is missing.") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ProjectError) as error:
            raise BrokenTake(f"{path} is damaged ({error}).") from None
        if take.id != take_id or take.shot_id != shot_id:  # take.json's ids name files too: they must be its own
            raise BrokenTake(f"{path} belongs to another take ({take.shot_id!r:.40}/{take.id!r:.40}).")
        _check_declared_sizes(take, path)
        return take

    def clip_path(self, shot_id: str, take_id: str) -> Path:
        return self.take_dir(shot_id, take_id) / CLIP_FILE

    # -- clips: checked against take.json before anything is decoded, then streamed ----------------

    def check_clip(self, shot_id: str, take_id: str) -> Take:
        """The take, once its clip file is what take.json declares: the size, fps and frame count
        read from the file's stream header and packets (nothing decoded; a clip with far more
        frames than declared is counted only up to one past the declaration).

        BrokenTake (and the take marked broken) if the clip is missing, undecodable or not what
        its take declares; ClipUnavailable if it cannot be read right now. The result is kept
        per version of the clip file, so status and preview pay for the check once."""
        take = self.take(shot_id, take_id)
        path = self.clip_path(shot_id, take_id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise self._broken(take_id, f"{self._relative(path)} is missing") from None
        except OSError as error:
            raise self._unavailable(path, error) from None
        version = (*_version(stat), take.num_frames, take.width, take.height, take.fps)
        if self._clips.get((shot_id, take_id)) == version:
            return take
        try:
            info = probe_clip(path, max_frames=take.num_frames)
        except Exception as error:  # ffmpeg cannot read it (broken), or cannot right now (unavailable)
            raise self._read_failure(take_id, path, error) from None
        problems = []
        if info.frames > take.num_frames:
            problems.append(f"holds more than the {take.num_frames} frames its take declares")
        elif info.frames < take.num_frames:
            problems.append(f"holds {info.frames} frames, not the {take.num_frames} its take declares")
        if (info.width, info.height) != (take.width, take.height):
            problems.append(f"is {info.width}x{info.height}, not the {take.width}x{take.height} its take declares")
        if info.fps is not None and abs(info.fps - take.fps) > 0.01:
            problems.append(f"plays at {info.fps:g} fps, not the {take.fps} its take declares")
        if problems:
            raise self._broken(take_id, f"{self._relative(path)} {' and '.join(problems)}")
        self._clips[(shot_id, take_id)] = version
        return take

    def iter_frames(self, shot_id: str, take_id: str, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start .. stop-1 of the take's clip, decoded one at a time: uint8 (H, W, 3) each.

        The clip is checked first (`check_clip`); decoding never goes past `stop` (default: the
        take's frame count), so memory does not grow with the clip's length."""
        take = self.check_clip(shot_id, take_id)
        stop = take.num_frames if stop is None else min(stop, take.num_frames)
        path = self.clip_path(shot_id, take_id)
        produced = start
        try:
            for frame in iter_frames(path, take.width, take.height, start, stop):
                yield frame
                produced += 1
        except Exception as error:  # imageio-ffmpeg raises OSError, RuntimeError, ValueError …
            raise self._read_failure(take_id, path, error) from None
        if produced < stop:
            raise self._broken(take_id, f"{self._relative(path)} ends after {produced} of its {take.num_frames} frames")

    def frames(self, shot_id: str, take_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames start .. stop-1 of the take's clip as one uint8 (T, H, W, 3) array (a bounded window:
        whole clips are streamed with `iter_frames`, never held)."""
        frames = list(self.iter_frames(shot_id, take_id, start, stop))
        if not frames:
            raise ProjectError(f"take {take_id} has no frames {start}..{stop}.")
        return np.stack(frames)

    def seam_frames(self, shot_id: str, take_id: str) -> np.ndarray:
        """The last kept frames of a take before a cut: all that `seams.seam_score` reads of it."""
        take = self.check_clip(shot_id, take_id)
        start, stop = tail_window(take.num_frames, int(take.stitch_rule.get("drop_tail", 0)))
        return self.frames(shot_id, take_id, start, stop)

    def _relative(self, path: Path) -> str:
        """`path` as shown to users: relative to the project folder (no server paths in messages)."""
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name

    def _broken(self, take_id: str, problem: str) -> BrokenTake:
        """Mark the take broken (its files are missing or undecodable) and say what to do."""
        self.broken_takes[take_id] = problem
        return BrokenTake(f"{problem}; render the shot again (the take's files were left as they are).")

    def _unavailable(self, path: Path, error: BaseException) -> "ClipUnavailable":
        return ClipUnavailable(f"{self._relative(path)} could not be read just now ({_reason(error)}); the take "
                               "is fine and was left as it is. Try again in a moment.")

    def _read_failure(self, take_id: str, path: Path, error: BaseException) -> ProjectError:
        """What a failure to read a clip means: a transient one (out of memory, an I/O error, a
        timeout) leaves the take as it is; a missing or undecodable file makes it broken."""
        if isinstance(error, ProjectError):
            return error
        if is_transient(error):
            return self._unavailable(path, error)
        if not path.is_file():
            return self._broken(take_id, f"{self._relative(path)} is missing")
        return self._broken(take_id, f"{self._relative(path)} cannot be decoded ({_reason(error)})")

    def motion_out(self, shot_id: str, take_id: str) -> MotionState:
        path = self.take_dir(shot_id, take_id) / MOTION_OUT_FILE
        try:
            return MotionState.load(path)
        except FileNotFoundError:
            raise BrokenTake(f"{path} is missing; render the shot again.") from None
        except Exception as error:  # safetensors raises several types for damaged files
            raise BrokenTake(f"{path} is damaged ({error}); render the shot again.") from None

    def motion_in(self, shot_id: str, take_id: str) -> MotionState | None:
        path = self.take_dir(shot_id, take_id) / MOTION_IN_FILE
        return MotionState.load(path) if path.is_file() else None

    def latents(self, shot_id: str, take_id: str) -> torch.Tensor | None:
        path = self.take_dir(shot_id, take_id) / LATENTS_FILE
        return st_load(path.read_bytes())["latents"] if path.is_file() else None

    def write_take(self, take: Take, frames: np.ndarray, motion_out: MotionState,
                   motion_in: MotionState | None, latents: torch.Tensor | None) -> None:
        """Write a complete take folder (files into a partial folder, fsync, rename).

        frames: uint8 (T, H, W, 3), exactly what `take` records (T = num_frames, H × W = height × width);
        the clip is checked to hold them all before the folder is renamed into place."""
        if tuple(frames.shape[:3]) != (take.num_frames, take.height, take.width):
            raise ValueError(f"take {take.id} records {take.num_frames} frames of {take.width}x{take.height}, "
                             f"but {frames.shape[0]} of {frames.shape[2]}x{frames.shape[1]} were given")
        final = self.take_dir(take.shot_id, take.id)
        partial = final.parent / f"{PARTIAL_PREFIX}{take.id}"
        try:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            _write_owner(partial)  # so an open by another process knows this partial is being written
        except OSError as error:
            raise storage_error(error, f"the new take of shot {take.shot_id}", final.parent) from None
        try:
            write_mp4(partial / CLIP_FILE, frames, take.fps)
            motion_out.save(partial / MOTION_OUT_FILE)
            if motion_in is not None:
                motion_in.save(partial / MOTION_IN_FILE)
            if latents is not None:
                atomic_write_bytes(partial / LATENTS_FILE, st_save({"latents": latents.contiguous()}))
            atomic_write_json(partial / TAKE_FILE, take.to_dict())
            (partial / OWNER_FILE).unlink()
            fsync_dir(partial)
            os.replace(partial, final)
            fsync_dir(final.parent)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(error, OSError):
                raise storage_error(error, "the new take", final.parent) from None
            raise
        clip = (final / CLIP_FILE).stat()  # write_mp4 checked it holds every frame: no need to probe it again
        self._clips[(take.shot_id, take.id)] = (*_version(clip), take.num_frames, take.width, take.height, take.fps)

    def update_take(self, take: Take) -> None:
        atomic_write_json(self.take_dir(take.shot_id, take.id) / TAKE_FILE, take.to_dict())

    def delete_take_files(self, shot_id: str, take_id: str) -> None:
        """Remove a take folder (only ever on the user's explicit request). The folder is first
        renamed to a hidden trash name (one atomic step: the take is gone as a whole, and a
        bundle or a crash never sees half of it), then removed."""
        folder = self.take_dir(shot_id, take_id)
        trash = folder.with_name(f"{TRASH_PREFIX}{take_id}-{new_id()}")
        try:
            os.replace(folder, trash)
        except FileNotFoundError:
            return
        fsync_dir(folder.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def now(self) -> str:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")

    def new_take_id(self) -> str:
        return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + new_id()


def _check_declared_sizes(take: Take, path: Path) -> None:
    """BrokenTake unless the take's frame count, fps and size are whole numbers within the
    settings' limits (what any render can produce): an uploaded take.json is not trusted to
    say how much memory its clip needs. The clip itself is checked against them by check_clip."""
    for name in ("num_frames", "fps", "width", "height"):
        value = getattr(take, name)
        low, high = LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BrokenTake(f"{path.parent.name}/{TAKE_FILE} declares {name} {value!r:.40}; "
                             f"a take has a whole number from {low} to {high}.")
    if take.width % 2 or take.height % 2:
        raise BrokenTake(f"{path.parent.name}/{TAKE_FILE} declares an odd size {take.width}x{take.height}; "
                         "clips are H.264 4:2:0, whose sides are even.")


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types (what take.json can hold); unknown objects become strings."""
    return json.loads(json.dumps(value, default=str))
