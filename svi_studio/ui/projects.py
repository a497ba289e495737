"""This browser's projects: remembered in the browser, reopened when the page loads.

The page keeps `{"open": token, "tokens": [token, …]}` in Gradio's BrowserState (the
browser's localStorage): the session tokens of the projects made in this browser, newest
first, and the one it had open. Tokens are 128-bit random (sessions.py), so one browser
cannot guess another's; sharing a project means sharing its zip (Download project). A
page that loads reopens the project it had open, from disk if the server restarted; the
Projects panel lists, opens, renames, duplicates and deletes the others. A project swept
for being idle (SVI_SESSION_TTL_HOURS) is dropped from the list the next time it is shown.

Project folders made with the CLI (app.py --projects-dir DIR, local servers only): the panel
also lists DIR itself and its immediate subfolders that hold a project.json (`project_folders`,
newest first, at most MAX_FOLDERS; symlinks are not followed), and opens the chosen one in place
(`open_folder` → SessionRegistry.link): edits land in that folder's project.json, and the
session is remembered in the browser like any other. The page sends back only a folder's name,
looked up in a fresh listing. Deleting such a project (or sweeping it when idle) removes the
app's link and the session's own exports and uploads, never the folder.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
from dataclasses import dataclass
from stat import S_ISREG
from pathlib import Path
from typing import Any

from ..director import Director
from ..fsutil import atomic_write_text
from ..project.model import Project, ProjectError
from ..project.store import MAX_PROJECT_JSON_BYTES, PROJECT_FILE, read_json
from .sessions import TOKEN_PATTERN, Session, SessionRegistry

BROWSER_KEY = "svi-studio-projects"
MAX_REMEMBERED = 50
EMPTY = {"open": None, "tokens": []}
SECRET_FILE = "browser-state.key"
MAX_FOLDERS = 200  # project folders listed from --projects-dir
HERE = "."  # the value naming DIR itself when it is a project folder


def browser_secret(data_dir: Path) -> str:
    """The key BrowserState encrypts this browser's list with: made once per data folder and
    kept there, so the list still opens after a server restart (Gradio's default key is new
    with every process)."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) >= 32:
            return secret
    except OSError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    atomic_write_text(path, secret)
    path.chmod(0o600)
    return secret


def stored_tokens(stored: Any) -> tuple[str | None, list[str]]:
    """(open token, remembered tokens) from what the browser sent; anything malformed is dropped."""
    if not isinstance(stored, dict):
        return None, []
    tokens = [t for t in stored.get("tokens") or [] if isinstance(t, str) and TOKEN_PATTERN.fullmatch(t)]
    opened = stored.get("open")
    opened = opened if isinstance(opened, str) and TOKEN_PATTERN.fullmatch(opened) else None
    return opened, list(dict.fromkeys(tokens))[:MAX_REMEMBERED]


def remember(stored: Any, token: str | None) -> dict[str, Any]:
    """The browser's list with `token` open and first."""
    _, tokens = stored_tokens(stored)
    if not token:
        return {"open": None, "tokens": tokens}
    return {"open": token, "tokens": ([token] + [t for t in tokens if t != token])[:MAX_REMEMBERED]}


def forget(stored: Any, token: str) -> dict[str, Any]:
    opened, tokens = stored_tokens(stored)
    return {"open": None if opened == token else opened, "tokens": [t for t in tokens if t != token]}


def listing(registry: SessionRegistry, stored: Any) -> list[tuple[str, str]]:
    """(label, token) of each remembered project whose folder still exists."""
    choices = []
    for token in stored_tokens(stored)[1]:
        try:
            session = registry.get(token)
        except ProjectError:  # a linked folder broken outside the app: listed again once it is fixed
            continue
        if session is None:
            continue
        shots = len(session.director.project.shots)
        choices.append((f"{session.director.project.name} · {shots} shot{'s' if shots != 1 else ''}", token))
    return choices


def remembered_session(registry: SessionRegistry, stored: Any, token: str | None) -> Session:
    """The session of `token` if this browser remembers it (ProjectError otherwise)."""
    if not token or token not in stored_tokens(stored)[1]:
        raise ProjectError("choose one of this browser's projects first.")
    session = registry.get(token)
    if session is None:
        raise ProjectError("that project is gone (removed after being idle, or deleted); "
                           "open a project zip if you downloaded one.")
    return session


