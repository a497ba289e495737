"""This browser's projects: remembered in the browser, reopened when the page loads.

The page keeps `{"open": token, "tokens": [token, …]}` in Gradio's BrowserState (the
browser's localStorage): the session tokens of the projects made in this browser, newest
first, and the one it had open. Tokens are 128-bit random (sessions.py), so one browser
cannot guess another's; sharing a project means sharing its zip (Download project). A
page that loads reopens the project it had open, from disk if the server restarted; the
Projects panel lists, opens, renames, duplicates and deletes the others. A project swept
for being idle (SVI_SESSION_TTL_HOURS) is dropped from the list the next time it is shown.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from ..director import Director
from ..fsutil import atomic_write_text
from ..project.model import ProjectError
from .sessions import TOKEN_PATTERN, Session, SessionRegistry

BROWSER_KEY = "svi-studio-projects"
MAX_REMEMBERED = 50
EMPTY = {"open": None, "tokens": []}
SECRET_FILE = "browser-state.key"


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
        session = registry.get(token)
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


def delete(registry: SessionRegistry, session: Session) -> None:
    """Remove the session's folder (refused while it renders)."""
    if session.job is not None:
        raise ProjectError("this project is rendering; cancel the render before deleting it.")
    registry.forget(session.token)
    shutil.rmtree(session.folder, ignore_errors=True)
    if registry.shelf is not None:
        registry.shelf.remove(session.token)
