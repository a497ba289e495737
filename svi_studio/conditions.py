"""A shot's conditions: which files it has, and how they are checked, stored, fingerprinted and opened.

A condition is a file a shot is made from besides its prompt and seed (engines/request.py
names them): its own anchor image, an end frame, a pose video. They live in the project as
`Shot.media[role]` (and, for one film-long pose video, `Project.media["pose_video"]`), as
project-relative paths of content-addressed files under media/:

    set / set_film   check a file like an upload (pictures through reference.load_reference,
                     videos through media.check_video), store it, save the project
    check            refuse a condition the engine cannot honour, with a message
    fingerprints     what of them goes into a take's recipe (only what the engine honours)
    load             open them for one render as ClipRequest.conditions (untrusted again:
                     the files may come from an imported bundle)

Adding a condition: name it in engines/request.py, honour it in an engine (`accepts`), and,
if it is not a picture, give it a loader here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engines.base import EngineError
from .engines.request import ANCHOR_IMAGE, CONDITION_LABELS, CONDITION_ROLES, POSE_VIDEO
from .media import VIDEO_SUFFIXES, check_video, load_pose_video
from .project.model import ProjectError, Shot
from .project.store import image_fingerprint
from .reference import load_reference
from .settings import ClipSettings
from .timeline import clip_origins

if TYPE_CHECKING:
    from .director import Director


class ShotConditions:
    """The conditions of one Director's shots."""

    def __init__(self, director: "Director"):
        self.director = director

    @property
    def store(self):
        return self.director.store

    # -- reading ------------------------------------------------------------------------------

    def media(self, shot: Shot) -> dict[str, str]:
        """The shot's conditions: its own, and the film's pose video where it has none of its own."""
        return {**{k: v for k, v in self.director.project.media.items() if k == POSE_VIDEO}, **shot.media}

    def film_pose_frames(self, index: int) -> np.ndarray | None:
        """The film frames (num_frames,) of the film's pose video that shot `index` follows, or None
        when the film has none. Consecutive shots overlap where a clip re-creates frames of the
        clip before it (the motion frames), so their poses continue where the last shot's ended."""
        director = self.director
        if POSE_VIDEO not in director.project.media or director.engine is None:
            return None
        settings = director.shot_settings(director.project.shots[index])
        origins = clip_origins(len(director.project.shots), settings.num_frames, director.engine.stitch_rule(settings))
        return origins[index] + np.arange(settings.num_frames)

    def fingerprints(self, shot: Shot) -> dict[str, str]:
        """role → file fingerprint of the shot's conditions besides the anchor, those the
        engine honours (all of them when no engine is loaded)."""
        director = self.director
        media = self.media(shot)
        accepts = director.engine.accepts if director.engine is not None else frozenset(media)
        found = {}
        for role, relative in sorted(media.items()):
            if role == ANCHOR_IMAGE or role not in accepts:
                continue
            path = self.store.safe_path(relative)
            found[role] = image_fingerprint(path) if path.is_file() else "missing"
        if POSE_VIDEO in found and POSE_VIDEO not in shot.media:  # its part of the film's pose video
            found[POSE_VIDEO] += f"@{director.project.shots.index(shot)}/{len(director.project.shots)}"
        return found

    def check(self, index: int, role: str) -> None:
        """EngineError when the loaded engine cannot honour condition `role` on shot `index`."""
        engine = self.director.engine
        if engine is not None and role not in engine.accepts:
            label = CONDITION_LABELS.get(role, role)
            raise EngineError(f"shot {index + 1} has a{'n' if label[0] in 'aeiou' else ''} {label}, which the "
                              f"'{engine.preset_id}' engine cannot use. Clear it from the shot, or render "
                              "with an engine that takes it.")

    # -- editing ------------------------------------------------------------------------------

    def set(self, index: int, role: str, source: Any) -> list[str]:
        """Set (source: a file path, bytes or a picture) or clear (source None) one of shot
        `index`'s conditions. The file is checked like an upload, stored under media/ by
        content, and the shot (and the shots after it) become stale. Refused when the loaded
        engine cannot honour that condition."""
        shot = self.director.shot(index)
        if role not in CONDITION_ROLES:
            raise ProjectError(f"a shot has no condition {role!r:.40}; the conditions are {', '.join(CONDITION_ROLES)}.")
        if source is None:
            shot.media.pop(role, None)
            self.store.save()
            return []
        self.check(index, role)
        notices = self.store_file(index, role, source)
        self.store.save()
        return notices

    def set_film(self, role: str, source: Any) -> list[str]:
        """Set (a file) or clear (None) a film-wide condition: "pose_video", one pose video for the
        whole film, cut into shots by their frames in the film (a shot's own pose video wins)."""
        director = self.director
        if role != POSE_VIDEO:
            raise ProjectError(f"the film-wide condition is pose_video, not {role!r:.40}; set {role!r:.40} per shot.")
        if source is None:
            director.project.media.pop(role, None)
        else:
            if director.engine is not None and role not in director.engine.accepts:
                raise EngineError(f"the '{director.engine.preset_id}' engine cannot use a pose video; render with "
                                  "wan2.1-svi-dance (or draft, to block the dance out).")
            director.project.media[role] = self._store_video(Path(source), "the film's pose video")
        self.store.save()
        return []

    def store_file(self, index: int, role: str, source: Any) -> list[str]:
        """Check and store a condition file of shot `index` (not saved yet); return notices."""
        shot = self.director.shot(index)
        what = f"shot {index + 1}'s {CONDITION_LABELS[role]}"
        if role == POSE_VIDEO:
            if not isinstance(source, (str, Path)):
                raise ProjectError(f"{what} must be a video file.")
            shot.media[role] = self._store_video(Path(source), what)
            return []
        picture, notices = load_reference(source, name=what)
        shot.media[role] = self.store.add_media_image(picture)
        if role == ANCHOR_IMAGE:
            self.director.renderer.forget_anchors()
        return notices

    def _store_video(self, path: Path, what: str) -> str:
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ProjectError(f"{what} must be a video ({', '.join(VIDEO_SUFFIXES)}), not {path.suffix or 'a file without a suffix'}.")
        check_video(path, what)
        return self.store.add_media(path.read_bytes(), path.suffix.lower())

    # -- rendering ----------------------------------------------------------------------------

    def load(self, index: int, shot: Shot, settings: ClipSettings) -> dict[str, Any]:
        """The shot's conditions as ClipRequest.conditions (the anchor image is the request's
        anchor itself). Every stored file is opened as untrusted as an upload."""
        found: dict[str, Any] = {}
        film_pose = self.film_pose_frames(index)
        if film_pose is not None and POSE_VIDEO not in shot.media:  # this shot's part of the film's pose video
            path = self.store.safe_path(self.director.project.media[POSE_VIDEO])
            found[POSE_VIDEO] = load_pose_video(path, settings.num_frames, settings.width, settings.height,
                                                name="the film's pose video", seconds=film_pose / settings.fps)
        for role, relative in shot.media.items():
            if role == ANCHOR_IMAGE:
                continue
            path = self.store.safe_path(relative)
            what = f"shot {index + 1}'s {CONDITION_LABELS.get(role, role)}"
            if role == POSE_VIDEO:
                found[role] = load_pose_video(path, settings.num_frames, settings.width, settings.height, name=what)
            else:
                found[role], _ = load_reference(path, name=what)
        return found