def duplicate(registry: SessionRegistry, session: Session) -> Session:
    """A copy of the session's project (reference, prompts, settings, every take) in a new session."""
    def copy(root):
        shutil.copytree(session.project_dir, root)
        return Director.open(root, session.director.engine)

    with session.lock:
        fresh = registry.create(copy)
    fresh.director.set_story(name=f"{session.director.project.name} (copy)")
    return fresh


def delete(registry: SessionRegistry, session: Session) -> str:
    """Remove the session's folder (refused while it renders); says what was removed. A linked
    project folder stays: rmtree removes the symlink, it does not follow it."""
    if session.job is not None:
        raise ProjectError("this project is rendering; cancel the render before deleting it.")
    linked = session.project_dir.resolve().name if session.linked else None
    registry.forget(session.token)
    shutil.rmtree(session.folder, ignore_errors=True)
    if registry.shelf is not None:
        registry.shelf.remove(session.token)
    if linked is not None:
        return f"Removed from the app; the folder {linked} on disk was left as it is."
    return "Project deleted."


# -- project folders made with the CLI (--projects-dir) -----------------------------------------

def check_local(host: str | None, share: bool) -> None:
    """--projects-dir opens folders of this machine in place: only for a server that other
    machines cannot reach (a loopback host, no share link). ValueError says why otherwise."""
    if share:
        raise ValueError("--projects-dir opens folders of this machine in place, so the app must not be reachable "
                         "from other machines; drop --share (or drop --projects-dir and open projects as zips).")
    if not is_loopback(host or "127.0.0.1"):
        raise ValueError(f"--projects-dir opens folders of this machine in place, so the app must not be reachable "
                         f"from other machines; serve on 127.0.0.1 (--host 127.0.0.1) instead of {host!r}, "
                         "or drop --projects-dir and open projects as zips.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_projects_dir(projects_dir: str | Path) -> Path:
    """The resolved folder (relative paths against the working folder); ValueError when it is
    not a folder."""
    path = Path(projects_dir).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise ValueError(f"--projects-dir {projects_dir} {what}; give a folder that holds project folders made "
                         "with `python -m svi_studio new`.")
    return path.resolve()


@dataclass(frozen=True)
class ProjectFolder:
    """One project folder under --projects-dir, as the panel lists it."""

    value: str  # what the page sends back: the folder's name, or HERE for DIR itself
    path: Path
    label: str
    problem: str | None  # why it cannot be opened (a corrupt or too new project.json), else None


def project_folders(projects_dir: Path) -> list[ProjectFolder]:
    """DIR itself if it is a project, then its subfolders holding a project.json (no recursion,
    symlinks skipped), newest project.json first, at most MAX_FOLDERS. Only reads."""
    found = []  # (mtime, value, path)
    candidates = [(HERE, projects_dir)]
    try:
        with os.scandir(projects_dir) as entries:
            candidates += [(e.name, Path(e.path)) for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        pass
    for value, path in candidates:
        try:
            stat = (path / PROJECT_FILE).lstat()
        except OSError:
            continue
        if not S_ISREG(stat.st_mode):  # a symlinked project.json could point anywhere
            continue
        found.append((stat.st_mtime, value, path))
    found.sort(key=lambda item: item[0], reverse=True)
    return [_describe(value, path) for _, value, path in found[:MAX_FOLDERS]]


def _describe(value: str, path: Path) -> ProjectFolder:
    folder = path.name
    try:
        project = Project.from_dict(read_json(path / PROJECT_FILE, PROJECT_FILE, MAX_PROJECT_JSON_BYTES))
    except (ProjectError, OSError, ValueError) as error:
        reason = str(error) if isinstance(error, ProjectError) else "project.json cannot be read"
        return ProjectFolder(value, path, f"{folder} — cannot be opened: {reason}", reason)
    shots = len(project.shots)
    return ProjectFolder(value, path, f"{project.name} · {shots} shot{'s' if shots != 1 else ''} · {folder}", None)


def folder_choices(projects_dir: Path) -> list[tuple[str, str]]:
    """(label, value) of each listed project folder, for the panel's dropdown."""
    return [(entry.label, entry.value) for entry in project_folders(projects_dir)]


def open_folder(registry: SessionRegistry, projects_dir: Path, value: Any) -> Session:
    """The session of the listed folder the page chose (`value` is looked up in a fresh listing,
    never used as a path)."""
    entry = next((e for e in project_folders(projects_dir) if isinstance(value, str) and e.value == value), None)
    if entry is None:
        raise ProjectError("choose one of the listed project folders first (press Refresh if it is new).")
    if entry.problem:
        raise ProjectError(f"the folder {entry.path.name} cannot be opened: {entry.problem}")
    return registry.link(entry.path)
