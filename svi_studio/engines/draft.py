"""The draft engine: camera-move drafts of the reference image, on the CPU, in well under a second.

Each shot becomes the reference seen through a moving camera: the prompt's camera
direction (camera.py) is animated as an eased crop of the reference, with the shot's
prompt burnt in as a caption and a "DRAFT" tag, so a user without a GPU can block out
shots, timing and camera direction and export, then render the same project with the
real model. It never pretends to be SVI: `is_draft` is True, the label says "Draft",
and every clip's info carries "draft": True.

The motion state is the camera pose and velocity at the clip's last frame; the next
clip starts at that pose and blends the velocity into its own move, so a cut between
two draft clips is continuous. Frame 0 of a continuing clip re-creates the previous
clip's last frame and is dropped by the stitch rule, as SVI drops its motion frames.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..motion import CAMERA, MotionState
from ..settings import ClipSettings, validate_seed
from ..stitching import StitchRule
from .request import ANCHOR_IMAGE, END_IMAGE, POSE_VIDEO, ClipRequest
from .base import Anchor, Cancelled, CancelToken, Clip, Engine, EngineError, StepCallback, resize_to_fill
from .camera import CameraPlan, TakeVariation, clamp_pose, crop_box, parse_camera, plan_camera
from .live_preview import LivePreviewer

#: the anchor keeps the reference at up to this many times the clip size, so crops of a
#: push-in stay sharp; more would alias (bilinear crops do not low-pass) and cost time.
SOURCE_SCALE = 1.25
#: frames rendered between progress callbacks and cancel checks.
CHUNK_FRAMES = 8
UNDRAWABLE_CATEGORIES = {"So", "Sk", "Cs", "Co", "Cn", "Cc", "Cf"}  # pictographs, private use, controls
POSE_THRESHOLD = 32  # a pose video pixel brighter than this is part of the skeleton, darker is background
CAPTION_BOX_ALPHA = 150  # 0..255 opacity of the dark box behind caption and tag
VELOCITY_UNITS = "per frame: d ln(zoom), d center_x, d center_y"
POSE_UNITS = "zoom, center_x, center_y (normalised image coordinates)"


class DraftEngine(Engine):
    """CPU engine: each clip is the reference under the prompt's camera move (not diffusion).

    caption: burn the shot's prompt in at the bottom of every frame (the exporter may
        turn it off). tag: a small "DRAFT" tag in the top-left corner. Both are plain
        attributes and may be changed between clips.
    """

    name = "draft"
    label = "Draft (camera moves of the reference, not diffusion)"
    is_draft = True
    preset_id = "draft"
    max_area = 480 * 832

    def __init__(self, caption: bool = True, tag: bool = True):
        self.caption = caption
        self.tag = tag

    # -- interface ------------------------------------------------------------------------

    def default_settings(self) -> ClipSettings:
        return ClipSettings(width=832, height=480, num_frames=81, fps=16, steps=1, guidance=1.0)

    def stitch_rule(self, settings: ClipSettings) -> StitchRule:
        return StitchRule(drop_head=1)

    def encode_anchor(self, image: Image.Image, settings: ClipSettings) -> Anchor:
        """The reference filled to the clip size, plus a sharper copy for the crops.

        tensors["source"]: (Hs, Ws, 3) uint8, the reference centre-cropped to the clip's
            aspect at up to SOURCE_SCALE times the clip size (never smaller than the clip).
        """
        width, height = settings.width, settings.height
        fitted = resize_to_fill(image, width, height)
        scale = source_scale(image, width, height)
        source = fitted if scale == 1.0 else resize_to_fill(image, round(width * scale), round(height * scale))
        return Anchor(image=fitted, width=width, height=height,
                      tensors={"source": torch.from_numpy(np.array(source, dtype=np.uint8))})

    accepts = frozenset({ANCHOR_IMAGE, END_IMAGE, POSE_VIDEO})

    def used_settings(self, settings: ClipSettings, conditions: frozenset[str] = frozenset()) -> frozenset[str]:
        """Only the frame size, count and rate: there is no sampler, guidance or LoRA."""
        return frozenset({"width", "height", "num_frames", "fps"})

    def picture_rows(self, height: int, width: int) -> slice:
        """The rows above the caption band: each shot burns in its own prompt, so with the
        caption on every cut would otherwise score as a visible jump that no re-roll can fix."""
        if not self.caption:
            return slice(0, height)
        return slice(0, max(1, caption_band_top(width, height)))

    def generate_clip(self, request: ClipRequest, on_step: StepCallback | None = None,
                      cancel: CancelToken | None = None) -> Clip:
        """Render the clip: frames (T, H, W, 3) uint8, T = settings.num_frames.

        on_step(chunk, chunks) after every CHUNK_FRAMES frames; cancel is checked before
        each chunk. The negative prompt is ignored (there is nothing to steer away from).
        A shot's own anchor image arrives as `request.anchor`: the camera carries on from
        the previous clip's pose, over the new picture (a cut to it). An end image is
        dissolved in over the last second, so the last frame is the end image. A pose
        video's skeleton is drawn over the frames, so a dance shot can be blocked out.
        """
        anchor, settings, prompt = request.anchor, request.settings, request.prompt
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if (anchor.width, anchor.height) != (settings.width, settings.height):
            raise EngineError("the anchor was encoded at another resolution; encode the reference again.")
        plan, note = self.plan_camera(prompt, request.seed, settings, request.motion_in)
        source = anchor_source(anchor)
        overlays = self.overlays(prompt, settings.width, settings.height)
        end_image, end_alpha = end_dissolve(request.condition(END_IMAGE), settings)
        pose = request.condition(POSE_VIDEO)  # (T, H, W, 3) uint8 skeletons on black, or None

        frames = np.empty((settings.num_frames, settings.height, settings.width, 3), dtype=np.uint8)
        previewer = LivePreviewer.for_callback(on_step)  # live previews: a strip of the frames so far
        chunk_starts = range(0, settings.num_frames, CHUNK_FRAMES)
        for chunk, start in enumerate(chunk_starts, start=1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            end = min(start + CHUNK_FRAMES, settings.num_frames)
            render_poses(source, plan.poses[start:end], frames[start:end])
            if end_image is not None:
                blend_towards(frames[start:end], end_image, end_alpha[start:end])
            if pose is not None:
                draw_pose(frames[start:end], pose[start:end])
            for overlay in overlays:
                overlay.apply(frames[start:end])
            if on_step is not None:
                on_step(chunk, len(chunk_starts))
            if previewer is not None:
                previewer.frames_step(chunk, len(chunk_starts), frames, end)

        motion_out = MotionState(
            CAMERA,
            {"pose": torch.from_numpy(plan.poses[-1].copy()), "velocity": torch.from_numpy(plan.end_velocity.copy())},
            {"engine": self.name, "fps": str(settings.fps), "pose": POSE_UNITS, "velocity": VELOCITY_UNITS},
        )
        camera = plan.to_dict()
        if note:
            camera["note"] = note
        info = {"draft": True, "engine": self.name, "camera": camera, "caption": bool(self.caption)}
        return Clip(frames=frames, latents=None, motion_out=motion_out, info=info)

    # -- helpers --------------------------------------------------------------------------

    def plan_camera(self, prompt: str, seed: int, settings: ClipSettings,
                    motion_in: MotionState | None = None) -> tuple[CameraPlan, str]:
        """The clip's camera (poses (T, 3) per frame) and a note when motion_in was not used."""
        move = parse_camera(prompt)
        variation = TakeVariation.from_seed(validate_seed(seed), move)
        pose, velocity, note = incoming_camera(motion_in, settings.fps)
        plan = plan_camera(move, variation, settings.num_frames, settings.fps, pose, velocity)
        return plan, note

    def overlays(self, prompt: str, width: int, height: int) -> list["TextOverlay"]:
        """The caption (if on and the prompt is not empty) and the DRAFT tag (if on)."""
        found = []
        if self.caption:
            caption = caption_overlay(prompt, width, height)
            if caption is not None:
                found.append(caption)
        if self.tag:
            found.append(tag_overlay(width, height))
        return found


