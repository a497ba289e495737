"""The take gallery of a shot card: every take as a thumbnail with its seed, time and seam.

In the browser (GALLERY_JS, one per card, by event delegation): ▶ plays a take in place
without selecting it; ☆ stars it, ✎ sets its note, ✕ deletes it (never the selected take:
the button is not offered for it and the Director refuses it); ticking two takes and
pressing "Compare" shows them side by side, played in sync, each preceded by the last
second of the previous shot's selected take (what the cut will look like). Star, note and
delete go to the server as card actions ({"do": "star", "shot": i, "value": take id}),
handled by `ACTIONS` here; selecting a take stays the card's Take menu (Director.select_take:
later shots go stale exactly as before).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from ..director import Director
from ..project.model import ProjectError
from . import views
from .storyboard import MediaFiles, MediaHTML, text, thumbnail

TAIL_SECONDS = 1.0  # how much of the previous shot plays before each compared take


def gallery_html(director: Director, index: int) -> MediaHTML:
    """Shot `index`'s takes, newest first."""
    project = director.project
    shot = project.shots[index]
    media = MediaFiles()
    previous = project.shots[index - 1] if index > 0 else None
    tail = ""
    if previous is not None and previous.selected_take is not None:
        try:
            before = director.store.take(previous.id, previous.selected_take)
            keep_end = (before.num_frames - int(before.stitch_rule.get("drop_tail", 0))) / before.fps
            url = media.mark(director.store.clip_path(previous.id, previous.selected_take))
            if url:
                tail = f' data-tail-url="{url}" data-tail-from="{max(0.0, keep_end - TAIL_SECONDS):g}" data-tail-to="{keep_end:g}"'
        except ProjectError:
            tail = ""
    parts = [f'<div class="svi-gallery" data-shot-index="{index}"{tail}>']
    if not shot.takes:
        parts.append('<div class="svi-gallery-empty">No takes yet: render this shot.</div>')
    for number, take_id in reversed(list(enumerate(shot.takes, start=1))):
        parts.append(take_html(director, shot.id, take_id, number, take_id == shot.selected_take, media))
    if len(shot.takes) > 1:
        parts.append('<div class="svi-gallery-bar"><button type="button" class="svi-compare-button" disabled>'
                     'Compare the two ticked takes</button></div>')
    parts.append('<div class="svi-compare" hidden></div></div>')
    return media.html("".join(parts))


def take_html(director: Director, shot_id: str, take_id: str, number: int, selected: bool, media: MediaFiles) -> str:
    try:
        take = director.store.take(shot_id, take_id)
    except ProjectError:
        return (f'<div class="svi-take svi-take-broken" data-take-id="{text(take_id)}">'
                f'<div class="svi-take-meta">{text(views.take_label(number, None, take_id))}</div></div>')
    thumb = media.mark(thumbnail(director, shot_id, take_id))
    clip = media.mark(director.store.clip_path(shot_id, take_id))
    start = int(take.stitch_rule.get("drop_head", 0)) / take.fps
    seam = (take.seam or {}).get("score")
    seam_text = f" · seam {seam:.2f}" if isinstance(seam, (int, float)) else ""
    created = take.created[11:19] if len(take.created) >= 19 else take.created
    picture = f'<img class="svi-take-thumb" src="{thumb}" alt="">' if thumb else '<div class="svi-tile-placeholder"></div>'
    delete = ("" if selected else
              '<button type="button" class="svi-take-delete" title="Delete this take (its files are removed)">✕</button>')
    note = f'<div class="svi-take-note">{text(take.note)}</div>' if take.note else ""
    return (
        f'<div class="svi-take{" svi-take-selected" if selected else ""}" data-take-id="{text(take_id)}"'
        f' data-selected="{str(selected).lower()}" data-starred="{str(take.starred).lower()}"'
        f' data-clip="{clip}" data-clip-from="{start:g}" data-number="{number}">'
        f'<div class="svi-take-media">{picture}</div>'
        f'<div class="svi-take-meta"><b>Take {number}</b>{" (in use)" if selected else ""} · seed {take.seed}'
        f' · {text(created)}{seam_text}</div>{note}'
        f'<div class="svi-take-actions">'
        f'<button type="button" class="svi-take-play" title="Play this take here (does not select it)">▶</button>'
        f'<button type="button" class="svi-take-star" title="Star this take">{"★" if take.starred else "☆"}</button>'
        f'<button type="button" class="svi-take-note-edit" title="Add or change a short note">✎</button>'
        f'{delete}<label class="svi-take-pick" title="Tick two takes to compare them">'
        f'<input type="checkbox" class="svi-take-compare"> compare</label></div></div>')


# -- server side: what the gallery's buttons do -------------------------------------------------


def star(studio: Any, session: Any, index: int, take_id: str | None) -> Any:
    """Toggle a take's star."""
    from .studio import Outcome

    take = session.director.store.take(session.director.shot(index).id, _take(session, index, take_id))
    session.director.mark_take(index, take.id, starred=not take.starred)
    return Outcome(f"Shot {index + 1}: take {'starred' if not take.starred else 'unstarred'}.")


