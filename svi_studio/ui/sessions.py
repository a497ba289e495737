"""Per-session project folders.

Every browser tab (and every gradio_client `Client`) gets a random token, made here
on the server and kept only in that session's `gr.State` (Gradio keeps State on the
server: a request cannot set it). The token names the session's folder:

    <data_dir>/sessions/<token>/project/    the project (Director root)
    <data_dir>/sessions/<token>/exports/    exported films, the preview, project zips
    <data_dir>/sessions/<token>/uploads/    audio and LoRA files this session uploaded
    <data_dir>/sessions/<token>/cancel      present while a cancel is requested

Paths are only ever built from a token that matches TOKEN_PATTERN, never from
anything a client sends, and are checked to stay inside the sessions folder.
"New project" (and loading an example or a zip) starts a new token and folder; the
old folder stays on disk until `sweep` removes folders idle for longer than the
registry's `max_idle_s` (never one that is rendering), together with the files the
session published for the browser (`MediaShelf`). A page whose folder was swept gets a
new, empty project on its next action. `disk_use` is what the session's quota counts:
its folder plus its published copies, each file once.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..director import Director
from ..engines.base import Engine
from ..project.model import ProjectError
from .serving import MediaShelf

log = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"[0-9a-f]{32}")
SESSIONS_FOLDER = "sessions"
SWEEP_EVERY_S = 600  # automatic sweeps run at most this often


class CancelFlag:
    """A session's cancel request: a threading.Event in this process, plus a flag file
    that a forked GPU worker (ZeroGPU) sees too. Pickles as the file path only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._event: threading.Event | None = threading.Event()

    def set(self) -> None:
        if self._event is not None:
            self._event.set()
        self.path.touch()

    def clear(self) -> None:
        if self._event is not None:
            self._event.clear()
        self.path.unlink(missing_ok=True)

    def is_set(self) -> bool:
        return (self._event is not None and self._event.is_set()) or self.path.exists()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self._event = None


@dataclass
class Session:
    """One session's project and what the page currently shows of it."""

    token: str
    folder: Path
    director: Director
    cancel: CancelFlag
    lock: threading.RLock = field(default_factory=threading.RLock)
    shown: dict[str, Any] = field(default_factory=dict)  # component key → value the page shows
    job: str | None = None  # "render" / "regenerate" while a render job runs
    form_arrival: int | None = None  # server arrival number of the newest page form applied
    style_loras: list[str] = field(default_factory=list)  # LoRA adapters this session uploaded
    history: Any = None  # project.history.History, loaded on first use (ui/editing.history_of)
    preview: Any = None  # jobs.PreviewWriter of the film preview (ui/editing.preview_of)
    last_used: float = field(default_factory=time.time)

    @property
    def project_dir(self) -> Path:
        return self.folder / "project"

    @property
    def exports_dir(self) -> Path:
        path = self.folder / "exports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def uploads_dir(self) -> Path:
        path = self.folder / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def preview_path(self) -> Path:
        return self.exports_dir / "preview.mp4"


