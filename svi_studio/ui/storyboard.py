"""The storyboard strip: every shot of the film in one row above the cards.

A tile per shot (`data-shot-id`, `data-status`, `data-index`, and where the shot is in the
film preview `data-start` / `data-end` seconds): the thumbnail of its selected take (the
first frame the film keeps of it) or a placeholder, a width proportional to its duration,
its number and its status colour. Between tiles, the cut with its seam score (a score above
SEAM_WARN is flagged) and a "play across this cut" button.

What the strip does happens in the browser (STRIP_JS, installed once per page by the
component's js_on_load, by event delegation, so it survives every re-render of the HTML):
clicking a tile scrolls to and highlights its card and seeks the film preview to the
shot; ←/→ on a focused tile moves the shot (the server gets the same action as the card's
↑/↓ buttons); while the film preview plays, a playhead runs along the strip; the cut
button plays the last second before the cut and the first second after it.

Thumbnails are made once per take (thumb.jpg in the take folder, written atomically) and
reach the browser only through the MediaShelf: the strip's value is a `MediaHTML` whose
files the presenter publishes when it sends the HTML.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from PIL import Image

from ..director import Director, ShotStatus
from ..fsutil import atomic_write_bytes
from ..project.model import ProjectError
from ..project.status import MISSING
from ..seams import SEAM_WARN
from . import views

log = logging.getLogger(__name__)

THUMB_FILE = "thumb.jpg"
THUMB_HEIGHT = 72  # pixels; a tile shows it at 48 px high, so it stays sharp on a 1.5× screen
PX_PER_SECOND = 22  # tile width per second of film (the strip scrolls itself when wider than the page)
MIN_TILE_PX = 56
MEDIA_MARK = "@@svi-media:{}@@"  # where a published file's URL goes in a MediaHTML template


@dataclass(frozen=True)
class MediaHTML:
    """HTML that shows session files: `template` with MEDIA_MARK.format(i) where the URL of
    files[i] goes. files: (path, mtime_ns) pairs, so a rewritten file counts as a change.
    The presenter turns it into HTML with the published (servable) URL of each file."""

    template: str
    files: tuple[tuple[str, int], ...] = ()

    def render(self, publish: Callable[[str], str | None]) -> str:
        text = self.template
        for number, (path, _) in enumerate(self.files):
            served = publish(path)
            text = text.replace(MEDIA_MARK.format(number), file_url(served) if served else "")
        return text


class MediaFiles:
    """Collects the files of one MediaHTML while its template is written."""

    def __init__(self):
        self.files: list[tuple[str, int]] = []

    def mark(self, path: Path | str | None) -> str:
        """The placeholder for `path`'s URL ("" when the file is gone)."""
        if not path:
            return ""
        try:
            mtime = Path(path).stat().st_mtime_ns
        except OSError:
            return ""
        self.files.append((str(path), mtime))
        return MEDIA_MARK.format(len(self.files) - 1)

    def html(self, template: str) -> MediaHTML:
        return MediaHTML(template, tuple(self.files))


def file_url(served_path: str) -> str:
    """The URL Gradio serves a published file at (relative to the page)."""
    return "gradio_api/file=" + quote(served_path)


def text(value: object) -> str:
    """User text for HTML: escaped, and '@' too, so it can never spell a media mark."""
    return html.escape(str(value)).replace("@", "&#64;")


# -- thumbnails -------------------------------------------------------------------------------


def thumbnail(director: Director, shot_id: str, take_id: str) -> Path | None:
    """thumb.jpg of a take: its first kept frame (after the stitch rule's dropped head),
    THUMB_HEIGHT pixels high. Made on first use and kept in the take folder; None when the
    take's clip cannot be read (a broken take shows the placeholder)."""
    store = director.store
    try:
        path = store.take_dir(shot_id, take_id) / THUMB_FILE
        if path.is_file():
            return path
        take = store.take(shot_id, take_id)
        frames = store.frames(shot_id, take_id)  # (T, H, W, 3) uint8
    except (ProjectError, OSError, ValueError) as error:
        log.info("no thumbnail for take %s: %s", take_id, error)
        return None
    first = min(int(take.stitch_rule.get("drop_head", 0)), len(frames) - 1)
    picture = Image.fromarray(frames[first])
    width = max(1, round(picture.width * THUMB_HEIGHT / picture.height))
    picture = picture.resize((width, THUMB_HEIGHT), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=82)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:  # a thumbnail is a nicety: the strip shows a placeholder instead
        log.warning("could not write a thumbnail for take %s: %s", take_id, error)
        return None
    return path


# -- the strip ----------------------------------------------------------------------------------


def shot_seconds(status: ShotStatus, planned: tuple[float, float] | None) -> float:
    """How long the shot lasts in the film: its take's kept span, else the planned one."""
    if status.start_s is not None and status.end_s is not None:
        return max(0.0, status.end_s - status.start_s)
    if planned is not None:
        return max(0.0, planned[1] - planned[0])
    return 0.0


