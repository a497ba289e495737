"""Camera direction for the draft engine: read it from a prompt, turn it into poses.

Two halves, both free of image work:

* `parse_camera(prompt) -> CameraMove`: which camera moves the prompt asks for
  ("slow push in and pan left" -> slow push-in + pan left), with speed modifiers,
  static / handheld wording, and a gentle push-in when no camera words are found.
* `plan_camera(move, variation, num_frames, fps, ...) -> CameraPlan`: the camera pose
  at every frame of one clip, eased in, blended from the previous clip's velocity,
  and kept inside the image.

A pose is (zoom, center_x, center_y): the crop window shows 1/zoom of the image's
width and height, centred at (center_x, center_y) in normalised image coordinates
(0..1 left to right, top to bottom). zoom 1 is the whole reference; the window stays
inside the image when zoom >= 1 and center lies in [1/(2 zoom), 1 - 1/(2 zoom)].
A velocity is the per-frame change of (ln zoom, center_x, center_y).

Direction conventions (what the viewer sees): pan/truck left moves the window left,
so the picture slides right; tilt/pedestal up moves the window up, so the picture
slides down; push-in raises zoom, pull-back lowers it. One still image has no
parallax, so a truck reads as a slightly larger sideways slide than a pan.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- the moves -------------------------------------------------------------------------------

#: move name -> (label shown to the user, unit direction of (ln zoom, center_x, center_y)).
MOVES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "push-in": ("push-in", (1.0, 0.0, 0.0)),
    "pull-back": ("pull-back", (-1.0, 0.0, 0.0)),
    "pan-left": ("pan left", (0.0, -1.0, 0.0)),
    "pan-right": ("pan right", (0.0, 1.0, 0.0)),
    "tilt-up": ("tilt up", (0.0, 0.0, -1.0)),
    "tilt-down": ("tilt down", (0.0, 0.0, 1.0)),
    "truck-left": ("truck left", (0.0, -1.0, 0.0)),
    "truck-right": ("truck right", (0.0, 1.0, 0.0)),
    "pedestal-up": ("pedestal up", (0.0, 0.0, -1.0)),
    "pedestal-down": ("pedestal down", (0.0, 0.0, 1.0)),
}

#: speed 1 rates per second: ln-zoom for push/pull (x1.35 zoom in 5 s), centre travel
#: in image widths/heights for pan/tilt, and a bit more for truck/pedestal.
ZOOM_RATE = math.log(1.35) / 5.0
PAN_RATE = 0.03
TRUCK_RATE = 0.04
RATE_OF_KIND = {"push": ZOOM_RATE, "pull": ZOOM_RATE, "pan": PAN_RATE, "tilt": PAN_RATE,
                "truck": TRUCK_RATE, "pedestal": TRUCK_RATE}

FALLBACK_SPEED = 0.6  # unknown wording -> a gentle push-in
MIN_SPEED, MAX_SPEED = 0.25, 3.0

# -- vocabulary ------------------------------------------------------------------------------

# verb stem -> {particle: move}. "pan to the left" and "zooms slowly in" work because
# up to MAX_FILLERS filler words may sit between verb and particle.
_LEFT = ("left", "leftward", "leftwards")
_RIGHT = ("right", "rightward", "rightwards")
_UP = ("up", "upward", "upwards")
_DOWN = ("down", "downward", "downwards")
_IN = ("in", "into", "forward", "forwards", "toward", "towards", "closer")
_OUT = ("out", "back", "backward", "backwards", "away")


def _particles(**groups: tuple[str, ...]) -> dict[str, str]:
    return {word: move.replace("_", "-") for move, words in groups.items() for word in words}


VERB_PARTICLES: dict[str, dict[str, str]] = {
    "push": _particles(push_in=_IN, pull_back=_OUT),
    "zoom": _particles(push_in=_IN, pull_back=_OUT),
    "dolly": _particles(push_in=_IN, pull_back=_OUT, truck_left=_LEFT, truck_right=_RIGHT),
    "track": _particles(push_in=_IN, pull_back=_OUT, truck_left=_LEFT, truck_right=_RIGHT),
    "pull": _particles(pull_back=("back", "out", "away", "backward", "backwards")),
    "pan": _particles(pan_left=_LEFT, pan_right=_RIGHT, tilt_up=_UP, tilt_down=_DOWN),
    "tilt": _particles(tilt_up=_UP, tilt_down=_DOWN),
    "truck": _particles(truck_left=_LEFT, truck_right=_RIGHT),
    "crane": _particles(pedestal_up=_UP, pedestal_down=_DOWN),
    "boom": _particles(pedestal_up=_UP, pedestal_down=_DOWN),
    "jib": _particles(pedestal_up=_UP, pedestal_down=_DOWN),
    "pedestal": _particles(pedestal_up=_UP, pedestal_down=_DOWN),
}

#: verbs that mean a move even without a particle ("a slow zoom on her face").
LONE_VERBS = {"zoom": "push-in"}

# Irregular inflections; regular ones (+s, +es, +ed, +ing, doubled consonant) are generated.
_EXTRA_FORMS = {"dolly": ("dollies", "dollied", "dollying")}


def _verb_forms(stem: str) -> set[str]:
    forms = {stem, stem + "s", stem + "es", stem + "ed", stem + "ing", *_EXTRA_FORMS.get(stem, ())}
    if re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwy]", stem):  # pan -> panning, panned
        forms |= {stem + stem[-1] + "ing", stem + stem[-1] + "ed"}
    return forms


VERB_OF_FORM = {form: stem for stem in VERB_PARTICLES for form in _verb_forms(stem)}

#: words that may sit between a verb and its particle.
FILLERS = {"the", "a", "to", "its", "camera", "very", "bit", "little", "over", "further", "slightly",
           "slowly", "gently", "quickly", "rapidly", "smoothly", "steadily", "gradually", "softly", "swiftly"}
MAX_FILLERS = 3

#: multi-word phrases (as token tuples) -> a move, or the flags "static" / "handheld".
PHRASES: dict[tuple[str, ...], str] = {
    ("close", "up"): "push-in", ("closeup",): "push-in", ("closeups",): "push-in",
    ("wide",): "pull-back", ("widen",): "pull-back", ("widens",): "pull-back", ("widening",): "pull-back",
    ("static",): "static", ("locked", "off"): "static", ("locked", "down"): "static", ("lockedoff",): "static",
    ("still", "camera"): "static", ("camera", "is", "still"): "static", ("camera", "stays", "still"): "static",
    ("camera", "remains", "still"): "static", ("camera", "holds", "still"): "static",
    ("fixed", "camera"): "static", ("stationary", "camera"): "static", ("tripod",): "static",
    ("no", "camera", "movement"): "static", ("no", "camera", "motion"): "static", ("no", "camera", "move"): "static",
    ("handheld",): "handheld", ("hand", "held"): "handheld", ("shaky",): "handheld",
    ("shakycam",): "handheld", ("shaky", "cam"): "handheld", ("wobbly",): "handheld",
}

#: speed words -> factor on the move's rate.
SPEED_WORDS = {
    "slow": 0.6, "slowly": 0.6, "gentle": 0.6, "gently": 0.6, "soft": 0.6, "softly": 0.6,
    "leisurely": 0.6, "gradual": 0.7, "gradually": 0.7, "subtle": 0.5, "subtly": 0.5,
    "slight": 0.5, "slightly": 0.5,
    "fast": 1.6, "quick": 1.6, "quickly": 1.6, "swift": 1.6, "swiftly": 1.6, "rapid": 1.8,
    "rapidly": 1.8, "sudden": 1.8, "suddenly": 1.8, "dramatic": 1.5, "dramatically": 1.5,
    "snap": 2.0, "whip": 2.2, "crash": 2.2,
}
INTENSIFIERS = {"very", "really", "extremely", "super", "ultra"}
INTENSIFIER_POWER = 1.5  # "very slow" = 0.6 ** 1.5
SPEED_REACH = 4  # a speed word modifies the nearest move at most this many words away
NEGATIONS = {"no", "not", "without", "never", "don", "doesn", "nor"}
_SLOW_MOTION_NEXT = {"motion", "mo"}  # "slow motion" is about the subject, not the camera


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveSpec:
    """One recognised camera move.

    name: a key of MOVES ("pan-left"); speed: factor on its rate (1 normal, <1 slow);
    words: the prompt words it was read from, normalised ("slowly pans to the left").
    """

    name: str
    speed: float = 1.0
    words: str = ""

    @property
    def label(self) -> str:
        return speed_label(self.speed) + MOVES[self.name][0]

    def to_dict(self) -> dict[str, Any]:
        return {"move": self.name, "speed": round(self.speed, 4), "words": self.words, "label": self.label}


@dataclass(frozen=True)
class CameraMove:
    """How a prompt was read: the moves (combined by adding their velocities) and flags.

    static: the prompt asked for a locked-off camera and names no move.
    handheld: add a stronger, faster handheld drift.
    fallback: no camera words were found; `moves` is then a gentle push-in.
    """

    moves: tuple[MoveSpec, ...] = ()
    static: bool = False
    handheld: bool = False
    fallback: bool = False

    @property
    def summary(self) -> str:
        if self.static:
            return "static (locked-off)"
        if self.fallback:
            return "gentle push-in (no camera direction found)"
        parts = [move.label for move in self.moves]
        if self.handheld:
            parts.append("handheld")
        return " + ".join(parts) if parts else "static"

    @property
    def has_translation(self) -> bool:
        return any(MOVES[m.name][1][0] == 0.0 for m in self.moves)

    @property
    def has_zoom(self) -> bool:
        return any(MOVES[m.name][1][0] != 0.0 for m in self.moves)

    def velocity_per_second(self) -> np.ndarray:
        """(3,) float64: the summed cruise rate of (ln zoom, center_x, center_y) per second."""
        velocity = np.zeros(3)
        for move in self.moves:
            kind = move.name.split("-")[0]
            velocity += np.asarray(MOVES[move.name][1]) * RATE_OF_KIND[kind] * move.speed
        return velocity

    def to_dict(self) -> dict[str, Any]:
        return {"moves": [m.to_dict() for m in self.moves], "summary": self.summary, "static": self.static,
                "handheld": self.handheld, "fallback": self.fallback}


def speed_label(speed: float) -> str:
    """The adjective a speed factor reads as ("slow ", "", "very fast ")."""
    if speed < 0.45:
        return "very slow "
    if speed < 0.85:
        return "slow "
    if speed > 1.9:
        return "very fast "
    if speed > 1.2:
        return "fast "
    return ""


def tokenize(prompt: str) -> list[str]:
    """Lower-case words of the prompt: punctuation, quotes, emoji and newlines are separators,
    hyphens split ("push-in" -> "push", "in"), apostrophes split ("don't" -> "don", "t")."""
    text = unicodedata.normalize("NFKC", str(prompt)).lower()
    return re.findall(r"[^\W\d_]+", text)


def parse_camera(prompt: str) -> CameraMove:
    """Read the camera direction of a prompt. Never raises; unknown wording -> gentle push-in."""
    tokens = tokenize(prompt)
    found: list[tuple[str, int, int]] = []  # (move or flag, first token, last token)
    index = 0
    while index < len(tokens):
        match = _match_phrase(tokens, index) or _match_verb(tokens, index)
        if match is None:
            index += 1
            continue
        what, end = match
        if not _negated(tokens, index) and not _is_start_framing(tokens, index):
            found.append((what, index, end))
        index = end + 1

    static = any(what == "static" for what, _, _ in found)
    handheld = any(what == "handheld" for what, _, _ in found)
    spans = [(what, start, end) for what, start, end in found if what in MOVES]
    speeds = _speeds(tokens, spans)

    moves: list[MoveSpec] = []
    for (name, start, end), speed in zip(spans, speeds):
        if all(m.name != name for m in moves):  # a move named twice counts once
            moves.append(MoveSpec(name, speed, " ".join(tokens[start:end + 1])))
    if moves:
        return CameraMove(moves=tuple(moves), handheld=handheld)
    if static:
        return CameraMove(static=True)
    if handheld:
        return CameraMove(handheld=True)
    return CameraMove(moves=(MoveSpec("push-in", FALLBACK_SPEED, ""),), fallback=True)


def _match_phrase(tokens: list[str], index: int) -> tuple[str, int] | None:
    for length in (3, 2, 1):
        phrase = tuple(tokens[index:index + length])
        if len(phrase) == length and phrase in PHRASES:
            return PHRASES[phrase], index + length - 1
    return None


def _match_verb(tokens: list[str], index: int) -> tuple[str, int] | None:
    stem = VERB_OF_FORM.get(tokens[index])
    if stem is None:
        return None
    particles = VERB_PARTICLES[stem]
    look = index + 1
    for _ in range(MAX_FILLERS + 1):
        if look >= len(tokens):
            break
        if tokens[look] in particles:
            return particles[tokens[look]], look
        if tokens[look] not in FILLERS:
            break
        look += 1
    if stem in LONE_VERBS:
        return LONE_VERBS[stem], index
    return None


FRAMING_WORDS = {"close", "closeup", "closeups", "wide"}
FROM_WORDS = {"from", "starting", "starts", "start", "begins", "beginning", "opening", "opens"}


def _is_start_framing(tokens: list[str], index: int) -> bool:
    """'pulling back from a close-up', 'starting wide': a framing the shot starts from, not a move."""
    return tokens[index] in FRAMING_WORDS and any(
        word in FROM_WORDS for word in tokens[max(0, index - 3):index]
    )


def _negated(tokens: list[str], index: int) -> bool:
    """'no zoom', 'does not pan', "don't tilt": a negation within two words before."""
    return any(word in NEGATIONS for word in tokens[max(0, index - 2):index])


def _speeds(tokens: list[str], spans: list[tuple[str, int, int]]) -> list[float]:
    """Speed factor of each move span: the geometric mean of the speed words nearest to it."""
    logs: list[list[float]] = [[] for _ in spans]
    for position, word in enumerate(tokens):
        factor = SPEED_WORDS.get(word)
        if factor is None or not spans:
            continue
        if word == "slow" and position + 1 < len(tokens) and tokens[position + 1] in _SLOW_MOTION_NEXT:
            continue
        if position > 0 and tokens[position - 1] in INTENSIFIERS:
            factor = factor**INTENSIFIER_POWER
        distances = [max(start - position, position - end, 0) for _, start, end in spans]
        nearest = int(np.argmin(distances))
        if distances[nearest] <= SPEED_REACH:
            logs[nearest].append(math.log(factor))
    return [min(MAX_SPEED, max(MIN_SPEED, math.exp(sum(l) / len(l)))) if l else 1.0 for l in logs]


# -- take variation --------------------------------------------------------------------------

DRIFT_AMPLITUDE = np.array([0.0008, 0.0012, 0.0012])  # (ln zoom, x, y) per sinusoid, calm camera
HANDHELD_AMPLITUDE = np.array([0.003, 0.005, 0.005])
DRIFT_HZ = (0.12, 0.5)
HANDHELD_HZ = (0.4, 1.6)


@dataclass(frozen=True)
class TakeVariation:
    """The small things a seed varies, so a re-roll is a different take.

    ease_shape: steepness a of the ease-in u^a / (u^a + (1-u)^a), a > 1.
    ramp_seconds: how long the move takes to reach cruise speed.
    speed_jitter: factor on the cruise speed.
    drift_amplitude, drift_hz, drift_phase: (3, 2) float64 — two sinusoids per axis of
        (ln zoom, center_x, center_y) making a slight handheld drift.
    """

    ease_shape: float = 2.0
    ramp_seconds: float = 1.0
    speed_jitter: float = 1.0
    drift_amplitude: np.ndarray = field(default_factory=lambda: np.zeros((3, 2)))
    drift_hz: np.ndarray = field(default_factory=lambda: np.ones((3, 2)))
    drift_phase: np.ndarray = field(default_factory=lambda: np.zeros((3, 2)))

    @classmethod
    def from_seed(cls, seed: int, move: CameraMove) -> "TakeVariation":
        rng = np.random.default_rng(int(seed))
        ease_shape = rng.uniform(1.6, 2.8)
        ramp_seconds = rng.uniform(0.6, 1.4)
        speed_jitter = rng.uniform(0.88, 1.12)
        base, (low_hz, high_hz) = (HANDHELD_AMPLITUDE, HANDHELD_HZ) if move.handheld else (DRIFT_AMPLITUDE, DRIFT_HZ)
        amplitude = base[:, None] * rng.uniform(0.6, 1.4, size=(3, 2))
        hz = rng.uniform(low_hz, high_hz, size=(3, 2))
        phase = rng.uniform(0.0, 2 * math.pi, size=(3, 2))
        if move.static:
            amplitude = np.zeros((3, 2))
        return cls(ease_shape, ramp_seconds, speed_jitter, amplitude, hz, phase)

    def drift_offset(self, seconds: np.ndarray) -> np.ndarray:
        """(T,) seconds -> (T, 3) drift offset of (ln zoom, center_x, center_y)."""
        angle = 2 * math.pi * self.drift_hz[None] * seconds[:, None, None] + self.drift_phase[None]
        return (self.drift_amplitude[None] * np.sin(angle)).sum(axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {"ease_shape": round(self.ease_shape, 4), "ramp_seconds": round(self.ramp_seconds, 4),
                "speed_jitter": round(self.speed_jitter, 4),
                "drift_amplitude": [round(float(a), 6) for a in self.drift_amplitude.sum(axis=1)]}


# -- pose maths ------------------------------------------------------------------------------

ZOOM_MAX = 3.0
BRAKE = 0.1  # per frame, a move may cover at most this fraction of the room left before an edge
BLEND_SECONDS = 0.75  # incoming velocity fades out over this long (12 frames at 16 fps)
IDENTITY_POSE = np.array([1.0, 0.5, 0.5])


def half_window(zoom: float) -> float:
    """Half the crop window's size in normalised image units."""
    return 0.5 / zoom


