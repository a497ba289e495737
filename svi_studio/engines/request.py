"""`ClipRequest`: everything one clip is made from, as one value.

Engines take a `ClipRequest` instead of a row of positional arguments, so a new per-shot
input is one more entry of `conditions`, not a new parameter in every engine, caller and
test. Each engine declares which condition names it `accepts` (engines/base.py); the
Director refuses a shot whose conditions the engine cannot honour, and only what an
engine uses goes into a take's recipe (project/status.py).

Conditions (all optional; see DESIGN.md "Per-shot conditions"):
    "anchor_image": PIL.Image, the shot's own anchor (already encoded into `anchor`);
                    its presence tells pixel modes to show it to CLIP.
    "end_image":    PIL.Image, the frame the shot must arrive at.
    "pose_video":   uint8 array (T, H, W, 3), a rendered pose skeleton per frame,
                    T = settings.num_frames, at settings.width × settings.height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..motion import MotionState
from ..settings import ClipSettings

if TYPE_CHECKING:
    from .base import Anchor

ANCHOR_IMAGE = "anchor_image"
END_IMAGE = "end_image"
POSE_VIDEO = "pose_video"
#: every per-shot condition the project can store (as Shot.media[role]); engines accept a subset.
CONDITION_ROLES = (ANCHOR_IMAGE, END_IMAGE, POSE_VIDEO)
#: what each condition is, for messages.
CONDITION_LABELS = {ANCHOR_IMAGE: "anchor image", END_IMAGE: "end frame", POSE_VIDEO: "pose video"}


@dataclass(frozen=True)
class ClipRequest:
    """One clip to render.

    anchor: the encoded anchor (the reference, or the shot's own anchor image).
    motion_in: the previous clip's motion state; None for the first clip of a film.
    prompt / negative_prompt: the full text (shot prompt + shared style prompt).
    seed: this clip's seed. settings: the shot's settings (project + overrides).
    conditions: name → value, see the module docstring.
    """

    anchor: "Anchor"
    motion_in: MotionState | None
    prompt: str
    negative_prompt: str
    seed: int
    settings: ClipSettings
    conditions: Mapping[str, Any] = field(default_factory=dict)

    def condition(self, name: str) -> Any:
        """The value of condition `name`, or None when the shot has none."""
        return self.conditions.get(name)
