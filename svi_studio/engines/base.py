"""The engine interface every engine implements (wan, tiny, draft).

An engine turns a `ClipRequest` (anchor, incoming motion state, prompt, seed, settings,
per-shot conditions) into one clip. It encodes the reference once into an `Anchor`, and
hands each clip's outgoing `MotionState` to the next clip. Director, project store, UI
and export only ever talk to this interface.

Each engine says what it uses: `accepts` (the condition names it honours) and
`used_settings(settings)` (the ClipSettings fields that change its output). A take's
recipe covers exactly those, so changing something an engine ignores never makes a
take stale, and a condition it cannot honour is refused before anything renders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from PIL import Image

from ..motion import MotionState
from ..settings import CONDITION_SETTINGS, ClipSettings
from ..stitching import StitchRule
from ..errors import UserError
from .request import ClipRequest

# on_step(step, total_steps): called after every denoising step (1-based step).
StepCallback = Callable[[int, int], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """Raised inside generate_clip when the cancel token is set between steps."""


class EngineError(UserError, RuntimeError):
    """An engine failure the user can act on (the message says how)."""


class OutOfMemory(EngineError):
    """The accelerator ran out of memory while rendering a clip."""


@dataclass
class Anchor:
    """The reference image, encoded once per project and resolution.

    image: the reference resized and centre-cropped to (width, height), RGB.
    tensors: engine-specific; the wan engine stores "anchor_latent", the
        normalised VAE latent of the image, shape (1, 16, 1, height/8, width/8).
    """

    image: Image.Image
    width: int
    height: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Clip:
    """One generated clip.

    frames: uint8 array (T, H, W, 3), T = settings.num_frames.
    latents: the clip's denoised, normalised latents (1, 16, 1 + (T-1)/4, H/8, W/8),
        or None for engines without latents (draft).
    motion_out: what the next clip consumes.
    info: JSON-able engine facts worth storing with the take (e.g. the draft's camera move).
    """

    frames: np.ndarray
    latents: torch.Tensor | None
    motion_out: MotionState
    info: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """Base class of all engines. Subclasses set the class attributes below."""

    #: short id used in presets, take metadata and the CLI ("wan", "tiny", "draft").
    name: str = "engine"
    #: a label shown to the user wherever a clip appears.
    label: str = "engine"
    #: True for engines whose output is not diffusion (the draft engine).
    is_draft: bool = False
    #: the model preset id this engine was built from (stored with every take).
    preset_id: str = ""
    #: largest output area in pixels; the default resolution fits the reference into it.
    max_area: int = 480 * 832

    @abstractmethod
    def default_settings(self) -> ClipSettings:
        """Sampler and video settings of this engine's preset."""

    @abstractmethod
    def stitch_rule(self, settings: ClipSettings) -> StitchRule:
        """Which frames of each clip the film keeps (see stitching.py)."""

    @abstractmethod
    def encode_anchor(self, image: Image.Image, settings: ClipSettings) -> Anchor:
        """Encode the reference image once, at settings.width × settings.height."""

    #: the per-shot conditions (request.CONDITION_ROLES) this engine honours.
    accepts: frozenset[str] = frozenset()

    def used_settings(self, settings: ClipSettings, conditions: frozenset[str] = frozenset()) -> frozenset[str]:
        """The ClipSettings fields that change this engine's clips for a shot with these
        conditions: all of them, except a condition's own settings when the shot lacks it."""
        return settings_for_conditions(settings, conditions)

    @abstractmethod
    def generate_clip(self, request: ClipRequest, on_step: StepCallback | None = None,
                      cancel: CancelToken | None = None) -> Clip:
        """Render one clip. request.motion_in is None for the first clip of a film.

        Deterministic: equal requests on the same device give identical frames.
        Calls on_step after every step; raises Cancelled if cancel.is_set() between steps.
        """

    def picture_rows(self, height: int, width: int) -> slice:
        """The rows of a height × width frame that show the picture: what a seam score compares.
        All of them, unless the engine draws something that changes from shot to shot on top
        (the draft engine's caption)."""
        return slice(0, height)

    def describe(self) -> dict[str, Any]:
        """What to store with a take about the engine that made it."""
        return {"engine": self.name, "preset": self.preset_id, "label": self.label, "is_draft": self.is_draft}


def settings_for_conditions(settings: ClipSettings, conditions: frozenset[str]) -> frozenset[str]:
    """Every ClipSettings field, less those that belong to a condition not in `conditions`."""
    return frozenset(name for name in settings.to_dict() if CONDITION_SETTINGS.get(name) in (None, *conditions))


def resize_to_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale `image` to cover width×height and centre-crop the excess (no borders)."""
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    new_size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(new_size, Image.Resampling.LANCZOS)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))