def clamp_pose(pose: np.ndarray) -> np.ndarray:
    """(3,) (zoom, cx, cy) -> the nearest pose whose window lies inside the image."""
    zoom = float(min(ZOOM_MAX, max(1.0, pose[0])))
    half = half_window(zoom)
    return np.array([zoom, min(1 - half, max(half, pose[1])), min(1 - half, max(half, pose[2]))])


def ease_in(u: np.ndarray, shape: float) -> np.ndarray:
    """u^a / (u^a + (1-u)^a) on [0, 1], 1 beyond: starts with zero slope for a > 1."""
    u = np.clip(u, 0.0, 1.0)
    rising = u**shape
    return rising / (rising + (1.0 - u) ** shape)


def smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


@dataclass
class CameraPlan:
    """The camera of one clip.

    poses: (T, 3) float64 (zoom, center_x, center_y) per frame; poses[0] is the incoming
        pose when the clip continues another.
    end_velocity: (3,) float64, the last frame step of (ln zoom, center_x, center_y).
    continued: the clip started from an incoming pose and velocity.
    room_zoom: a push-in was added so the requested pan/tilt/truck had room.
    limited: the image edge (or the zoom limits) held the camera back noticeably.
    """

    move: CameraMove
    variation: TakeVariation
    poses: np.ndarray
    end_velocity: np.ndarray
    continued: bool
    room_zoom: bool
    limited: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.move.to_dict(), "take": self.variation.to_dict(), "continued": self.continued,
                "room_zoom": self.room_zoom, "limited": self.limited,
                "start_pose": [float(v) for v in self.poses[0]], "end_pose": [float(v) for v in self.poses[-1]]}


