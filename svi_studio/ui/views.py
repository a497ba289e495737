"""Text and HTML the page shows: badges, shot headers, cut markers, take labels, banners.

Pure functions of Director data (no Gradio), so they are easy to test. Everything a
user typed is escaped before it goes into HTML.
"""

from __future__ import annotations

import html
from typing import Any

from ..director import Director, ShotStatus
from ..engines.base import Engine
from ..project.model import Take
from ..project.status import BROKEN, FRESH, MISSING, RENDERING, STALE
from ..seams import SEAM_WARN

BADGE_TEXT = {MISSING: "missing", RENDERING: "rendering", FRESH: "fresh", STALE: "stale", BROKEN: "broken"}
BADGE_HELP = {
    MISSING: "not rendered yet",
    RENDERING: "rendering now",
    FRESH: "up to date",
}
# label, num_motion_latents. Upstream SVI 2.0 Pro is shown with one motion latent only; 2 and 3 are untested upstream.
MOTION_CHOICES = [("4 frames", 1), ("8 frames (experimental)", 2), ("12 frames (experimental)", 3)]


def seconds(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def status_badge(status: str, reason: str | None = None) -> str:
    """A coloured badge plus the reason (stale/broken) or a short gloss."""
    text = BADGE_TEXT.get(status, status)
    gloss = reason or BADGE_HELP.get(status, "")
    badge = f'<span class="svi-badge svi-badge-{html.escape(status)}">{html.escape(text)}</span>'
    if gloss:
        badge += f' <span class="svi-reason">{html.escape(gloss)}</span>'
    return badge


def shot_header(number: int, status: ShotStatus | None, planned: tuple[float, float] | None) -> str:
    """'Shot 2 · 5.06–9.81 s [stale] the shot before it has a different take now'.
    A shot that will be rendered again shows where it will sit in the film (planned), not
    where its old take sits."""
    if (status is not None and status.status == FRESH and status.start_s is not None
            and status.end_s is not None) or (planned is None and status is not None and status.end_s is not None):
        span = f"{seconds(status.start_s)}–{seconds(status.end_s)} s"
    elif planned is not None:
        span = f"≈ {seconds(planned[0])}–{seconds(planned[1])} s (planned)"
    else:
        span = ""
    badge = status_badge(status.status, status.reason) if status is not None else status_badge(MISSING)
    extra = ""
    if status is not None and status.camera:
        extra = f' <span class="svi-camera">camera: {html.escape(status.camera)}</span>'
    return (f'<div class="svi-shot-head"><span class="svi-shot-number">Shot {number}</span>'
            f' <span class="svi-shot-span">{html.escape(span)}</span> {badge}{extra}</div>')


def cut_marker(number: int, seam: float | None) -> str:
    """The cut into shot `number` (2-based upwards): its seam score, flagged above SEAM_WARN."""
    label = f"Cut {number - 1} → {number}"
    if seam is None:
        return f'<div class="svi-cut svi-cut-none">✂ {label}</div>'
    if seam > SEAM_WARN:
        return (f'<div class="svi-cut svi-cut-warn" title="above {SEAM_WARN}: a visible jump">⚠ {label} · '
                f'seam {seam:.2f} — visible jump (above {SEAM_WARN:g}); re-roll shot {number} or adjust its prompt</div>')
    return f'<div class="svi-cut svi-cut-ok">✂ {label} · seam {seam:.2f}</div>'


def take_label(number: int, take: Take | None, take_id: str) -> str:
    """'Take 2 · seed 1418034332 · 22:54:08' (time of day, UTC, from the take id)."""
    if take is None:
        return f"Take {number} · damaged ({take_id})"
    created = take.created[11:19] if len(take.created) >= 19 else take.created
    return f"Take {number} · seed {take.seed} · {created}"


def engine_banner(engine: Engine, note: str | None = None) -> str:
    """What the engine in use is, and what its output is (and is not)."""
    name = html.escape(engine.label)
    if engine.is_draft:
        body = ("<b>Draft engine.</b> Clips are camera-move drafts of your reference image "
                "(pans, push-ins, tilts read from each prompt) — <b>not diffusion output</b>. Use them to block out "
                "shots, timing and cuts. To render with the real model, run "
                "<code>python app.py --engine wan</code> on a machine with a CUDA GPU.")
        kind = "draft"
    elif getattr(engine, "name", "") == "tiny":
        body = ("<b>Test engine.</b> Output is <b>random noise</b> from a tiny, randomly initialised test model; it "
                "exercises the whole pipeline but shows nothing meaningful. To render with the real model, run "
                "<code>python app.py --engine wan</code> on a machine with a CUDA GPU.")
        kind = "tiny"
    else:
        body = f"<b>Model:</b> {name} <span class='svi-muted'>(preset {html.escape(engine.preset_id)})</span>"
        kind = "wan"
    if note:
        body += f"<br><span class='svi-muted'>{html.escape(note)}</span>"
    return f'<div class="svi-banner svi-banner-{kind}">{body}</div>'


def film_summary(director: Director, statuses: list[ShotStatus]) -> str:
    """'3 shots · 14.56 s · 233 frames at 16 fps', plus what is left to render and flagged cuts."""
    shots = len(statuses)
    if not shots:
        return "No shots yet: add one below."
    fps = director.project.settings.fps
    rendered = [s for s in statuses if s.end_s is not None]
    pending = [index + 1 for index in will_render(statuses)]
    planned = director.planned_seconds()
    parts = [f"**{shots} shot{'s' if shots != 1 else ''}**"]
    if rendered and not pending and len(rendered) == shots:
        end = max(s.end_s for s in rendered)
        parts.append(f"{seconds(end)} s · {round(end * fps)} frames at {fps} fps")
    else:
        if rendered:
            end = max(s.end_s for s in rendered)
            parts.append(f"film so far {seconds(end)} s ({len(rendered)} with a take)")
        if planned:
            parts.append(f"planned {seconds(planned[-1][1])} s")
        if pending:
            parts.append(f"to render: shot {', '.join(map(str, pending))}")
    flagged = [s.index + 1 for s in statuses if s.seam_score is not None and s.seam_score > SEAM_WARN]
    if flagged:
        parts.append(f"⚠ visible jump at the cut into shot {', '.join(map(str, flagged))}")
    return " · ".join(parts)


def will_render(statuses: list[ShotStatus]) -> list[int]:
    """Shots (0-based) that Render all will render: from the first missing, stale or broken
    shot to the end (each new take changes the motion the next shot continues from)."""
    first = next((s.index for s in statuses if s.status in (MISSING, STALE, BROKEN)), None)
    return [] if first is None else list(range(first, len(statuses)))


def resolution_note(director: Director) -> str:
    s = director.project.settings
    if not director.project.reference:
        return "Upload a reference image: it anchors the character and look of every shot."
    return (f"Clips will be **{s.width}×{s.height}**, {s.num_frames} frames at {s.fps} fps "
            f"({seconds(s.num_frames / s.fps)} s per shot).")


def lora_weights_text(weights: dict[str, float]) -> str:
    """One 'name = weight' line per LoRA."""
    return "\n".join(f"{name} = {weight:g}" for name, weight in weights.items())


def parse_lora_weights(text: str) -> dict[str, float]:
    """Inverse of lora_weights_text; ValueError names the line it cannot read."""
    weights: dict[str, float] = {}
    for number, line in enumerate(str(text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"LoRA weights line {number} ({line!r}): write it as 'name = weight'.")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"LoRA weights line {number}: {value.strip()!r} is not a number.") from None
    return weights


def job_line(kind: str, shot: int | None, done: int, total: int, detail: str = "") -> str:
    """The status line of a render job."""
    if kind == "start":
        return f"Rendering shot {shot} ({done + 1} of {total})…"
    if kind == "clip":
        return f"Shot {shot} finished ({done} of {total}).{(' ' + detail) if detail else ''}"
    if kind == "cancelled":
        return f"Cancelled. {done} finished clip{'s' if done != 1 else ''} kept."
    if kind == "done":
        return f"Done: {done} clip{'s' if done != 1 else ''} rendered." if done else "Nothing to render: every shot is fresh."
    return detail


def public_status(director: Director, statuses: list[ShotStatus], notices: list[str] | None = None) -> dict[str, Any]:
    """The project as the `status` API endpoint returns it (no server paths)."""
    settings = director.project.settings.to_dict()
    shots = []
    for status in statuses:
        item = status.to_dict()
        item.pop("clip_path", None)
        item["seam_flagged"] = bool(status.seam_score is not None and status.seam_score > SEAM_WARN)
        shots.append(item)
    rendered = [s for s in statuses if s.end_s is not None]
    return {
        "name": director.project.name,
        "revision": director.project.revision,
        "engine": director.engine.preset_id,
        "engine_label": director.engine.label,
        "is_draft": bool(director.engine.is_draft),
        "conditions": sorted(director.engine.accepts),  # the per-shot conditions this engine honours
        "has_reference": bool(director.project.reference),
        "style_prompt": director.project.style_prompt,
        "negative_prompt": director.project.negative_prompt,
        "settings": settings,
        "planned_seconds": [list(span) for span in director.planned_seconds()],
        "film_seconds": max((s.end_s for s in rendered), default=0.0),
        "pending": director.pending(),
        "seam_warn": SEAM_WARN,
        "shots": shots,
        "notices": list(notices or []),
    }
