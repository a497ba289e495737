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

A project folder made with the CLI is opened in place (`link`, app.py --projects-dir, local
servers only): its session's `project` is a symlink to that folder, so every path above
works unchanged and renders still take the folder's own render lock (it keys on the resolved
path). One token per folder, kept in <data_dir>/linked.json (folder → token), so the folder
opens as the same session from any browser of this server. Deleting or sweeping the session
removes the symlink only (rmtree does not follow it), never the folder; opening it again
recreates the link under the same token. The folder's files are the user's own disk and do
not count towards the session quota.
"""

from __future__ import annotations

import json
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
from typing import Any, Callable, Iterator

from ..director import Director
from ..engines.base import Engine
from ..fsutil import atomic_write_json
from ..project.model import ProjectError
from ..project.store import PROJECT_FILE
from .serving import MediaShelf

log = logging.getLogger(__name__)

TOKEN_PATTERN = re.compile(r"[0-9a-f]{32}")
SESSIONS_FOLDER = "sessions"
SWEEP_EVERY_S = 600  # automatic sweeps run at most this often
LINKS_FILE = "linked.json"  # resolved path of each linked project folder → its session token


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
    def linked(self) -> bool:
        """Whether the project is a folder opened in place (SessionRegistry.link), not the session's own."""
        return self.project_dir.is_symlink()

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
        self._links_lock = threading.Lock()
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

    def link(self, project_root: str | Path) -> Session:
        """The session of a project folder opened in place: its `project` is a symlink to the
        folder. The same folder always gets the same token (linked.json); a token whose session
        folder was deleted or swept is reused to make the link again. ProjectError when the
        folder holds no project or the project cannot be opened (nothing is left behind)."""
        root = Path(project_root).resolve()
        if not (root / PROJECT_FILE).is_file():
            raise ProjectError(f"the folder {root.name!r} holds no {PROJECT_FILE}: it is not an SVI Studio project.")
        self._maybe_sweep()
        with self._links_lock:
            links = self._links()
            token = links.get(str(root))
            if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
                token = secrets.token_hex(16)
            folder = self.folder(token)
            project_dir = folder / "project"
            if project_dir.is_symlink() and project_dir.resolve() == root:
                session = self.get(token)
                if session is not None:
                    return session
            if project_dir.exists() and not project_dir.is_symlink():  # never replace a session's own project
                token = secrets.token_hex(16)
                folder = self.folder(token)
                project_dir = folder / "project"
            folder.mkdir(parents=True, exist_ok=True)
            project_dir.unlink(missing_ok=True)  # a link left to a folder that moved away
            os.symlink(root, project_dir, target_is_directory=True)
            try:
                director = Director.open(project_dir, self.engine)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)  # removes the link, never the folder it points to
                raise
            links[str(root)] = token
            atomic_write_json(self.data_dir / LINKS_FILE, links)
        self.forget(token)  # an old in-memory session of a swept link is replaced
        session = Session(token=token, folder=folder, director=director, cancel=CancelFlag(folder / "cancel"),
                          shown=self.blank_view())
        session.cancel.clear()
        self._remember(session)
        return session

    def _links(self) -> dict[str, str]:
        """linked.json: resolved folder path → token ({} when missing or unreadable)."""
        try:
            links = json.loads((self.data_dir / LINKS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in links.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(links, dict) else {}

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
        if session is not None:
            self._refresh(session)
            return session
        if not (folder / "project").is_dir():
            return None
        director = Director.open(folder / "project", self.engine)
        session = Session(token=token, folder=folder, director=director, cancel=CancelFlag(folder / "cancel"),
                          shown=self.blank_view())
        session.style_loras = [name for name, owner in self.lora_owners.items() if owner == token]
        self._remember(session)
        return session

    @staticmethod
    def _refresh(session: Session) -> None:
        """Pick up what another program saved to the session's project.json (the CLI on a
        folder opened in place, the GPU worker's copy): ProjectStore.refresh, under the
        session's lock. When the lock is busy (a plan or an edit in progress), the next event
        refreshes instead of waiting."""
        if not session.lock.acquire(blocking=False):
            return
        try:
            session.director.store.refresh()
        finally:
            session.lock.release()

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
        return disk_use(folders, mine_not=[session.project_dir] if session.linked else [])

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


def disk_use(folders: list[Path], mine_not: list[Path] = ()) -> int:
    """Bytes used by the files under `folders`, each inode once (links are not followed). Files
    that are also under `mine_not` (a linked project folder, whose published hard links sit in
    the shelf) are not counted."""
    seen = {(stat.st_dev, stat.st_ino) for stat in _file_stats(mine_not)}
    total = 0
    for stat in _file_stats(folders):
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def _file_stats(folders: list[Path]) -> Iterator[os.stat_result]:
    """lstat of every file under `folders` (a folder that is itself a symlink is listed; links
    below it are not followed)."""
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    yield os.lstat(os.path.join(root, name))
                except OSError:
                    continue


def _last_saved(folder: Path) -> float:
    """When a session folder was last written (its project.json, else the folder itself)."""
    times = []
    for path in (folder / "project" / "project.json", folder):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)