def strip_html(director: Director, statuses: list[ShotStatus]) -> MediaHTML:
    """The strip for these statuses (Director.statuses())."""
    planned = director.planned_seconds()
    media = MediaFiles()
    parts = ['<div class="svi-strip" role="list" aria-label="Storyboard: every shot in film order. '
             'Click a shot to open its card; use the left and right arrow keys to move it.">']
    for status in statuses:
        index = status.index
        if index > 0:
            parts.append(cut_html(index, status.seam_score, statuses[index - 1], status))
        seconds = shot_seconds(status, planned[index] if index < len(planned) else None)
        width = max(MIN_TILE_PX, round(seconds * PX_PER_SECOND))
        thumb = None
        if status.selected_take is not None and status.clip_path is not None:
            thumb = thumbnail(director, status.shot_id, status.selected_take)
        url = media.mark(thumb)
        picture = (f'<img class="svi-tile-thumb" src="{url}" alt="" draggable="false">' if url
                   else '<div class="svi-tile-placeholder"></div>')
        timing = ""
        if status.start_s is not None and status.end_s is not None:
            timing = f' data-start="{status.start_s:g}" data-end="{status.end_s:g}"'
        label = (f"Shot {index + 1}, {views.BADGE_TEXT.get(status.status, status.status)}, "
                 f"{views.seconds(seconds)} s: {status.prompt[:80]}")
        parts.append(
            f'<div class="svi-tile svi-tile-{text(status.status)}" role="listitem" tabindex="0" draggable="true"'
            f' data-shot-id="{text(status.shot_id)}" data-status="{text(status.status)}" data-index="{index}"'
            f'{timing} style="width:{width}px" title="{text(label)}" aria-label="{text(label)}">'
            f'{picture}<span class="svi-tile-number">{index + 1}</span>'
            f'<span class="svi-tile-seconds">{views.seconds(seconds)} s</span></div>')
    parts.append('<div class="svi-playhead" hidden></div></div>')
    return media.html("".join(parts))


def cut_html(index: int, seam: float | None, before: ShotStatus, after: ShotStatus) -> str:
    """The cut between shot `index` and `index + 1` (1-based numbers): seam score, flag, play button."""
    flagged = seam is not None and seam > SEAM_WARN
    score = f"{seam:.1f}" if seam is not None else "–"
    title = (f"Cut {index} → {index + 1}: " + (f"seam {seam:.2f}" if seam is not None else "no seam score yet")
             + (f", above {SEAM_WARN:g}: a visible jump" if flagged else ""))
    playable = before.end_s is not None and after.start_s is not None and after.status != MISSING
    button = (f'<button class="svi-cut-play" type="button" data-cut-at="{after.start_s:g}" '
              f'title="Play across this cut (1 s either side)" aria-label="Play across cut {index} to {index + 1}">▶</button>'
              if playable else "")
    return (f'<div class="svi-strip-cut{" svi-strip-cut-flag" if flagged else ""}" data-cut="{index}"'
            f' data-seam="{score}" title="{title}">'
            f'<span class="svi-strip-seam">{"⚠ " if flagged else ""}{score}</span>{button}</div>')


def blank_strip() -> MediaHTML:
    return MediaHTML('<div class="svi-strip" role="list"><div class="svi-tile svi-tile-missing" role="listitem" '
                     'tabindex="0" data-shot-id="" data-status="missing" data-index="0" style="width:110px">'
                     '<div class="svi-tile-placeholder"></div><span class="svi-tile-number">1</span></div></div>')