# -- motion state ----------------------------------------------------------------------------


def incoming_camera(motion_in: MotionState | None, fps: float) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(pose (3,), velocity (3,) per frame at `fps`, note) from a draft motion state.

    A motion state of another kind (a wan clip before this one) cannot say where the
    camera was: the clip then starts fresh, and the note says so.
    """
    if motion_in is None:
        return None, None, ""
    if motion_in.kind != CAMERA:
        return None, None, f"started fresh: the clip before left a {motion_in.kind!r} motion state, not a camera pose"
    pose = motion_in.tensors["pose"].detach().to("cpu", torch.float64).numpy().reshape(3)
    velocity = motion_in.tensors["velocity"].detach().to("cpu", torch.float64).numpy().reshape(3)
    if not (np.isfinite(pose).all() and np.isfinite(velocity).all()):
        raise EngineError("the incoming camera motion state holds NaN or infinity; re-render the shot before this one.")
    fps_in = float(motion_in.meta.get("fps", fps))
    return clamp_pose(pose), velocity * (fps_in / fps), ""


# -- rendering -------------------------------------------------------------------------------


def source_scale(image: Image.Image, width: int, height: int) -> float:
    """How many times the clip size the anchor's sharp copy is: as much of SOURCE_SCALE as
    the reference has pixels for, and at least 1."""
    fill_scale = max(width / image.width, height / image.height)  # the reference's scale when filled to the clip
    return min(SOURCE_SCALE, max(1.0, 1.0 / fill_scale))


def anchor_source(anchor: Anchor) -> Image.Image:
    """The image the crops are taken from: the anchor's sharp copy, else its fitted image."""
    source = anchor.tensors.get("source")
    if source is None:
        return anchor.image.convert("RGB")
    return Image.fromarray(source.to(torch.uint8).numpy())