class SessionRegistry:
    """Sessions by token: in memory (most recent `keep`), reopened from disk when evicted."""

    def __init__(self, data_dir: str | Path, engine: Engine, blank_view: Callable[[], dict[str, Any]] = dict,
                 keep: int = 64, max_idle_s: float | None = None, shelf: MediaShelf | None = None):
        """keep: sessions held in memory; max_idle_s: when set, session folders idle longer than
        this are removed (checked when a session is opened or created, at most every
        SWEEP_EVERY_S); shelf: where the sessions' files are published for the browser."""
        self.max_idle_s = max_idle_s
        self.shelf = shelf
        self._last_sweep = 0.0
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / SESSIONS_FOLDER
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.blank_view = blank_view
        self.keep = keep
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self.lora_owners: dict[str, str] = {}  # style LoRA adapter name → token of the session that uploaded it

    # -- folders -------------------------------------------------------------------------

    def folder(self, token: str) -> Path:
        """The session folder of a well-formed token (ProjectError otherwise)."""
        if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
            raise ProjectError("this session is not valid; reload the page to start a new one.")
        folder = (self.root / token).resolve()
        if folder.parent != self.root.resolve():
            raise ProjectError("this session is not valid; reload the page to start a new one.")
        return folder

    # -- sessions ------------------------------------------------------------------------

    def create(self, make_project: Callable[[Path], Director] | None = None) -> Session:
        """A new token and folder, with a project made by `make_project(project_dir)`
        (default: an empty project with one empty shot)."""
        self._maybe_sweep()
        token = secrets.token_hex(16)
        folder = self.folder(token)
        folder.mkdir(parents=True)
        project_dir = folder / "project"
        try:
            if make_project is None:
                director = Director.create(project_dir, self.engine)
                director.add_shot("")
            else:
                director = make_project(project_dir)
        except BaseException:  # a refused upload or a failed example: no folder is left behind
            shutil.rmtree(folder, ignore_errors=True)
            raise
        session = Session(token=token, folder=folder, director=director, cancel=CancelFlag(folder / "cancel"),
                          shown=self.blank_view())
        session.cancel.clear()
        self._remember(session)
        return session

    def get(self, token: str | None) -> Session | None:
        """The session of `token`, or None when there is none (no token yet, or its folder is gone)."""
        if not token:
            return None
        folder = self.folder(token)
        self._maybe_sweep()
        with self._lock:
            session = self._sessions.get(token)
            if session is not None:
                self._sessions.move_to_end(token)
                session.last_used = time.time()
                return session
        if not (folder / "project").is_dir():
            return None
        director = Director.open(folder / "project", self.engine)
        session = Session(token=token, folder=folder, director=director, cancel=CancelFlag(folder / "cancel"),
                          shown=self.blank_view())
        session.style_loras = [name for name, owner in self.lora_owners.items() if owner == token]
        self._remember(session)
        return session

    def ensure(self, token: str | None) -> Session:
        """The session of `token`, or a new one when it has none yet (or its folder was swept:
        then the page is redrawn in full, since it shows a project that is gone)."""
        session = self.get(token)
        if session is None:
            session = self.create()
            if token:
                session.shown = {}
        return session

    def tokens(self) -> list[str]:
        """Tokens of the sessions in memory (to keep them out of messages)."""
        with self._lock:
            return list(self._sessions)

    def forget(self, token: str | None) -> None:
        """Drop a session from memory (its folder stays)."""
        if not token:
            return
        with self._lock:
            self._sessions.pop(token, None)

    def sweep(self, max_idle_s: float, now: float | None = None) -> list[str]:
        """Remove the folders of sessions unused for more than `max_idle_s` seconds, except
        those rendering. Returns the removed tokens. A session not in memory counts as used
        when its project was last saved."""
        now = time.time() if now is None else now
        removed = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            token = folder.name
            if not TOKEN_PATTERN.fullmatch(token) or not folder.is_dir() or folder.is_symlink():
                continue
            with self._lock:
                session = self._sessions.get(token)
                if session is not None and session.job is not None:
                    continue
                last_used = session.last_used if session is not None else _last_saved(folder)
                if now - last_used <= max_idle_s:
                    continue
                self._sessions.pop(token, None)
            for name in [n for n, owner in self.lora_owners.items() if owner == token]:
                self._drop_lora(name)
            shutil.rmtree(folder, ignore_errors=True)
            if self.shelf is not None:
                self.shelf.remove(token)
            removed.append(token)
        if self.shelf is not None:
            self.shelf.sweep(max_idle_s, now)
        if removed:
            log.info("removed %d idle session folder(s)", len(removed))
        return removed

    def _maybe_sweep(self) -> None:
        if self.max_idle_s is None or time.time() - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = time.time()
        try:
            self.sweep(self.max_idle_s)
        except OSError:
            log.exception("could not sweep idle sessions")

    def disk_use(self, session: Session) -> int:
        """Bytes on disk for this session: its folder and its published files, each file
        counted once (a published hard link costs nothing extra)."""
        folders = [session.folder] + ([self.shelf.folder(session.token)] if self.shelf is not None else [])
        return disk_use(folders)

    def _drop_lora(self, name: str) -> None:
        """Unload a swept session's style LoRA from the shared engine."""
        self.lora_owners.pop(name, None)
        stack = getattr(self.engine, "loras", None)
        if stack is not None and name in stack.specs:
            from .runtime import GPU_LOCK

            with GPU_LOCK:
                stack.remove(name)

    def _remember(self, session: Session) -> None:
        with self._lock:
            self._sessions[session.token] = session
            self._sessions.move_to_end(session.token)
            for token in list(self._sessions):
                if len(self._sessions) <= self.keep:
                    break
                if self._sessions[token].job is None:
                    del self._sessions[token]


def disk_use(folders: list[Path]) -> int:
    """Bytes used by the files under `folders`, each inode once (links are not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    stat = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
    return total


def _last_saved(folder: Path) -> float:
    """When a session folder was last written (its project.json, else the folder itself)."""
    times = []
    for path in (folder / "project" / "project.json", folder):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)