# The strip's behaviour in the browser; `element` is the component, `trigger` sends an event
# to the server (gr.HTML js_on_load). Moves go to the server as {"do": "up"|"down", "shot": i}.
STRIP_JS = r"""
const film = () => document.querySelector('#film-preview video');
const tiles = () => Array.from(element.querySelectorAll('.svi-tile'));
const openCard = (index) => {
  const card = document.getElementById(`shot-card-${index + 1}`);
  if (!card) return;
  card.scrollIntoView({behavior: 'smooth', block: 'start'});
  document.querySelectorAll('.shot-card.svi-highlight').forEach(c => c.classList.remove('svi-highlight'));
  card.classList.add('svi-highlight');
  setTimeout(() => card.classList.remove('svi-highlight'), 2500);
};
const seek = (seconds, play) => {
  const video = film();
  if (!video || !isFinite(seconds)) return;
  video.currentTime = Math.max(0, seconds);
  if (play) video.play().catch(() => {});
};
let stopAt = null;
// A play-across-cut stops on the first frame shown at or past stopAt: checked per presented
// frame (requestVideoFrameCallback), so a busy page's late timer cannot carry it past; the
// 200 ms poll below is the fallback where the callback is missing.
const stopOnFrame = (video) => {
  if (!video || !video.requestVideoFrameCallback) return;
  const check = (now, frame) => {
    if (stopAt === null) return;
    if (frame.mediaTime >= stopAt) { video.pause(); stopAt = null; return; }
    video.requestVideoFrameCallback(check);
  };
  video.requestVideoFrameCallback(check);
};
const move = (index, offset) => {
  window.__sviStripFocus = index + offset;
  const tile = tiles()[index];
  trigger('click', {do: offset < 0 ? 'up' : 'down', shot: index, id: tile ? tile.dataset.shotId : null});
};
element.addEventListener('click', (event) => {
  const cut = event.target.closest('.svi-cut-play');
  if (cut) {
    const at = parseFloat(cut.dataset.cutAt);
    stopAt = at + 1;
    seek(at - 1, true);
    stopOnFrame(film());
    return;
  }
  const tile = event.target.closest('.svi-tile');
  if (!tile) return;
  openCard(+tile.dataset.index);
  if (tile.dataset.start !== undefined) seek(parseFloat(tile.dataset.start) + 0.001, false);
});
element.addEventListener('keydown', (event) => {
  const tile = event.target.closest('.svi-tile');
  if (!tile) return;
  const index = +tile.dataset.index;
  if (event.key === 'ArrowLeft' && index > 0) { event.preventDefault(); move(index, -1); }
  else if (event.key === 'ArrowRight' && index < tiles().length - 1) { event.preventDefault(); move(index, 1); }
  else if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); openCard(index); }
});
let dragged = null;
element.addEventListener('dragstart', (event) => {
  const tile = event.target.closest('.svi-tile');
  dragged = tile ? +tile.dataset.index : null;
});
element.addEventListener('dragover', (event) => { if (dragged !== null) event.preventDefault(); });
element.addEventListener('drop', (event) => {
  const tile = event.target.closest('.svi-tile');
  if (dragged === null || !tile) return;
  event.preventDefault();
  const to = +tile.dataset.index;
  const from = tiles()[dragged];
  if (to !== dragged) {
    window.__sviStripFocus = to;
    trigger('click', {do: 'move', shot: dragged, to: to, id: from ? from.dataset.shotId : null});
  }
  dragged = null;
});
// After a move the strip re-renders: keep the keyboard focus on the moved shot.
new MutationObserver(() => {
  const want = window.__sviStripFocus;
  if (want === undefined) return;
  const tile = tiles()[want];
  if (tile && document.activeElement !== tile && tile.dataset.index == want) tile.focus();
}).observe(element, {childList: true, subtree: true});
element.addEventListener('focusout', () => { window.__sviStripFocus = undefined; });
// The playhead follows the film preview while it plays; a play-across-cut stops 1 s after the cut.
setInterval(() => {
  const video = film();
  const head = element.querySelector('.svi-playhead');
  if (!video || !head) return;
  if (stopAt !== null && video.currentTime >= stopAt) { video.pause(); stopAt = null; }
  const t = video.currentTime;
  const tile = tiles().find(x => x.dataset.start !== undefined && t >= +x.dataset.start && t < +x.dataset.end);
  if (!tile || (video.paused && t === 0)) { head.hidden = true; return; }
  const start = +tile.dataset.start, end = +tile.dataset.end;
  const left = tile.offsetLeft + tile.offsetWidth * Math.min(1, (t - start) / Math.max(0.001, end - start));
  head.hidden = false;
  head.style.left = `${left}px`;
  element.dataset.playing = video.paused ? '' : tile.dataset.index;
  const strip = element.querySelector('.svi-strip');
  if (strip && !video.paused && (left < strip.scrollLeft || left > strip.scrollLeft + strip.clientWidth))
    strip.scrollLeft = left - strip.clientWidth / 2;
}, 200);
"""


def move_offset(index: int, value: str | None) -> int:
    """The offset of a "move" action from shot `index` (where it is now) to position `value` (0 if unreadable)."""
    try:
        return int(value or "") - index
    except ValueError:
        return 0


def strip_action(data: dict | None) -> str | None:
    """A strip event's data ({"do": "up"|"down"|"move", "shot": i, "to": j}) as a card action
    JSON string for the page's card-action box, or None when malformed."""
    if not isinstance(data, dict) or data.get("do") not in ("up", "down", "move"):
        return None
    shot, to = data.get("shot"), data.get("to")
    if not isinstance(shot, int) or isinstance(shot, bool) or (data["do"] == "move" and not isinstance(to, int)):
        return None
    shot_id = data.get("id") if isinstance(data.get("id"), str) else None  # the tile's shot: moves go by id
    return json.dumps({"do": data["do"], "shot": shot, "id": shot_id, "value": str(to) if data["do"] == "move" else None,
                       "strip": next(_ACTION_NUMBERS)})  # a new value each time, so the box changes


_ACTION_NUMBERS = itertools.count(1)