def render_poses(source: Image.Image, poses: np.ndarray, out: np.ndarray) -> None:
    """Fill out (N, H, W, 3) uint8 with the crops of `source` at poses (N, 3).

    Each crop is PIL's bilinear resize of a sub-pixel box that lies inside the source
    (PIL refuses boxes outside it), so there are no borders and motion is smooth.
    """
    height, width = out.shape[1:3]
    previous_box = None
    for index, pose in enumerate(poses):
        box = crop_box(pose, source.width, source.height)
        if box == previous_box:  # a still camera: reuse the frame
            out[index] = out[index - 1]
            continue
        out[index] = np.asarray(source.resize((width, height), Image.Resampling.BILINEAR, box=box))
        previous_box = box


# -- end frame -------------------------------------------------------------------------------


def end_dissolve(image: Image.Image | None, settings: ClipSettings) -> tuple[np.ndarray | None, np.ndarray]:
    """(the end image filled to the clip size (H, W, 3) uint8, alpha (T,) per frame): alpha
    rises linearly over the last second (at most T - 1 frames) and is 1 on the last frame."""
    alpha = np.zeros(settings.num_frames, dtype=np.float32)
    if image is None:
        return None, alpha
    count = max(1, min(round(settings.fps), settings.num_frames - 1))
    alpha[-count:] = np.arange(1, count + 1, dtype=np.float32) / count
    return np.asarray(resize_to_fill(image, settings.width, settings.height), dtype=np.uint8), alpha


