"""Undo and redo of a project's shot list, kept in the project folder.

A step is a snapshot of the shots list (each shot's prompt, seed, lock, overrides, anchor,
takes and selected take) taken before an edit. `History.step(label)` records one around an
edit; `undo` puts the snapshot back and keeps the state it replaced for `redo`.

    <project>/history.json   {"undo": [{"label", "shots"}...], "redo": [...], "structure_revision"}

written atomically after every change, so the history survives a reload and a server restart.
Takes' files are never in the history: a deleted shot's take folders stay on disk while a
step that could bring the shot back is in the history (`delete_shot_keeping_takes`) and are
removed once no step names the shot any more (`prune`).

`structure_revision` is the project revision (Project.revision) of the last change to the
shots' order or membership (move, delete, insert, undo, redo): a structural edit sent by a
client that last saw an older revision is refused (see ui/editing.py).
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from typing import Any, Iterator

from ..fsutil import atomic_write_json
from .model import ID_PATTERN, ProjectError, Shot
from .store import ProjectStore

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
MAX_STEPS = 30  # undo steps kept per project (the oldest falls off)


class History:
    """Undo/redo stacks of one project folder."""

    def __init__(self, store: ProjectStore, max_steps: int = MAX_STEPS):
        self.store = store
        self.max_steps = max_steps
        self.undo_steps: list[dict[str, Any]] = []
        self.redo_steps: list[dict[str, Any]] = []
        self.structure_revision = store.project.revision
        self._load()

    @property
    def path(self):
        return self.store.root / HISTORY_FILE

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:  # a damaged history loses undo, never the project
            log.warning("ignoring the damaged undo history of %s: %s", self.store.root, error)
            return
        if not isinstance(data, dict):
            return
        self.undo_steps = [s for s in data.get("undo") or [] if _is_step(s)][-self.max_steps:]
        self.redo_steps = [s for s in data.get("redo") or [] if _is_step(s)][-self.max_steps:]
        revision = data.get("structure_revision")
        if isinstance(revision, int) and revision <= self.store.project.revision:
            self.structure_revision = revision

    def save(self) -> None:
        atomic_write_json(self.path, {"undo": self.undo_steps, "redo": self.redo_steps,
                                      "structure_revision": self.structure_revision})

    # -- recording -------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        return [shot.to_dict() for shot in self.store.project.shots]

    @contextmanager
    def step(self, label: str, structural: bool = False) -> Iterator[None]:
        """Record the edit made inside the block as one undo step named `label` (nothing is
        recorded when the shots did not change). structural: the edit changes the shots'
        order or membership."""
        before = self.snapshot()
        yield
        if self.snapshot() == before:
            return
        self.undo_steps.append({"label": label, "shots": before})
        del self.undo_steps[:-self.max_steps]
        self.redo_steps.clear()
        if structural:
            self.structure_revision = self.store.project.revision
        self.prune()
        self.save()

    # -- undo / redo -----------------------------------------------------------------------

    def undo(self) -> str:
        """Undo the latest step; returns its label (ProjectError when there is none)."""
        if not self.undo_steps:
            raise ProjectError("there is nothing to undo.")
        return self._swap(self.undo_steps, self.redo_steps)

    def redo(self) -> str:
        """Redo the latest undone step; returns its label (ProjectError when there is none)."""
        if not self.redo_steps:
            raise ProjectError("there is nothing to redo.")
        return self._swap(self.redo_steps, self.undo_steps)

    def next_undo(self) -> str | None:
        return self.undo_steps[-1]["label"] if self.undo_steps else None

    def next_redo(self) -> str | None:
        return self.redo_steps[-1]["label"] if self.redo_steps else None

    def _swap(self, source: list[dict[str, Any]], target: list[dict[str, Any]]) -> str:
        step = source.pop()
        target.append({"label": step["label"], "shots": self.snapshot()})
        self.restore(step["shots"])
        self.structure_revision = self.store.project.revision
        self.save()
        return step["label"]

    def restore(self, shots: list[dict[str, Any]]) -> None:
        """Make the shots list `shots` again. A shot keeps takes rendered since the snapshot
        (renders are not undone), and only takes whose folder is still on disk."""
        current = {shot.id: shot for shot in self.store.project.shots}
        restored = []
        for data in shots:
            shot = Shot.from_dict(data)
            live = current.get(shot.id)
            if live is not None:
                shot.takes += [take for take in live.takes if take not in shot.takes]
            shot.takes = [take for take in shot.takes if self.store.take_dir(shot.id, take).is_dir()]
            if shot.selected_take not in shot.takes:
                kept = live.selected_take if live is not None else None
                shot.selected_take = kept if kept in shot.takes else (shot.takes[-1] if shot.takes else None)
            restored.append(shot)
        self.store.project.shots = restored
        self.store.save()

    # -- files -----------------------------------------------------------------------------

    def prune(self) -> None:
        """Remove the take folders of shots that neither the project nor any step names."""
        named = {shot.id for shot in self.store.project.shots}
        for step in self.undo_steps + self.redo_steps:
            named.update(shot.get("id") for shot in step["shots"])
        takes_root = self.store.root / "takes"
        for folder in sorted(takes_root.iterdir()) if takes_root.is_dir() else []:
            if folder.is_dir() and ID_PATTERN.fullmatch(folder.name) and folder.name not in named:
                shutil.rmtree(folder, ignore_errors=True)


def delete_shot_keeping_takes(store: ProjectStore, index: int, rendering: set[str]) -> Shot:
    """Take shot `index` out of the film, leaving its take folders for undo (History.prune
    removes them once no step names the shot). Director.delete_shot removes them at once."""
    shots = store.project.shots
    if not 0 <= index < len(shots):
        raise ProjectError(f"there is no shot {index + 1}; the film has {len(shots)} shots.")
    if shots[index].id in rendering:
        raise ProjectError("this shot is rendering; cancel first.")
    shot = shots.pop(index)
    store.save()
    return shot


def _is_step(step: Any) -> bool:
    return (isinstance(step, dict) and isinstance(step.get("label"), str) and isinstance(step.get("shots"), list)
            and all(isinstance(shot, dict) for shot in step["shots"]))
