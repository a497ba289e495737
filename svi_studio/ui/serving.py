"""What leaves the server: files, response headers, and the text of messages.

The data folder is never served. Gradio serves a file by its absolute path
(`/gradio_api/file=<path>`) when it lies in `allowed_paths`, in Gradio's own upload
folder, or in its examples cache; the data folder is put in `blocked_paths`, so no
URL reaches a project, a take folder or a file an uploaded zip brought in, wherever
`--data-dir` is (inside the repository, the temp folder, or a mounted volume).

The only way a session's clip, preview, reference or export reaches a browser is
`MediaShelf.publish`: a hard link (a copy across file systems) of that one file,
placed in Gradio's upload folder under

    <gradio upload folder>/svi-media/<session media key>/<random>/<file name>

media key = HMAC(process secret, session token): it names nothing on disk a client could
use and is not the token (which never leaves the server). The random part makes each
published file's URL unguessable even to someone holding another URL of the same session.
Only known media suffixes are published (mp4, png, jpeg, webp, zip), so Gradio serves them
as video/mp4 or image/* inline, or a zip as an attachment, never as HTML or SVG. Gradio's
`delete_cache` ages these links out with its uploads; the session sweep removes a session's
whole shelf with its folder.

`redact` takes server paths and session tokens out of any text a user sees;
`SecurityHeaders` adds nosniff and a frame-ancestors policy to every response; and
`ArrivalOrder` numbers every request as it arrives, which orders the page's edits
(see Studio.apply_form) by the server's sequence instead of the browser's clock.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SHELF_FOLDER = "svi-media"
PUBLISHED_SUFFIXES = {".mp4", ".png", ".jpg", ".jpeg", ".webp", ".zip"}
ARRIVAL_KEY = "svi_arrival"


class MediaShelf:
    """Session files published for Gradio to serve, one unguessable folder per file."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self._secret = secrets.token_bytes(32)
        self._published: dict[tuple[str, str], tuple[int, int, Path]] = {}  # (key, source) → (mtime, size, link)

    def key(self, token: str) -> str:
        """The shelf folder name of a session token (the token itself never leaves the server)."""
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()[:32]

    def folder(self, token: str) -> Path:
        return self.root / self.key(token)

    def publish(self, token: str, source: str | Path) -> str | None:
        """A servable path for `source` (a file of session `token`), or None when the file is
        gone or is not a media file this app serves."""
        source = Path(source)
        if source.suffix.lower() not in PUBLISHED_SUFFIXES:
            log.warning("not publishing %s: not a media file", source.name)
            return None
        try:
            stat = source.stat()
        except OSError:
            return None
        key = self.key(token)
        known = self._published.get((key, str(source)))
        if known is not None:
            if known[:2] == (stat.st_mtime_ns, stat.st_size) and known[2].exists():
                return str(known[2])
            self._drop(known[2])  # an older version (the preview before this shot): the page now gets this one
        folder = self.root / key / secrets.token_hex(16)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (re.sub(r"[^A-Za-z0-9._-]+", "_", source.name).lstrip(".") or f"file{source.suffix}")
        try:
            os.link(source, target)
        except OSError:  # another file system (a mounted data volume), or links not allowed
            shutil.copyfile(source, target)
        self._published[(key, str(source))] = (stat.st_mtime_ns, stat.st_size, target)
        return str(target)

    def unpublish(self, token: str, source: str | Path) -> None:
        """Drop the published copy of `source` (the session deleted the file)."""
        known = self._published.pop((self.key(token), str(source)), None)
        if known is not None:
            self._drop(known[2])

    @staticmethod
    def _drop(link: Path) -> None:
        link.unlink(missing_ok=True)
        try:
            link.parent.rmdir()
        except OSError:
            pass

    def contains(self, path: str | Path) -> bool:
        """Whether `path` lies on the shelf (a published file sent back as if it were an upload)."""
        try:
            return Path(path).resolve().is_relative_to(self.root)
        except (OSError, ValueError):
            return False

    def remove(self, token: str) -> None:
        """Drop every file published for a session (its folder was swept)."""
        key = self.key(token)
        self._published = {memo: known for memo, known in self._published.items() if memo[0] != key}
        shutil.rmtree(self.root / key, ignore_errors=True)

    def sweep(self, max_idle_s: float, now: float | None = None) -> int:
        """Remove shelf folders untouched for `max_idle_s` (left by sessions this process no
        longer knows, e.g. from before a restart). Returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        for folder in self.root.iterdir() if self.root.is_dir() else []:
            try:
                idle = now - folder.stat().st_mtime
            except OSError:
                continue
            if idle > max_idle_s and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed


# -- messages --------------------------------------------------------------------------------

def redact(text: str, sessions_root: Path, folders: list[Path] = (), tokens: list[str] = ()) -> str:
    """`text` without server paths or session tokens: a session's folder prefix
    (<sessions_root>/<token>/) is dropped, so "…/sessions/<token>/project/takes/x" reads
    "project/takes/x"; any other of `folders` (the data folder, Gradio's upload folder) is
    dropped the same way; `tokens` are replaced by "…"."""
    sep = re.escape(os.sep)
    for root in {str(sessions_root), str(Path(sessions_root).resolve())}:
        text = re.sub(re.escape(root) + sep + r"[0-9a-f]{32}(?:" + sep + r")?", "", text)
    for folder in sorted({str(f) for f in folders} | {str(Path(f).resolve()) for f in folders}, key=len, reverse=True):
        text = text.replace(folder + os.sep, "").replace(folder, "the server's data folder")
    for token in tokens:
        text = text.replace(token, "…")
    return text


# -- response headers and request order (ASGI middleware) --------------------------------------

def frame_ancestors() -> str:
    """Who may show the app in a frame: this origin only; on a Hugging Face Space (SPACE_ID set)
    also huggingface.co, whose Space page embeds the app in an iframe."""
    if os.environ.get("SPACE_ID"):
        return "frame-ancestors 'self' https://huggingface.co https://*.huggingface.co"
    return "frame-ancestors 'self'"


class SecurityHeaders:
    """Adds X-Content-Type-Options: nosniff and a frame-ancestors Content-Security-Policy to
    every HTTP response (a response that sets its own CSP keeps it)."""

    def __init__(self, app: Any):
        self.app = app
        self.headers = [(b"x-content-type-options", b"nosniff"),
                        (b"content-security-policy", frame_ancestors().encode())]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_ARRIVALS = itertools.count(1)


class ArrivalOrder:
    """Numbers every HTTP request in the order the server receives it (request.state.svi_arrival).

    A Gradio event's inputs are sent when it is queued, so this number orders form
    snapshots by when they left the browser, whatever the browser's clock says and however
    long the event then waited in the queue."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[ARRIVAL_KEY] = next(_ARRIVALS)
        await self.app(scope, receive, send)


def arrival_of(request: Any) -> int | None:
    """The arrival number of the request behind a Gradio event (None outside a served request)."""
    inner = getattr(request, "request", None)
    scope = getattr(inner, "scope", None)
    if not isinstance(scope, dict):
        return None
    value = scope.get("state", {}).get(ARRIVAL_KEY)
    return value if isinstance(value, int) else None