def plan_camera(move: CameraMove, variation: TakeVariation, num_frames: int, fps: float,
                incoming_pose: np.ndarray | None = None, incoming_velocity: np.ndarray | None = None) -> CameraPlan:
    """Poses for `num_frames` frames. Without an incoming pose the clip starts from a pose
    that gives the move room; with one, frame 0 is exactly that pose and the incoming
    velocity (per frame) fades out while the new move eases in."""
    steps = np.arange(1, num_frames)  # step j moves frame j-1 to frame j
    ramp = ease_in(steps / max(1.0, variation.ramp_seconds * fps), variation.ease_shape)  # (T-1,)
    cruise = move.velocity_per_second() * variation.speed_jitter / fps  # (3,) per frame
    seconds = np.arange(num_frames) / fps
    drift = np.diff(variation.drift_offset(seconds), axis=0)  # (T-1, 3) per-step drift
    travel = ramp.sum() * cruise  # (3,) planned travel, drift aside
    drift_margin = 1.2 * variation.drift_amplitude.sum(axis=1)  # (3,) room the drift may need
    margin = np.abs(cruise) / BRAKE + drift_margin  # (3,) braking distance + drift, kept free at the edges

    continued = incoming_pose is not None
    room_zoom = False
    if continued:
        start = clamp_pose(np.asarray(incoming_pose, dtype=np.float64))
        velocity_in = np.zeros(3) if incoming_velocity is None else np.asarray(incoming_velocity, dtype=np.float64)
        if move.has_translation and not move.has_zoom:
            extra = _room_log_zoom(start, travel, margin)
            if extra > 0:
                cruise = cruise + np.array([extra / ramp.sum(), 0.0, 0.0])
                room_zoom = True
        fade = 1.0 - smoothstep(steps / max(1.0, BLEND_SECONDS * fps))
    else:
        start = _first_pose(travel, margin, drift_margin)
        velocity_in, fade = np.zeros(3), np.zeros(len(steps))

    wanted = fade[:, None] * velocity_in[None] + ramp[:, None] * (cruise[None] + drift)  # (T-1, 3)
    poses, taken = _integrate(start, wanted)
    limited = bool(np.abs(taken.sum(axis=0) - wanted.sum(axis=0)).max() > 0.5 * np.abs(travel).max() + 1e-3)
    end_velocity = taken[-1] if len(taken) else np.zeros(3)
    return CameraPlan(move, variation, poses, end_velocity, continued, room_zoom, limited)


