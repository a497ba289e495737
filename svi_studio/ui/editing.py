"""Editing the film by shot id and project revision, with undo.

Every card event names the shot it was shown with (its id) and the project revision the
page last saw (`Project.revision`, bumped by every save). `locate` finds the shot wherever
it is now, or refuses when it was deleted; `require_current` refuses a structural edit
(move, delete, insert) sent against a revision older than the last structural change
("the film changed — …"), so a double click or a click on a card that has since moved
never acts on another shot. Nothing is changed by a refused edit.

`history_of` is the session's undo history (project/history.py); `preview_of` its film
preview writer (jobs.PreviewWriter): structure edits request a rewrite and reply at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..director import Director
from ..project.history import History
from ..project.model import ProjectError
from ..project.status import BROKEN, MISSING, STALE
from .jobs import PreviewWriter
from .sessions import Session


class FilmChanged(ProjectError):
    """A structural edit sent against an older revision: nothing was changed."""


@dataclass
class CardAction:
    """One card event: what (`kind`), on which card slot (`slot`, 0-based), naming which shot
    (`shot_id`, as the card showed it), at which project revision the page was (`revision`)."""

    kind: str
    slot: int
    shot_id: str | None = None
    revision: int | None = None
    value: str | None = None


def parse_card_action(raw: str | None, max_shots: int) -> CardAction | None:
    """The card action the page sent as JSON; None for anything malformed."""
    try:
        data = json.loads(raw or "")
        kind, slot = str(data["do"]), int(data["shot"])
    except (ValueError, TypeError, KeyError):
        return None
    if not 0 <= slot < max_shots:
        return None
    shot_id = data.get("id")
    revision = data.get("rev")
    value = data.get("value")
    try:
        revision = int(revision) if revision not in (None, "") else None
    except (TypeError, ValueError):
        revision = None
    return CardAction(kind, slot, shot_id if isinstance(shot_id, str) and shot_id else None, revision,
                      value if isinstance(value, str) else None)


def locate(director: Director, shot: str | int) -> int:
    """The index of shot `shot` (its id; an int is taken as today's index) or ProjectError."""
    if isinstance(shot, int) and not isinstance(shot, bool):
        director.shot(shot)  # ProjectError when out of range
        return shot
    for index, candidate in enumerate(director.project.shots):
        if candidate.id == shot:
            return index
    raise ProjectError("that shot no longer exists (it was deleted); nothing was changed.")


def require_current(session: Session, revision: int | None, shot_id: str | None = None) -> None:
    """Refuse (FilmChanged) a structural edit made against a revision older than the last
    structural change. revision None: the caller did not say (old API clients), allowed."""
    if revision is None:
        return
    history = history_of(session)
    if revision >= history.structure_revision:
        return
    where = ""
    if shot_id is not None:
        try:
            where = f"; that shot is now shot {locate(session.director, shot_id) + 1}"
        except ProjectError:
            where = "; that shot was deleted"
    raise FilmChanged(f"the film changed — shots were moved, added or deleted since this was sent{where}. "
                      "Nothing was changed; look at the film as it is now and try again.")


def history_of(session: Session) -> History:
    """The session's undo history, loaded from its project folder on first use."""
    if session.history is None or session.history.store is not session.director.store:
        session.history = History(session.director.store)
    return session.history


def preview_of(session: Session) -> PreviewWriter:
    """The session's background film-preview writer."""
    if session.preview is None or session.preview.director is not session.director:
        session.preview = PreviewWriter(session.director, session.preview_path)
    return session.preview


def check_reroll(director: Director, index: int) -> None:
    """Refuse re-rolling a shot whose seed is locked and whose selected take already is its
    current recipe: the new take would be the same clip, and the shots after it would go
    stale for nothing."""
    shot = director.shot(index)
    if not shot.seed_locked or shot.selected_take is None:
        return
    if director.shot_status(index)[0] in (MISSING, STALE, BROKEN):
        return
    raise ProjectError(f"shot {index + 1}'s seed is locked and nothing about it changed, so a new take would be "
                       "the same clip. Untick “Lock seed” (or press New seed) to get a different take.")
