"""The project on disk: atomic writes, complete takes only, clear errors.

A take is written into takes/<shot_id>/.partial-<take_id>/, fsynced, then renamed to
takes/<shot_id>/<take_id>/ — so a take folder without the `.partial-` prefix is
always complete. project.json is written after the rename (temp file, fsync,
rename). A crash between the two leaves a complete take that project.json does not
list yet; loading adopts it (unselected, or selected if its shot had none).
Leftover `.partial-*` folders are incomplete by construction and are removed on load.
"""

from __future__ import annotations

import copy
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..fsutil import atomic_write_bytes, atomic_write_json, fsync_dir
from ..motion import MotionState
from ..video_io import read_frames, write_mp4
from .model import ID_PATTERN, Project, ProjectError, Take, new_id

log = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
REFERENCE_FILE = "reference.png"
TAKE_FILE = "take.json"
CLIP_FILE = "clip.mp4"
LATENTS_FILE = "latents.safetensors"
MOTION_IN_FILE = "motion_in.safetensors"
MOTION_OUT_FILE = "motion_out.safetensors"
PARTIAL_PREFIX = ".partial-"
TRASH_PREFIX = ".trash-"  # a deleted take between its rename and its removal


class BrokenTake(ProjectError):
    """A take whose files are missing or unreadable (it is shown as broken, never deleted)."""


class StorageError(ProjectError):
    """The project could not be written (disk full, read-only, no permission); nothing was lost."""


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
    return StorageError(f"could not save {what}: {reason} ({folder}). Nothing was lost: earlier takes and the "
                        "project are as they were. Free some space (or fix the folder's permissions) and try again.")


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
            raise ProjectError(f"{path} not found: this folder holds no SVI Studio project.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ProjectError(
                f"{path} is damaged ({error}). The file and every take were left as they are; "
                "restore project.json from a bundle or a backup."
            ) from None
        store = cls(root, Project.from_dict(data))
        store._recover()
        return store

    def save(self) -> None:
        """Write project.json atomically (StorageError, with the old file intact, if the disk refuses)."""
        try:
            atomic_write_json(self.root / PROJECT_FILE, self.project.to_dict())
        except OSError as error:
            raise storage_error(error, "the project", self.root) from None

    def _recover(self) -> None:
        """Drop partial take folders, adopt complete takes project.json does not list yet,
        and mark listed takes whose files are missing or damaged as broken."""
        changed = False
        by_id = {shot.id: shot for shot in self.project.shots}
        takes_root = self.root / "takes"
        for shot_dir in sorted(takes_root.iterdir()) if takes_root.is_dir() else []:
            if not shot_dir.is_dir():
                continue
            for take_dir in sorted(shot_dir.iterdir()):
                if take_dir.name.startswith(PARTIAL_PREFIX):
                    log.warning("removing incomplete take folder %s (left by an interrupted render)", take_dir)
                    shutil.rmtree(take_dir, ignore_errors=True)
                    continue
                if take_dir.name.startswith(TRASH_PREFIX):  # a deletion that was interrupted: finish it
                    shutil.rmtree(take_dir, ignore_errors=True)
                    continue
                shot = by_id.get(shot_dir.name)
                if (shot is None or take_dir.name in shot.takes or not ID_PATTERN.fullmatch(take_dir.name)
                        or not (take_dir / TAKE_FILE).is_file() or self._check_take_files(shot.id, take_dir.name)):
                    continue  # only complete, readable takes are adopted; anything else is left where it is
                shot.takes.append(take_dir.name)  # complete, but the crash came before project.json
                if shot.selected_take is None:
                    shot.selected_take = take_dir.name
                    shot.seed = self.take(shot.id, take_dir.name).seed
                changed = True
        for shot in self.project.shots:
            for take_id in shot.takes:
                problem = self._check_take_files(shot.id, take_id)
                if problem:
                    self.broken_takes[take_id] = problem
        if changed:
            self.save()

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

    def add_anchor_image(self, image: Image.Image) -> str:
        """Store a shot's own anchor image; returns its project-relative path."""
        data = _png_bytes(image)
        relative = f"anchors/{hashlib.sha256(data).hexdigest()[:16]}.png"
        atomic_write_bytes(self.root / relative, data)
        return relative

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
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._takes.get((shot_id, take_id))
        if cached is None or cached[0] != version:
            cached = (version, self._read_take(path, shot_id, take_id))
            self._takes[(shot_id, take_id)] = cached
        return copy.deepcopy(cached[1])

    def _read_take(self, path: Path, shot_id: str, take_id: str) -> Take:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            take = Take.from_dict(data if isinstance(data, dict) else {})
        except FileNotFoundError:
            raise BrokenTake(f"{path} is missing.") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ProjectError) as error:
            raise BrokenTake(f"{path} is damaged ({error}).") from None
        if take.id != take_id or take.shot_id != shot_id:  # take.json's ids name files too: they must be its own
            raise BrokenTake(f"{path} belongs to another take ({take.shot_id!r:.40}/{take.id!r:.40}).")
        return take

    def clip_path(self, shot_id: str, take_id: str) -> Path:
        return self.take_dir(shot_id, take_id) / CLIP_FILE

    def frames(self, shot_id: str, take_id: str) -> np.ndarray:
        """The take's decoded frames; BrokenTake (and the take marked broken) if the clip is missing or damaged."""
        path = self.clip_path(shot_id, take_id)
        try:
            return read_frames(path)
        except Exception as error:  # imageio-ffmpeg raises OSError, RuntimeError, ValueError, StopIteration …
            problem = (f"{path} is missing" if not path.is_file()
                       else f"{path} cannot be decoded ({str(error).splitlines()[0][:160] if str(error) else type(error).__name__})")
            self.broken_takes[take_id] = problem
            raise BrokenTake(f"{problem}; render the shot again (the take's files were left as they are).") from None

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
        """Write a complete take folder (files into a partial folder, fsync, rename)."""
        final = self.take_dir(take.shot_id, take.id)
        partial = final.parent / f"{PARTIAL_PREFIX}{take.id}"
        try:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
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
            fsync_dir(partial)
            os.replace(partial, final)
            fsync_dir(final.parent)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(error, OSError):
                raise storage_error(error, "the new take", final.parent) from None
            raise

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


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types (what take.json can hold); unknown objects become strings."""
    return json.loads(json.dumps(value, default=str))