def _first_pose(travel: np.ndarray, margin: np.ndarray, drift_margin: np.ndarray) -> np.ndarray:
    """Start pose of a first clip: centred on its travel, zoomed just enough for the move's room."""
    zoom_for_room = 1.0
    for axis in (1, 2):
        free = 1.0 - abs(travel[axis]) - 2 * margin[axis]  # window size that leaves the room
        zoom_for_room = max(zoom_for_room, 1.0 / free if free > 1.0 / ZOOM_MAX else ZOOM_MAX)
    if travel[0] < 0:  # a pull-back starts further in, so it ends with the room the pan needs
        log_zoom = math.log(zoom_for_room) + margin[0] - travel[0]
    else:
        log_zoom = math.log(zoom_for_room) + drift_margin[0]
    zoom = min(ZOOM_MAX, math.exp(log_zoom))
    return clamp_pose(np.array([zoom, 0.5 - travel[1] / 2, 0.5 - travel[2] / 2]))


def _room_log_zoom(pose: np.ndarray, travel: np.ndarray, margin: np.ndarray) -> float:
    """How much ln zoom a continuing pan/tilt/truck must add to have room for its travel."""
    needed_zoom = pose[0]
    for axis in (1, 2):
        if travel[axis] == 0.0:
            continue
        edge_distance = pose[axis] if travel[axis] < 0 else 1.0 - pose[axis]  # centre to the image edge ahead
        half = edge_distance - abs(travel[axis]) - margin[axis]  # largest half window that leaves the room
        needed_zoom = max(needed_zoom, 0.5 / half if half > half_window(ZOOM_MAX) else ZOOM_MAX)
    return math.log(needed_zoom) - math.log(pose[0])


