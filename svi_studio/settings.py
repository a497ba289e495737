"""Render settings: where every frame count, step count and guidance value comes from.

`ClipSettings` is what an engine needs to make one clip. `normalise_settings` is the
single gate that UI, CLI and Python API all pass user input through: values that
can be rounded to a valid one are rounded with a notice, values that cannot are
refused with a `SettingsError` that says what was wrong and what to do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from .errors import UserError

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed accepts 0 .. 2**64 - 1

# Wan's default negative prompt (the one the Wan authors ship).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


class SettingsError(UserError, ValueError):
    """A setting that cannot be used; the message says what to do instead."""


@dataclass(frozen=True)
class ClipSettings:
    """Everything an engine needs to render one clip, besides prompt, seed and motion.

    width, height: output pixels, multiples of 16.
    num_frames: frames per clip, 4k+1 (81 = 5 s at 16 fps).
    num_motion_latents: m, latent frames of the previous clip fed to the next (SVI Pro),
        each latent frame covering 4 pixel frames.
    guidance_2: guidance of the low-noise expert (Wan2.2); None means "same as guidance".
    boundary_ratio: expert switch point as a fraction of 1000 train timesteps (Wan2.2).
    lora_weights: (adapter name, weight) pairs applied before the clip is rendered.
    end_frame_mask: how SVI 2.0 Pro marks a shot's end frame in the condition mask:
        "all" (1 on all 4 mask channels, as the community first/last-frame node does) or
        "last" ([0, 0, 0, 1], as Wan2GP does). Used only by shots with an end frame.
    """

    width: int = 832
    height: int = 480
    num_frames: int = 81
    fps: int = 16
    steps: int = 50
    guidance: float = 5.0
    guidance_2: float | None = None
    flow_shift: float = 5.0
    boundary_ratio: float = 0.875
    num_motion_latents: int = 1
    lora_weights: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    end_frame_mask: str = "all"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lora_weights"] = {name: weight for name, weight in self.lora_weights}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipSettings":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("lora_weights"), dict):
            kwargs["lora_weights"] = tuple(sorted((str(k), float(v)) for k, v in kwargs["lora_weights"].items()))
        elif kwargs.get("lora_weights") is not None:
            kwargs["lora_weights"] = tuple((str(k), float(v)) for k, v in kwargs["lora_weights"])
        return cls(**kwargs)

    def merged(self, overrides: dict[str, Any] | None) -> "ClipSettings":
        """A copy with `overrides` applied (a shot's own steps, guidance or LoRA weights)."""
        if not overrides:
            return self
        data = self.to_dict()
        for key, value in overrides.items():
            if key == "lora_weights" and isinstance(value, dict):
                data["lora_weights"] = {**data["lora_weights"], **value}
            else:
                data[key] = value
        return ClipSettings.from_dict(data)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


END_FRAME_MASKS = ("all", "last")
#: settings that matter only to a shot with this condition (a take's recipe ignores them otherwise).
CONDITION_SETTINGS = {"end_frame_mask": "end_image"}

LIMITS = {
    "width": (16, 2048),
    "height": (16, 2048),
    "num_frames": (5, 241),
    "fps": (1, 60),
    "steps": (1, 200),
    "guidance": (0.0, 20.0),
    "guidance_2": (0.0, 20.0),
    "flow_shift": (0.0, 20.0),
    "boundary_ratio": (0.0, 1.0),
}


def _number(name: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool):
        raise SettingsError(f"{name} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingsError(f"{name} must be a number, got {str(value)[:40]!r}.") from None
    if not math.isfinite(number):
        raise SettingsError(f"{name} must be a finite number, got {value!r}.")
    return round_half_up(number) if kind is int else number


def round_half_up(value: float) -> int:
    """Nearest integer, halves rounded up. Python's round() sends halves to the even neighbour,
    which made 83 frames round down to 81 but 87 up to 89, and width 40 down to 32 but 56 up to 64."""
    return math.floor(value + 0.5)


def round_to_multiple(value: int, multiple: int) -> int:
    return max(multiple, round_half_up(value / multiple) * multiple)


def normalise_settings(raw: ClipSettings | dict[str, Any]) -> tuple[ClipSettings, list[str]]:
    """Validate user settings. Returns (settings, notices); raises SettingsError.

    Rounded with a notice: width/height to a multiple of 16, num_frames to 4k+1,
    fractional step counts, motion latents into {1, 2, 3}.
    Refused: non-numbers, steps < 1, values outside LIMITS, and guidance <= 1 with guidance_2 > 1
    (diffusers' Wan pipeline would drop classifier-free guidance for the low-noise expert too).
    """
    data = raw.to_dict() if isinstance(raw, ClipSettings) else dict(raw)
    defaults = ClipSettings()
    notices: list[str] = []
    out: dict[str, Any] = {}
    for f in fields(ClipSettings):
        name = f.name
        value = data.get(name, getattr(defaults, name))
        if name == "lora_weights":
            out[name] = _lora_weights(value)
            continue
        if name == "end_frame_mask":
            if value not in END_FRAME_MASKS:
                raise SettingsError(f"end_frame_mask must be one of {', '.join(END_FRAME_MASKS)}, got {str(value)[:40]!r}.")
            out[name] = value
            continue
        if name == "guidance_2" and value in (None, ""):
            out[name] = None
            continue
        kind = int if name in ("width", "height", "num_frames", "fps", "steps", "num_motion_latents") else float
        number = _number(name, value, kind)
        if kind is int and float(value) != number:
            notices.append(f"{name} {value} rounded to {number}.")
        if name in ("width", "height"):
            rounded = round_to_multiple(number, 16)
            if rounded != number:
                notices.append(f"{name} {number} is not a multiple of 16; using {rounded}.")
            number = rounded
        if name == "num_frames":
            rounded = max(5, 4 * round_half_up((number - 1) / 4) + 1)
            if rounded != number:
                notices.append(f"frames per clip must be 4k+1; {number} rounded to {rounded}.")
            number = rounded
        if name == "num_motion_latents":
            clamped = min(3, max(1, number))
            if clamped != number:
                notices.append(f"motion latents must be 1, 2 or 3; {number} changed to {clamped}.")
            number = clamped
        if name == "steps" and number < 1:
            raise SettingsError(f"steps must be at least 1, got {value!r}. Use 4 with a speed LoRA, 30-50 without.")
        low, high = LIMITS.get(name, (-math.inf, math.inf))
        if not low <= number <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {value!r}.")
        out[name] = number
    if out["guidance_2"] is not None and out["guidance"] <= 1.0 < out["guidance_2"]:
        # diffusers' Wan pipeline runs classifier-free guidance only when guidance > 1, for both experts.
        raise SettingsError(
            f"guidance {out['guidance']:g} turns classifier-free guidance off for both experts, so the low-noise "
            f"expert's guidance_2 {out['guidance_2']:g} would be silently ignored. Set guidance above 1 as well "
            "(e.g. 1.5 with a Lightning LoRA), or set guidance_2 to 1 or leave it empty (same as guidance)."
        )
    return ClipSettings(**out), notices


def _lora_weights(value: Any) -> tuple[tuple[str, float], ...]:
    if value is None or (isinstance(value, (str, tuple, list, dict)) and not value):
        return ()
    shape_error = SettingsError("LoRA weights must map LoRA names to numbers, e.g. {\"svi_high\": 1.0}.")
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = list(value)
    else:
        raise shape_error
    result = []
    for name, weight in pairs:
        number = _number(f"LoRA weight of {name}", weight, float)
        if not -4.0 <= number <= 4.0:
            raise SettingsError(f"LoRA weight of {name} must be between -4 and 4, got {weight!r}.")
        result.append((str(name), number))
    return tuple(sorted(result))


def validate_seed(seed: Any) -> int:
    """A seed as an int in 0 .. 2**64-1, or SettingsError."""
    if isinstance(seed, bool):
        raise SettingsError(f"seed must be a whole number, got {seed!r}.")
    try:
        number = int(str(seed).strip()) if not isinstance(seed, int) else seed
    except ValueError:
        raise SettingsError(f"seed must be a whole number between 0 and {SEED_MAX}, got {seed!r}.") from None
    if not 0 <= number <= SEED_MAX:
        raise SettingsError(f"seed must be between 0 and {SEED_MAX}, got {seed}.")
    return number


def fit_resolution(image_width: int, image_height: int, max_area: int, multiple: int = 16) -> tuple[int, int]:
    """(width, height) with the image's aspect ratio, area <= max_area, multiples of `multiple`.

    With the 480*832 budget an 832x480 reference gives 832x480 and a 16:9 one 832x464
    (the rounding diffusers' Wan I2V example uses); a portrait one the transpose.
    Aspect ratios beyond 4:1 are clamped to 4:1 (the frame is then centre-cropped).
    """
    if image_width <= 0 or image_height <= 0:
        raise SettingsError("the reference image has no pixels.")
    aspect = min(4.0, max(0.25, image_width / image_height))
    height = math.sqrt(max_area / aspect)
    width = height * aspect
    # Floor to the multiple, forgiving float error: sqrt() returns 95.99999999999999 for an exact 96,
    # which used to cost a whole step of 16 (a 144x112 image with a 144*112 budget came out 144x96).
    width = max(multiple, math.floor(width / multiple + 1e-6) * multiple)
    height = max(multiple, math.floor(height / multiple + 1e-6) * multiple)
    while width * height > max_area and max(width, height) > multiple:  # never over budget
        if width >= height:
            width -= multiple
        else:
            height -= multiple
    return width, height


def with_resolution(settings: ClipSettings, width: int, height: int) -> ClipSettings:
    return replace(settings, width=width, height=height)