def blend_towards(frames: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> None:
    """frames (N, H, W, 3) uint8 ← (1 - alpha) · frames + alpha · target, in place, per frame."""
    for index in np.flatnonzero(alpha):
        weight = float(alpha[index])
        mixed = frames[index].astype(np.float32) * (1.0 - weight) + target.astype(np.float32) * weight
        frames[index] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def draw_pose(frames: np.ndarray, pose: np.ndarray) -> None:
    """Draw the skeleton pixels of pose (N, H, W, 3) uint8 (lines on black) over frames, in place."""
    lines = pose.max(axis=-1) > POSE_THRESHOLD
    frames[lines] = pose[lines]


# -- caption and tag -------------------------------------------------------------------------


@dataclass
class TextOverlay:
    """A pre-drawn RGBA patch, alpha-blended onto frames with integer numpy maths.

    top, left: where the patch sits in the frame.
    colour_times_alpha: (h, w, 3) uint16, the patch colour times its alpha (0..255).
    inverse_alpha: (h, w, 1) uint16, 255 - alpha.
    """

    top: int
    left: int
    colour_times_alpha: np.ndarray
    inverse_alpha: np.ndarray

    @classmethod
    def from_rgba(cls, patch: Image.Image, top: int, left: int) -> "TextOverlay":
        rgba = np.asarray(patch.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:]
        return cls(top, left, rgba[..., :3] * alpha, 255 - alpha)

    def apply(self, frames: np.ndarray) -> None:
        """Blend onto frames (N, H, W, 3) uint8 in place."""
        height, width = self.inverse_alpha.shape[:2]
        region = frames[:, self.top:self.top + height, self.left:self.left + width]
        blended = (region.astype(np.uint16) * self.inverse_alpha + self.colour_times_alpha + 127) // 255
        region[...] = blended.astype(np.uint8)


def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` px (Pillow >= 10.1), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _printable(text: str, font) -> str:
    """One line of text the font can draw: whitespace collapsed, emoji and other pictographs
    (which the bundled font lacks) dropped; latin-1 only for the bitmap font."""
    text = " ".join(str(text).split())  # newlines and tabs become spaces first
    text = "".join(char for char in text if unicodedata.category(char) not in UNDRAWABLE_CATEGORIES)
    text = " ".join(text.split())
    if not isinstance(font, ImageFont.FreeTypeFont):
        text = text.encode("latin-1", "replace").decode("latin-1")
    return text


def _fit(text: str, font, max_width: float) -> str:
    """`text`, cut with "..." so it is at most max_width pixels long."""
    if font.getlength(text) <= max_width:
        return text
    low, high = 0, len(text)  # longest prefix that fits with the ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + "...") <= max_width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "..."


def _text_patch(text: str, font, padding: int) -> Image.Image:
    """Text in white on a rounded, half-transparent dark box, as an RGBA image."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGBA", (1, 1))).textbbox((0, 0), text, font=font)
    patch = Image.new("RGBA", (right - left + 2 * padding, bottom - top + 2 * padding), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    draw.rounded_rectangle((0, 0, patch.width - 1, patch.height - 1), radius=padding,
                           fill=(0, 0, 0, CAPTION_BOX_ALPHA))
    draw.text((padding - left, padding - top), text, font=font, fill=(255, 255, 255, 255))
    return patch


def caption_overlay(prompt: str, width: int, height: int) -> TextOverlay | None:
    """The prompt as one line at the bottom centre, cut to fit; None for an empty prompt."""
    font_size = max(8, round(min(height / 28, width / 20)))
    font = load_font(font_size)
    padding = max(2, font_size // 3)
    text = _printable(prompt, font)
    if not text:
        return None
    text = _fit(text, font, width - 4 * padding)
    patch = _text_patch(text, font, padding)
    patch = patch.crop((0, 0, min(patch.width, width), min(patch.height, height)))
    top = height - patch.height - padding
    return TextOverlay.from_rgba(patch, max(0, top), max(0, (width - patch.width) // 2))


def caption_band_top(width: int, height: int) -> int:
    """The highest row any caption's box can start at in a width × height frame (a caption's
    box is as tall as its text's bounding box: capitals with accents and descenders are the tallest)."""
    return caption_overlay("ÁÇgjy|", width, height).top


def tag_overlay(width: int, height: int) -> TextOverlay:
    """A small "DRAFT" tag in the top-left corner."""
    font_size = max(7, round(min(height / 40, width / 24)))
    font = load_font(font_size)
    padding = max(2, font_size // 4)
    patch = _text_patch("DRAFT", font, padding)
    patch = patch.crop((0, 0, min(patch.width, width - padding), min(patch.height, height - padding)))
    return TextOverlay.from_rgba(patch, padding, padding)