def _integrate(start: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walk the wanted per-frame steps (T-1, 3) from `start` (zoom, cx, cy), braking before the
    image edges and the zoom limits. Returns poses (T, 3) and the steps taken (T-1, 3)."""
    poses = np.empty((len(wanted) + 1, 3))
    taken = np.empty_like(wanted)
    poses[0] = start
    log_zoom, centre = math.log(start[0]), start[1:].copy()
    log_zoom_max = math.log(ZOOM_MAX)
    for j, (step_zoom, step_x, step_y) in enumerate(wanted):
        before = np.array([log_zoom, centre[0], centre[1]])
        if step_zoom > 0:
            step_zoom = min(step_zoom, BRAKE * (log_zoom_max - log_zoom))
        else:
            step_zoom = max(step_zoom, -BRAKE * log_zoom)
        log_zoom += step_zoom
        zoom = math.exp(log_zoom)
        half = half_window(zoom)
        centre = np.clip(centre, half, 1.0 - half)  # zooming out pushes an off-centre window inwards
        for axis, step in enumerate((step_x, step_y)):
            if step > 0:
                step = min(step, BRAKE * (1.0 - half - centre[axis]))
            else:
                step = max(step, -BRAKE * (centre[axis] - half))
            centre[axis] += step
        poses[j + 1] = (zoom, centre[0], centre[1])
        taken[j] = np.array([log_zoom, centre[0], centre[1]]) - before
    return poses, taken


def crop_box(pose: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in pixels of a width×height image for a pose (zoom, cx, cy),
    clamped to the image (float rounding must never step outside it)."""
    window_w, window_h = width / pose[0], height / pose[0]
    left = min(max(0.0, pose[1] * width - window_w / 2), width - window_w)
    top = min(max(0.0, pose[2] * height - window_h / 2), height - window_h)
    return left, top, min(float(width), left + window_w), min(float(height), top + window_h)