def note(studio: Any, session: Any, index: int, value: str | None) -> Any:
    """Set a take's note; value: JSON {"take": id, "note": text}."""
    from .studio import Outcome

    try:
        data = json.loads(value or "")
        take_id, words = data["take"], data["note"]
    except (ValueError, TypeError, KeyError):
        raise ProjectError("the note could not be read; type it again.") from None
    if not isinstance(words, str):
        raise ProjectError("a note must be text.")
    session.director.mark_take(index, _take(session, index, take_id), note=words)
    return Outcome(f"Shot {index + 1}: note saved.")


def delete(studio: Any, session: Any, index: int, take_id: str | None) -> Any:
    """Delete a take that is not the selected one."""
    from .studio import Outcome

    studio.require_idle(session, "delete takes")
    shot = session.director.shot(index)
    take_id = _take(session, index, take_id)
    number = shot.takes.index(take_id) + 1
    session.director.delete_take(index, take_id)
    return Outcome(f"Shot {index + 1}: take {number} deleted.")


def _take(session: Any, index: int, take_id: Any) -> str:
    shot = session.director.shot(index)
    if not isinstance(take_id, str) or take_id not in shot.takes:
        raise ProjectError(f"shot {index + 1} has no such take any more; the page shows its takes now.")
    return take_id


ACTIONS = {"star": star, "note": note, "delete_take": delete}


def gallery_action(index: int, data: dict | None, shot_id: str | None = None) -> str | None:
    """A gallery event's data ({"do": "star"|"note"|"delete_take", "take": id, "note": text}) as a
    card action JSON string for card `index` showing shot `shot_id`, or None when malformed."""
    if not isinstance(data, dict) or data.get("do") not in ACTIONS or not isinstance(data.get("take"), str):
        return None
    value = data["take"]
    if data["do"] == "note":
        if not isinstance(data.get("note"), str):
            return None
        value = json.dumps({"take": data["take"], "note": data["note"]})
    return json.dumps({"do": data["do"], "shot": index, "id": shot_id, "value": value, "gallery": next(_NUMBERS)})


_NUMBERS = itertools.count(1)


GALLERY_JS = r"""
const ticked = () => Array.from(element.querySelectorAll('.svi-take-compare:checked')).map(x => x.closest('.svi-take'));
const playInPlace = (take) => {
  const box = take.querySelector('.svi-take-media');
  let video = box.querySelector('video');
  if (!video) {
    video = document.createElement('video');
    video.className = 'svi-take-video'; video.muted = true; video.playsInline = true; video.controls = true;
    video.src = take.dataset.clip;
    box.replaceChildren(video);
  }
  video.currentTime = 0;
  video.play().catch(() => {});
};
// Each pane plays the previous shot's last second, then the take from its first kept frame.
const comparePane = (take, gallery) => {
  const pane = document.createElement('div');
  pane.className = 'svi-compare-pane';
  pane.dataset.takeId = take.dataset.takeId;
  const label = document.createElement('div');
  label.textContent = `Take ${take.dataset.number}`;
  const video = document.createElement('video');
  video.muted = true; video.playsInline = true;
  pane.append(video, label);
  const tail = gallery.dataset.tailUrl;
  const playTake = () => { video.src = take.dataset.clip; video.onloadedmetadata = () => {
    video.currentTime = +take.dataset.clipFrom; video.play().catch(() => {}); video.onloadedmetadata = null; }; };
  pane.start = () => {
    if (!tail) { playTake(); return; }
    video.src = tail;
    video.onloadedmetadata = () => { video.currentTime = +gallery.dataset.tailFrom; video.play().catch(() => {}); video.onloadedmetadata = null; };
    video.ontimeupdate = () => { if (video.src.endsWith(tail) && video.currentTime >= +gallery.dataset.tailTo - 0.02) {
      video.ontimeupdate = null; playTake(); } };
  };
  return pane;
};
element.addEventListener('click', (event) => {
  const gallery = element.querySelector('.svi-gallery');
  const take = event.target.closest('.svi-take');
  const id = take ? take.dataset.takeId : null;
  if (event.target.closest('.svi-take-play')) { playInPlace(take); return; }
  if (event.target.closest('.svi-take-star')) { trigger('click', {do: 'star', take: id}); return; }
  if (event.target.closest('.svi-take-delete')) {
    if (take.dataset.selected !== 'true') trigger('click', {do: 'delete_take', take: id});
    return;
  }
  if (event.target.closest('.svi-take-note-edit')) {
    const words = window.prompt('A short note for this take', take.querySelector('.svi-take-note')?.textContent ?? '');
    if (words !== null) trigger('click', {do: 'note', take: id, note: words});
    return;
  }
  if (event.target.closest('.svi-compare-button')) {
    const picked = ticked();
    if (picked.length !== 2) return;
    const panel = element.querySelector('.svi-compare');
    const panes = picked.map(t => comparePane(t, gallery));
    const close = document.createElement('button');
    close.type = 'button'; close.className = 'svi-compare-close'; close.textContent = 'Close comparison';
    close.onclick = () => { panel.hidden = true; panel.replaceChildren(); };
    panel.replaceChildren(...panes, close);
    panel.hidden = false;
    panes.forEach(p => p.start());  // started together: the two panes stay in step
    return;
  }
});
element.addEventListener('change', (event) => {
  if (!event.target.classList.contains('svi-take-compare')) return;
  const picked = ticked();
  if (picked.length > 2) event.target.checked = false;
  const button = element.querySelector('.svi-compare-button');
  if (button) button.disabled = ticked().length !== 2;
});
"""
