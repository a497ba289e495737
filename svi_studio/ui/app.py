"""The page: layout and event wiring. Behaviour lives in studio.py, text in views.py.

Shot cards are a fixed number of card slots (`max_shots`, default 24, env
SVI_MAX_SHOTS) shown or hidden as the film grows, not a `@gr.render` block: every
component exists from the start, so a render job can stream a clip into exactly one
card's player while the user types in another card, nothing is rebuilt (no players
reloading, no lost focus), and tests and scripts find each card by a stable elem_id
(shot-3-prompt, shot-3-video, …). The cost is a ceiling on shots per film in the
editor (the Director has none).

Named API endpoints (for gradio_client; the session lives in server-side gr.State):
new_project, load_example, upload_project, set_reference, set_story, set_shots,
update_settings, set_shot_media, render, regenerate, select_take, cancel, export,
download_project, status. Render work (render, regenerate, style LoRA upload) shares one concurrency
group of size 1; export has its own group of size 1; all other events stay responsive.

Serving (see serving.py): the app is a `StudioBlocks`, whose `launch` — however it is
called (`python app.py`, a Space, a test) — never serves the data folder
(`blocked_paths`), adds the security headers and the request numbering that orders the
page's edits, turns Gradio's monitoring routes off and limits uploads to
`max_upload_bytes`. Options, each also an environment variable for an imported app:
session quota (SVI_SESSION_QUOTA_GB, default 2; 0: none), idle-session TTL
(SVI_SESSION_TTL_HOURS, default 24; 0: keep forever), largest upload
(SVI_MAX_UPLOAD_MB, default the quota), and a folder of project folders made with the CLI
to list and open in place (SVI_PROJECTS_DIR; `launch` then refuses any host but a loopback
one, and a share link: see projects.py).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from starlette.middleware import Middleware

from ..engines import default_engine_name
from ..engines.request import CONDITION_LABELS
from ..project.model import max_shots as project_max_shots
from . import editing, gallery, jobs, live, projects, runtime, storyboard, views
from .presenter import CARD_FIELDS, CARD_MEDIA, REGENERATE, card_key
from .params import shot_id, shot_number, true_or_false, whole_number
from .serving import SHELF_FOLDER, ArrivalOrder, MediaShelf, SecurityHeaders, arrival_of
from .speed_panel import speed_panel
from ..project.model import ProjectError
from .studio import Outcome, Studio

log = logging.getLogger(__name__)

CSS_PATH = Path(__file__).with_name("studio.css")
RENDER_GROUP = "gpu"
# Width × height choices of the resolution preset menu (the width and height boxes take any other size).
RESOLUTION_PRESETS = ["832×480", "480×832", "1280×720", "720×1280", "640×640", "512×288"]
EXPORT_GROUP = "export"


def default_data_dir() -> Path:
    return Path(os.environ.get("SVI_DATA_DIR") or "data")


DEFAULT_QUOTA_GB = 2.0
DEFAULT_TTL_HOURS = 24.0
CACHE_CHECK_S = 3600  # how often Gradio's upload/output cache is checked for old files


def env_number(name: str, default: float) -> float:
    """A number from the environment (default when unset); ValueError names the variable."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}.") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be 0 or more, got {raw!r}.")
    return value


def as_sent(component: gr.components.Component) -> gr.components.Component:
    """Hand the handler this input exactly as the client sent it, so the handler can say what
    was wrong with NaN, infinity, text or nothing (gr.Number's own rounding fails on them with
    Gradio's bare "Error"). Set on the instance rather than in a subclass: Gradio writes a
    .pyi stub beside any module that subclasses one of its components."""
    component.preprocess = lambda payload: payload
    return component


class StudioBlocks(gr.Blocks):
    """The app's Blocks: `launch` applies the serving rules whoever calls it."""

    data_dir: Path
    max_upload_bytes: int | None = None
    projects_dir: Path | None = None

    def launch(self, *args: Any, **kwargs: Any):
        if self.projects_dir is not None:  # it opens this machine's folders in place: never for other machines
            projects.check_local(kwargs.get("server_name") or os.environ.get("GRADIO_SERVER_NAME"),
                                 bool(kwargs.get("share")))
        blocked = [self.data_dir] + ([self.projects_dir] if self.projects_dir is not None else [])
        kwargs["blocked_paths"] = list(kwargs.get("blocked_paths") or []) + [str(path) for path in blocked]
        kwargs.setdefault("enable_monitoring", False)  # /monitoring/summary would be open to anyone
        if self.max_upload_bytes:
            kwargs.setdefault("max_file_size", self.max_upload_bytes)
        app_kwargs = dict(kwargs.get("app_kwargs") or {})
        app_kwargs["middleware"] = list(app_kwargs.get("middleware") or []) + [Middleware(SecurityHeaders),
                                                                               Middleware(ArrivalOrder)]
        kwargs["app_kwargs"] = app_kwargs
        for key, value in launch_options().items():
            kwargs.setdefault(key, value)
        return super().launch(*args, **kwargs)


def check_data_dir(data_dir: Path, upload_folder: Path, option: str = "--data-dir") -> None:
    """A folder the server blocks must not hold Gradio's upload folder (blocking it would block uploads)."""
    if upload_folder.is_relative_to(data_dir):
        raise ValueError(f"{option} {data_dir} contains Gradio's upload folder {upload_folder}; "
                         "choose a folder of its own (or set GRADIO_TEMP_DIR elsewhere).")


def build_app(engine_name: str | None = None, data_dir: str | Path | None = None,
              max_shots: int | None = None, session_quota_gb: float | None = None,
              session_ttl_hours: float | None = None, max_upload_mb: float | None = None,
              projects_dir: str | Path | None = None) -> gr.Blocks:
    """The SVI Studio Blocks app. Loads the engine now (once per process).

    session_quota_gb: disk per session (default SVI_SESSION_QUOTA_GB, else 2; 0: no limit).
    session_ttl_hours: idle sessions are removed after this (SVI_SESSION_TTL_HOURS, else 24;
        0: kept forever); Gradio's cached uploads and outputs age out after the same time.
    max_upload_mb: largest upload (SVI_MAX_UPLOAD_MB, else the quota, else 2048).
    projects_dir: a folder of project folders made with the CLI, listed in the Projects panel and
        opened in place (SVI_PROJECTS_DIR; for a local server only: launch refuses other hosts).
    """
    from gradio.utils import get_upload_folder

    engine_name = engine_name or os.environ.get("SVI_ENGINE") or default_engine_name()
    data_dir = Path(data_dir or default_data_dir()).resolve()
    max_shots = min(max_shots or project_max_shots(), project_max_shots())  # the loader refuses more
    quota_gb = env_number("SVI_SESSION_QUOTA_GB", DEFAULT_QUOTA_GB) if session_quota_gb is None else session_quota_gb
    ttl_hours = env_number("SVI_SESSION_TTL_HOURS", DEFAULT_TTL_HOURS) if session_ttl_hours is None else session_ttl_hours
    quota_bytes = int(quota_gb * 2**30) if quota_gb else None
    upload_mb = env_number("SVI_MAX_UPLOAD_MB", (quota_bytes or 2**31) / 2**20) if max_upload_mb is None else max_upload_mb
    ttl_s = ttl_hours * 3600 if ttl_hours else None
    upload_folder = Path(get_upload_folder()).resolve()
    check_data_dir(data_dir, upload_folder)
    projects_dir = projects_dir or os.environ.get("SVI_PROJECTS_DIR") or None
    projects_dir = projects.check_projects_dir(projects_dir) if projects_dir else None
    if projects_dir is not None:
        check_data_dir(projects_dir, upload_folder, "--projects-dir")
    engine, note = runtime.get_engine(engine_name)
    studio = Studio(engine, data_dir, max_shots=max_shots, engine_note=note, max_idle_s=ttl_s,
                    quota_bytes=quota_bytes, shelf=MediaShelf(upload_folder / SHELF_FOLDER))
    blank = studio.blank
    cache_age = int(ttl_s or DEFAULT_TTL_HOURS * 3600)

    with StudioBlocks(title="SVI Studio", delete_cache=(min(CACHE_CHECK_S, cache_age), cache_age)) as demo:
        state = gr.State(None, delete_callback=studio.registry.forget)
        c: dict[str, Any] = {}  # component by view/form key

        with gr.Row(elem_id="studio-title"):
            gr.Markdown("# SVI Studio\nShot-by-shot long video: one reference image, one prompt per shot.")
        gr.HTML(views.engine_banner(engine, note), elem_id="engine-banner")

        with gr.Row(equal_height=False):
            # -- left: reference, story, settings, examples, project ---------------------------
            with gr.Column(scale=4, min_width=320, elem_id="left-panel"):
                c["reference"] = gr.Image(label="Reference image", interactive=False, height=230,
                                          elem_id="reference-preview", type="filepath")
                reference_upload = gr.UploadButton("Upload reference image", file_types=["image"],
                                                   elem_id="reference-upload", variant="primary", size="md")
                c["resolution"] = gr.Markdown(blank["resolution"], elem_id="resolution-note")
                c["style"] = gr.Textbox(label="Style / character prompt (shared by every shot)", lines=3,
                                        elem_id="style-prompt",
                                        placeholder="e.g. a ginger cat with a green collar, watercolour, soft light")
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    c["negative"] = gr.Textbox(label="Negative prompt", lines=3, elem_id="negative-prompt",
                                               placeholder="empty: the model's default negative prompt")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    gr.Markdown(f"**Model preset:** {engine.label} (`{engine.preset_id}`). "
                                "One engine per server process; start `python app.py --engine …` for another.",
                                elem_id="model-preset")
                    used = engine.used_settings(engine.default_settings())  # the page shows only what the engine reads
                    uses = used.__contains__
                    c["steps"] = gr.Slider(1, 60, value=blank["steps"], step=1, label="Steps", elem_id="setting-steps",
                                           visible=uses("steps"),
                                           info="Denoising steps per clip: more is slower and usually cleaner.")
                    c["guidance"] = gr.Slider(0, 10, value=blank["guidance"], step=0.5, label="Guidance",
                                              elem_id="setting-guidance", visible=uses("guidance"),
                                              info="How strictly the clip follows the prompt (higher: stricter, less natural).")
                    c["motion"] = gr.Radio(views.MOTION_CHOICES, value=blank["motion"], elem_id="setting-motion",
                                           label="Motion frames carried into the next shot",
                                           visible=uses("num_motion_latents"),
                                           info="How much of a shot's end the next shot continues from (upstream SVI shows 4; 8 and 12 are experimental).")
                    c["resolution_preset"] = gr.Dropdown(RESOLUTION_PRESETS, value=None, label="Resolution preset",
                                                         elem_id="setting-resolution-preset",
                                                         info="Pick a common size, or type width and height below (custom).")
                    with gr.Row():
                        c["width"] = gr.Number(blank["width"], label="Width", precision=0, step=16,
                                               elem_id="setting-width", min_width=90,
                                               info="Pixels; rounded to a multiple of 16.")
                        c["height"] = gr.Number(blank["height"], label="Height", precision=0, step=16,
                                                elem_id="setting-height", min_width=90,
                                                info="Pixels; rounded to a multiple of 16.")
                        c["fps"] = gr.Number(blank["fps"], label="FPS", precision=0, elem_id="setting-fps", min_width=80,
                                             info="Frames per second of every clip.")
                    c["frames"] = gr.Slider(0.5, 15, value=blank["frames"], step=0.01, elem_id="setting-frames",
                                            label="Shot length (seconds)",
                                            info="Rounded to a frame count the model can make (4k+1 frames); the note under the reference shows the exact length.")
                    c["loras"] = gr.Textbox(blank["loras"], label="LoRA weights (one per line: name = weight)",
                                            info="0 turns a LoRA off; 1 is its full strength.", lines=2, elem_id="setting-loras", visible=studio.has_loras)
                    if studio.has_loras:
                        lora_upload = gr.UploadButton("Add a style LoRA (.safetensors)", file_types=[".safetensors"],
                                                      elem_id="lora-upload", size="sm")
                    else:
                        lora_upload = None
                        gr.Markdown("LoRAs are unavailable on the draft engine (it does not run a diffusion model).",
                                    elem_id="lora-unavailable")
                speed_panel(engine)  # wan engines only
                for key in ("steps", "guidance", "width", "height", "fps", "frames"):
                    as_sent(c[key])  # the settings check says what is wrong with a value a client sends
                with gr.Accordion("Examples", open=True, elem_id="examples"):
                    example_buttons = []
                    if studio.presets:
                        with gr.Row():
                            for path in studio.presets:
                                button = gr.Button(studio.preset_title(path), size="sm",
                                                   elem_id=f"example-{path.stem}")
                                example_buttons.append((path.stem, button))
                    else:
                        gr.Markdown("No example projects are installed (presets/projects/ is empty).")
                with gr.Accordion("Project", open=False, elem_id="project"):
                    with gr.Row():
                        new_project = gr.Button("New project", size="sm", elem_id="new-project")
                        download_project = gr.Button("Download project (zip)", size="sm", elem_id="download-project")
                        upload_project = gr.UploadButton("Open project (zip)", file_types=[".zip"], size="sm",
                                                         elem_id="upload-project")
                    project_file = gr.File(label="Project zip", elem_id="project-file", interactive=False,
                                           visible=False)
                with gr.Accordion("Projects", open=False, elem_id="projects"):
                    project_list = gr.Dropdown(label="This browser's projects", choices=[], value=None,
                                               interactive=True, elem_id="project-list")
                    project_name = gr.Textbox(label="Name of the open project", max_lines=1, elem_id="project-name")
                    with gr.Row():
                        open_button = gr.Button("Open", size="sm", elem_id="project-open")
                        rename_button = gr.Button("Rename", size="sm", elem_id="project-rename")
                        duplicate_button = gr.Button("Duplicate", size="sm", elem_id="project-duplicate")
                        delete_button = gr.Button("Delete…", size="sm", variant="stop", elem_id="project-delete")
                    folder_controls = None
                    if projects_dir is not None:  # project folders made with the CLI, opened in place
                        folder_list = gr.Dropdown(label=f"Project folders in {projects_dir.name or projects_dir}",
                                                  choices=[], value=None, interactive=True,
                                                  elem_id="projects-dir-list")
                        with gr.Row():
                            folder_open = gr.Button("Open folder", size="sm", elem_id="projects-dir-open")
                            folder_refresh = gr.Button("Refresh", size="sm", elem_id="projects-dir-refresh",
                                                       scale=0, min_width=90)
                        folder_controls = (folder_list, folder_open, folder_refresh)
                browser = gr.BrowserState(dict(projects.EMPTY), storage_key=projects.BROWSER_KEY,
                                          secret=projects.browser_secret(data_dir))

            # -- right: render controls, film, shot cards ---------------------------------------
            with gr.Column(scale=8, elem_id="right-panel"):
                with gr.Row(equal_height=True, elem_id="primary-actions"):  # a sticky bar on small screens
                    render_all = gr.Button("Render all", variant="primary", elem_id="render-all", scale=4)
                    cancel = gr.Button("Cancel", variant="secondary", elem_id="cancel", scale=1, min_width=90)
                    export = gr.Button("Export film (mp4)", elem_id="export-button", variant="secondary", scale=2,
                                       min_width=120)
                with gr.Row(equal_height=True, elem_id="status-row"):
                    notice = gr.Markdown("", elem_id="job-status")
                    c["undo"] = gr.Button(blank["undo"][0], interactive=False, size="sm", elem_id="undo",
                                          scale=0, min_width=190)
                    c["redo"] = gr.Button(blank["redo"][0], interactive=False, size="sm", elem_id="redo",
                                          scale=0, min_width=150)
                c["revision"] = gr.Textbox(blank["revision"], visible=False, elem_id="project-revision")
                live_panel = gr.HTML("", elem_id="live-progress", js_on_load=live.PANEL_JS)
                with gr.Row(equal_height=False):
                    c["preview"] = gr.Video(label="Film so far", interactive=False, height=240, scale=3,
                                            elem_id="film-preview", loop=False)
                    with gr.Column(scale=2, min_width=260):
                        c["film"] = gr.Markdown(blank["film"], elem_id="film-summary")
                        export_file = gr.File(label="Exported film", elem_id="export-file", interactive=False,
                                              visible=False)
                        with gr.Accordion("Export options", open=False, elem_id="export-options"):
                            audio = gr.File(label="Soundtrack (optional)", file_types=["audio"], type="filepath",
                                            elem_id="export-audio", height=70)
                            crossfade = gr.Slider(0, 1, value=0, step=0.05, label="Crossfade at cuts (s)",
                                                  elem_id="export-crossfade")

                c["storyboard"] = gr.HTML(storyboard.blank_strip().template, elem_id="storyboard",
                                          js_on_load=storyboard.STRIP_JS)
                cards = []
                for index in range(max_shots):
                    cards.append(_shot_card(index, blank, c, engine.accepts))
                c["add_shot"] = gr.Button("+ Add shot", elem_id="add-shot")

        # -- hidden inputs and outputs of the API endpoints ---------------------------------------
        with gr.Column(visible=False):
            api_text = gr.Textbox(label="text")
            api_text2 = gr.Textbox(label="text2")
            api_json = gr.JSON(label="json")
            api_index = as_sent(gr.Number(label="index", precision=0))
            api_flag = gr.Checkbox(label="flag")
            api_number = as_sent(gr.Number(label="number"))
            api_file = gr.File(label="file", type="filepath")
            api_status = gr.JSON(label="status")
            api_out_file = gr.File(label="file")
            api_trigger = gr.Button("api")

        # -- wiring -------------------------------------------------------------------------------
        form = [state] + [c[key] for key in studio.form_keys]
        view = [state, notice] + [c[key] for key in studio.view_keys]
        quiet = dict(show_progress="hidden", api_visibility="private")

        light_view = [state, notice] + [c[key] for key in studio.sync_keys]

        def on(trigger, action, extra_inputs=(), extra_outputs=(), needs_session=True, light=False, **options):
            count = len(extra_inputs)
            keys = studio.sync_keys if light else None

            def handler(request: gr.Request, token, *values):
                extras = values[len(values) - count:] if count else ()
                return studio.page(token, values[: len(studio.form_keys)],
                                   lambda session: action(session, *extras),
                                   extra_outputs=len(extra_outputs), needs_session=needs_session, keys=keys,
                                   arrival=arrival_of(request))

            settings = {**quiet, **options}
            outputs = (light_view if light else view) + list(extra_outputs)
            return trigger(handler, inputs=form + list(extra_inputs), outputs=outputs, **settings)

        def on_job(trigger, make_job):
            # progress must be a positional parameter: Gradio passes gr.Progress only to those.
            def handler(request: gr.Request, token, progress=gr.Progress(), *values):
                yield from studio.page_job(token, values, lambda session: make_job(session, progress),
                                           arrival=arrival_of(request))

            return trigger(handler, inputs=form, outputs=view, concurrency_id=RENDER_GROUP, concurrency_limit=1,
                           show_progress="full", show_progress_on=[notice], api_visibility="private")

        def busy(trigger, buttons, working):
            """Before a slow action: say on the status line that it is working and disable the
            buttons that would conflict with it. Returns the trigger to hang the action on and
            the step that turns the buttons back on (hang it on the action with .then)."""
            before = trigger(lambda: [gr.update(value=f"⏳ {working}")] + [gr.update(interactive=False)] * len(buttons),
                             outputs=[notice] + buttons, queue=False, **quiet)

            def after(dependency):
                enable = [gr.update(interactive=True)] * len(buttons)
                dependency.then(lambda: enable if len(enable) > 1 else enable[0], outputs=buttons,
                                queue=False, **quiet)
            return before.then, after

        project_buttons = [new_project, download_project, upload_project] + [b for _, b in example_buttons]
        sync = studio.sync
        then, after = busy(reference_upload.upload, [reference_upload, render_all], "Reading the reference image…")
        after(on(then, studio.set_reference, extra_inputs=[reference_upload], show_progress="full",
                 show_progress_on=[notice]))
        for key in ("style", "negative"):
            on(c[key].blur, sync, light=True)
        for key in ("width", "height", "fps", "loras"):
            on(c[key].blur, sync)
        for key in ("steps", "guidance", "frames"):
            on(c[key].release, sync)
        on(c["motion"].input, sync)
        preset_js = "(choice) => choice ? choice.split('×').map(Number) : [null, null]"
        on(c["resolution_preset"].input(None, inputs=[c["resolution_preset"]], outputs=[c["width"], c["height"]],
                                        js=preset_js, **quiet).then, sync)
        if lora_upload is not None:
            on(lora_upload.upload, studio.add_style_lora, extra_inputs=[lora_upload],
               concurrency_id=RENDER_GROUP, concurrency_limit=1)
        on(c["add_shot"].click, studio.add_shot)
        on(c["undo"].click, studio.undo)
        on(c["redo"].click, studio.redo)
        # The film preview is rewritten in the background after an edit, and a cancelled render's
        # badge must come back: a light tick sends whichever of those changed (nothing otherwise).
        ticker = gr.Timer(1.0)
        ticker.tick(lambda token: studio.tick(token), inputs=[state],
                    outputs=[state] + [c[key] for key in studio.tick_keys], **quiet)
        on_job(render_all.click, lambda session, progress: jobs.render_all(session, progress))
        cancel.click(lambda token: studio.page(token, (), studio.cancel, needs_session=False, keys=studio.sync_keys),
                     inputs=[state], outputs=light_view, queue=False, **quiet)
        then, after = busy(export.click, [export], "Exporting the film…")
        after(on(then, studio.page_export, extra_inputs=[audio, crossfade], extra_outputs=[export_file],
                 concurrency_id=EXPORT_GROUP, concurrency_limit=1, show_progress="full",
                 show_progress_on=[export_file, notice]))
        for name, button in example_buttons:
            on(button.click, partial(_load_example, studio, name), needs_session=False)
        on(new_project.click, lambda session: studio.new_project(session), needs_session=False)
        on(download_project.click, studio.page_download_project, extra_outputs=[project_file])
        then, after = busy(upload_project.upload, project_buttons + [render_all, reference_upload],
                           "Opening the project zip…")
        after(on(then, studio.upload_project, extra_inputs=[upload_project], needs_session=False,
                 show_progress="full", show_progress_on=[notice]))

        _wire_projects(studio, demo, state, browser, view, project_list, project_name, open_button,
                       rename_button, duplicate_button, delete_button, on)
        if folder_controls is not None:
            _wire_project_folders(studio, demo, projects_dir, *folder_controls, on)

        # Card events go through a client-side hop: each card control writes a small JSON
        # action ({"do": "up", "shot": 2, …}) into a hidden box, and one server event per box
        # handles them all. That keeps the page config small (a card's events would otherwise
        # each list the whole form and page) while the handlers still get the whole form.
        card_action = gr.Textbox(visible=False, elem_id="card-action")
        card_job = gr.Textbox(visible=False, elem_id="card-job")
        card_sync = gr.Textbox(visible=False, elem_id="card-sync")
        # Each action names the shot the card showed (its hidden id box) and the project revision
        # the page last saw: the server finds the shot wherever it is now (see editing.py).
        revision = c["revision"]
        for index, card in enumerate(cards):
            for trigger in (card["prompt"].blur, card["seed"].blur, card["lock"].input):
                trigger(None, inputs=None, outputs=[card_sync], js=_action_js("sync", index), **quiet)
            for trigger, kind in ((card["dice"].click, "dice"),
                                  (card["up"].click, "up"), (card["down"].click, "down"),
                                  (card["insert"].click, "insert"), (card["delete"].click, "delete")):
                trigger(None, inputs=[card["id"], revision], outputs=[card_action], js=_action_js(kind, index),
                        **quiet)
            card["takes"].input(None, inputs=[card["takes"], card["id"], revision], outputs=[card_action],
                                js=_action_js("take", index, with_value=True), **quiet)
            card["gallery"].click(_gallery_relay(index), inputs=[card["id"]], outputs=[card_action], **quiet)
            for button, kind in ((card["regen"], "regenerate"), (card["regen_from"], "regenerate_from")):
                button.click(None, inputs=[card["id"], revision], outputs=[card_job], js=_action_js(kind, index),
                             **quiet)
            for role in CARD_MEDIA:
                if role in engine.accepts:  # a file goes up with its own event (a path never travels as text)
                    media = card[role]
                    on(media.upload, partial(_set_media, studio, role), extra_inputs=[card["id"], media], light=True)
                    on(media.clear, partial(_set_media, studio, role, path=None), extra_inputs=[card["id"]],
                       light=True)

        card_actions = {
            "dice": lambda session, act: studio.roll_seed(session, act.shot_id),
            "up": lambda session, act: studio.move_shot(session, act.shot_id, -1, act.revision),
            "down": lambda session, act: studio.move_shot(session, act.shot_id, 1, act.revision),
            "insert": lambda session, act: studio.insert_after(session, act.shot_id, act.revision),
            "delete": lambda session, act: studio.delete_shot(session, act.shot_id, act.revision),
            "take": lambda session, act: studio.select_take(session, act.shot_id, act.value),
            # the take gallery (star, note, delete) and the storyboard strip's drag: by shot id too
            **{kind: partial(_gallery_action, studio, action) for kind, action in gallery.ACTIONS.items()},
            "move": lambda session, act: studio.move_shot(session, act.shot_id, storyboard.move_offset(
                editing.locate(session.director, act.shot_id), act.value), act.revision),
        }

        def on_card_action(session, raw):
            act = editing.parse_card_action(raw, studio.max_shots)
            if act is None or act.kind not in card_actions:
                return None
            if act.shot_id is None:  # a card that was never given a shot (an empty page)
                return Outcome("That card shows no shot yet; wait for the page to load.")
            return card_actions[act.kind](session, act)

        def on_strip(event: gr.EventData):  # a tile moved (keys or drag): the same action as ↑/↓
            return storyboard.strip_action(getattr(event, "_data", None)) or gr.skip()

        c["storyboard"].click(on_strip, inputs=None, outputs=[card_action], **quiet)
        on(card_action.change, on_card_action, extra_inputs=[card_action], trigger_mode="multiple")
        on(card_sync.change, sync, light=True, trigger_mode="always_last")

        def card_job_handler(session, progress, raw=None):
            act = editing.parse_card_action(raw, studio.max_shots)
            if act is None or act.kind not in ("regenerate", "regenerate_from") or act.shot_id is None:
                return iter(())
            with session.lock:
                index = editing.locate(session.director, act.shot_id)
                editing.check_reroll(session.director, index)
            return jobs.regenerate(session, index, cascade=act.kind == "regenerate_from", progress=progress)

        def on_card_job(request: gr.Request, token, progress=gr.Progress(), *values):
            raw = values[-1]
            yield from studio.page_job(token, values[:-1], lambda session: card_job_handler(session, progress, raw),
                                       arrival=arrival_of(request))

        card_job.change(on_card_job, inputs=form + [card_job], outputs=view, concurrency_id=RENDER_GROUP,
                        concurrency_limit=1, show_progress="full", show_progress_on=[notice],
                        api_visibility="private", trigger_mode="multiple")

        def show_live(token):  # polled: the rendering shot's preview, steps and ETAs (live.py)
            session = studio.registry.get(token)
            if session is None:
                return gr.skip()
            state_now = live.BOARD.snapshot(str(session.project_dir))
            per_step = live.BOARD.seconds_per_step(state_now.total_steps) if state_now else None
            panel = live.panel_html(state_now, per_step)
            if session.shown.get("live") == panel:
                return gr.skip()
            session.shown["live"] = panel
            return panel

        gr.Timer(0.5).tick(show_live, inputs=[state], outputs=[live_panel], queue=False, **quiet)

        _wire_api(studio, state, api_trigger, api_text, api_text2, api_json, api_index, api_flag, api_number,
                  api_file, api_status, api_out_file)

    demo.queue(default_concurrency_limit=8)
    demo.studio = studio  # for tests and scripts: the Studio behind the page
    demo.data_dir = data_dir
    demo.projects_dir = projects_dir
    demo.max_upload_bytes = int(upload_mb * 2**20) if upload_mb else None
    return demo


def _wire_projects(studio: Studio, demo, state, browser, view, project_list, project_name, open_button,
                   rename_button, duplicate_button, delete_button, on) -> None:
    """This browser's projects (projects.py): reopened on load, remembered when opened."""
    registry = studio.registry
    skips = [gr.skip()] * (len(view) - 1)

    def listed(stored, token):
        return gr.update(choices=projects.listing(registry, stored), value=token)

    def named(token):
        """The Name box shows the open project's name (what Rename changes)."""
        try:
            session = registry.get(token) if token else None
        except ProjectError:
            session = None
        return gr.update(value=session.director.project.name if session is not None else "")

    def on_load(stored):
        opened, _ = projects.stored_tokens(stored)
        try:
            session = registry.get(opened) if opened else None
        except ProjectError as error:  # e.g. a linked folder whose project.json was broken outside the app
            return [gr.skip(), gr.update(value="⚠ " + studio.message(error)), *skips[1:], listed(stored, None),
                    named(None)]
        if session is None:  # nothing to reopen: leave the page's session alone (an upload may have made one already)
            return [gr.skip(), *skips, gr.update(choices=projects.listing(registry, stored)), gr.skip()]
        session.shown = dict(studio.blank)  # a fresh page shows nothing yet: send it everything
        notice = f"Reopened “{session.director.project.name}”."
        return studio.view(session, notice) + [listed(stored, opened), named(opened)]

    demo.load(on_load, inputs=[browser], outputs=view + [project_list, project_name], show_progress="hidden",
              api_visibility="private")

    def on_state(token, stored):
        stored = projects.remember(stored, token)
        return stored, listed(stored, token), named(token)

    state.change(on_state, inputs=[state, browser], outputs=[browser, project_list, project_name],
                 show_progress="hidden", api_visibility="private")

    def open_project(session, stored, token):
        chosen = projects.remembered_session(registry, stored, token)
        return Outcome(f"Opened “{chosen.director.project.name}”.", session=chosen)

    def rename(session, name):
        session.director.set_story(name=str(name or ""))
        return Outcome(f"Renamed to “{session.director.project.name}”.")

    def duplicate(session):
        return Outcome("Duplicated: you are now editing the copy.", session=projects.duplicate(registry, session))

    on(open_button.click, open_project, extra_inputs=[browser, project_list], needs_session=False)
    on(rename_button.click, rename, extra_inputs=[project_name]).then(
        lambda stored, token: (listed(stored, token), named(token)), inputs=[browser, state],
        outputs=[project_list, project_name], show_progress="hidden", api_visibility="private")
    on(duplicate_button.click, duplicate)

    def delete_project(token, chosen, stored):
        try:
            session = projects.remembered_session(registry, stored, chosen)
            done = projects.delete(registry, session)
        except ProjectError as error:
            return [token, gr.update(value="⚠ " + studio.message(error)), *skips[1:], stored, gr.skip()]
        stored = projects.forget(stored, chosen)
        if chosen == token:  # the open project: start a new one
            fresh = registry.create()
            fresh.shown = dict(studio.blank)
            return studio.view(fresh, f"{done} A new project is open.") + [stored, listed(stored, None)]
        return [token, gr.update(value=done), *skips[1:], stored, listed(stored, token)]

    delete_button.click(delete_project, inputs=[state, project_list, browser], outputs=view + [browser, project_list],
                        js="(token, chosen, stored) => [token, chosen && confirm('Delete this project and every "
                           "take in it? This cannot be undone.') ? chosen : null, stored]",
                        show_progress="hidden", api_visibility="private")


def _wire_project_folders(studio: Studio, demo, projects_dir: Path, folder_list, folder_open, folder_refresh,
                          on) -> None:
    """--projects-dir: list the project folders made with the CLI, open one in place (projects.py)."""
    def listed(chosen=None):
        choices = projects.folder_choices(projects_dir)
        return gr.update(choices=choices, value=chosen if chosen in [value for _, value in choices] else None)

    quiet = dict(show_progress="hidden", api_visibility="private")
    demo.load(listed, inputs=None, outputs=[folder_list], **quiet)
    folder_refresh.click(listed, inputs=[folder_list], outputs=[folder_list], **quiet)

    def open_folder(session, chosen):
        linked = projects.open_folder(studio.registry, projects_dir, chosen)
        studio.refresh_preview(linked)
        notices = " ".join(linked.director.notices)
        return Outcome(f"Opened the folder “{linked.project_dir.resolve().name}” in place: edits are saved in it. "
                       f"{notices}".strip(), session=linked)

    on(folder_open.click, open_folder, extra_inputs=[folder_list], needs_session=False)


def _shot_card(index: int, blank: dict[str, Any], c: dict[str, Any], accepts: frozenset[str]) -> dict[str, Any]:
    """One card slot: header, prompt, seed, buttons, clip player, takes, and the shot's
    anchor image and end frame where the engine accepts them."""
    number = index + 1
    card: dict[str, Any] = {}
    with gr.Column(visible=blank[card_key(index, "group")], elem_id=f"shot-card-{number}",
                   elem_classes=["shot-card"]) as group:
        card["head"] = gr.HTML(blank[card_key(index, "head")], elem_id=f"shot-{number}-head", js_on_load=None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                card["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"shot-{number}-prompt",
                                            placeholder="what happens in this shot, and how the camera moves")
                with gr.Row(equal_height=False, elem_classes=["svi-seed-row"]):
                    card["seed"] = gr.Textbox(label="Seed", max_lines=1, elem_id=f"shot-{number}-seed", scale=2,
                                              min_width=120, container=False, placeholder="seed")
                    card["dice"] = gr.Button("New seed", elem_id=f"shot-{number}-dice", scale=1, min_width=90,
                                             size="sm")
                    card["lock"] = gr.Checkbox(label="Lock seed", elem_id=f"shot-{number}-lock", scale=1, min_width=130,
                                               container=False)
                with gr.Row():
                    card["regen"] = gr.Button(REGENERATE, size="sm", elem_id=f"shot-{number}-regenerate")
                    card["regen_from"] = gr.Button("Regenerate from here", size="sm",
                                                   elem_id=f"shot-{number}-regenerate-from")
                with gr.Row():
                    card["up"] = gr.Button("↑ Up", size="sm", elem_id=f"shot-{number}-up", min_width=60)
                    card["down"] = gr.Button("↓ Down", size="sm", elem_id=f"shot-{number}-down", min_width=60)
                    card["insert"] = gr.Button("+ Insert after", size="sm", elem_id=f"shot-{number}-insert",
                                               min_width=100)
                    card["delete"] = gr.Button("Delete", size="sm", variant="stop", elem_id=f"shot-{number}-delete",
                                               min_width=70)
            with gr.Column(scale=2, min_width=220):
                card["video"] = gr.Video(label=f"Shot {number}", interactive=False, height=210, loop=True,
                                         elem_id=f"shot-{number}-video", elem_classes=["shot-video"])
                card["takes"] = gr.Dropdown(label="Take", choices=[], value=None, interactive=True,
                                            elem_id=f"shot-{number}-takes")
                with gr.Row(equal_height=True, elem_classes=["svi-media-row"]):
                    for role in CARD_MEDIA:
                        label = f"{CONDITION_LABELS[role].capitalize()} (optional)"
                        options = dict(label=label, height=110, sources=["upload"], min_width=100,
                                       elem_id=f"shot-{number}-{role.replace('_', '-')}", visible=role in accepts)
                        if role == "pose_video":  # SVI-Dance presets: a rendered skeleton video for this shot
                            card[role] = gr.Video(**options)
                        else:
                            card[role] = gr.Image(type="filepath", buttons=[], **options)
        card["gallery"] = gr.HTML("", elem_id=f"shot-{number}-gallery", js_on_load=gallery.GALLERY_JS,
                                  elem_classes=["svi-gallery-slot"])
        card["id"] = gr.Textbox(blank[card_key(index, "id")], visible=False, elem_id=f"shot-{number}-id")
    card["group"] = group
    for field in CARD_FIELDS:
        c[card_key(index, field)] = card[field]
    return card


def _action_js(kind: str, index: int, with_value: bool = False) -> str:
    """Client-side function writing a card action as JSON: the card slot, the id of the shot
    it shows and the project revision the page last saw (the "sync" action, a card losing
    focus, sends the whole form instead). A page-wide counter makes each click a change; the
    clock is not used, so a clock that steps back cannot repeat an action."""
    value = "value" if with_value else "null"
    args = "(value, id, rev)" if with_value else "(id, rev)"
    if kind == "sync":
        args, value = "()", "null"
    ids = ", id: id, rev: rev" if kind != "sync" else ""
    return (f"{args} => JSON.stringify({{do: {kind!r}, shot: {index}, value: {value}{ids}, "
            f"n: (window.__sviActions = (window.__sviActions || 0) + 1)}})")


def _set_media(studio: Studio, role: str, session, shot: str, path: str | None = None):
    """A card's condition file set (uploaded) or cleared, on the shot whose id the card shows."""
    return studio.set_shot_media(session, shot, role, path)


def _gallery_action(studio: Studio, action, session, act):
    """A take gallery action (gallery.ACTIONS) on the shot whose id the card showed."""
    return action(studio, session, editing.locate(session.director, act.shot_id), act.value)


def _gallery_relay(index: int):
    """The event handler turning card `index`'s gallery star/note/delete (gr.HTML trigger data)
    into a card action naming the card's shot id (a closure: Gradio finds gr.EventData by the
    annotation of a plain function)."""

    def relay(shot: str, event: gr.EventData):
        return gallery.gallery_action(index, getattr(event, "_data", None), shot or None) or gr.skip()

    return relay


def _load_example(studio: Studio, name: str, session):
    return studio.load_example(session, name)


def _wire_api(studio: Studio, state, trigger, text, text2, json_in, index, flag, number, file_in, status,
              out_file) -> None:
    """Named endpoints for gradio_client. Each takes the session from gr.State and returns
    the project's status (or a file); errors come back as gr.Error messages."""
    outputs = [state, status]

    def endpoint(fn, inputs, api_name, description, outs=None, **options):
        trigger.click(fn, inputs=[state] + inputs, outputs=outs or outputs, api_name=api_name,
                      api_description=description, show_progress="hidden", **options)

    endpoint(lambda token, name: studio.api_start(lambda: studio.new_project(None, name or None)),
             [text], "new_project", "Start a new, empty project in a new session folder (name optional).")
    endpoint(lambda token, preset: studio.api_start(lambda: studio.load_example(None, preset)),
             [text], "load_example", "Load an example project preset by name (e.g. cat-adventure).")
    endpoint(lambda token, project_zip: studio.api_start(lambda: studio.upload_project(None, project_zip)),
             [file_in], "upload_project", "Open a project zip (from download_project) in a new session.")
    endpoint(lambda token, image: studio.api_call(token, lambda s: studio.set_reference(s, image)),
             [file_in], "set_reference", "Upload the reference image; the notices give the clip resolution.")
    endpoint(lambda token, style_prompt, negative_prompt: studio.api_call(
        token, lambda s: studio.set_story(s, style_prompt, negative_prompt)),
             [text, text2], "set_story", "Set the style/character prompt and the negative prompt.")
    endpoint(lambda token, prompts: studio.api_call(token, lambda s: studio.set_shots(s, prompts)),
             [json_in], "set_shots", "Make the film's shots these prompts (a JSON list of strings), in order.")
    endpoint(lambda token, settings: studio.api_call(token, lambda s: studio.update_settings(s, settings)),
             [json_in], "update_settings", "Change settings, e.g. {\"steps\": 4, \"num_frames\": 21}.")
    endpoint(lambda token, index, role, file: studio.api_call(
        token, lambda s: studio.set_shot_media(s, shot_number(index, len(s.director.project.shots)), str(role or ""), file)),
             [index, text, file_in], "set_shot_media",
             "Set shot `index`'s (0-based) condition `role` (anchor_image, end_image or pose_video) to the file; "
             "no file clears it. The shot and the shots after it become stale.")
    endpoint(lambda token, index, take_id: studio.api_call(token, lambda s: studio.select_take(
        s, shot_number(index, len(s.director.project.shots)), take_id)),
             [index, text], "select_take", "Select an earlier take (take id) of shot `index` (0-based).")
    # Edits by shot id; structural ones name the revision the client last saw (`revision` in
    # /status) and are refused with "the film changed — …" when the shots changed since.
    endpoint(lambda token, shot, offset, revision: studio.api_call(token, lambda s: studio.move_shot(
        s, shot_id(shot), whole_number(offset, "offset"), whole_number(revision, "revision"))),
             [text, index, number], "move_shot", "Move shot `shot_id` by `offset` places (-1: up, 1: down).")
    endpoint(lambda token, shot, revision: studio.api_call(token, lambda s: studio.delete_shot(
        s, shot_id(shot), whole_number(revision, "revision"))),
             [text, number], "delete_shot", "Delete shot `shot_id` (undo brings it back with its takes).")
    endpoint(lambda token, shot, revision: studio.api_call(token, lambda s: studio.insert_after(
        s, shot_id(shot), whole_number(revision, "revision"))),
             [text, number], "insert_shot", "Insert an empty shot after shot `shot_id`.")
    endpoint(lambda token, shot, prompt: studio.api_call(token, lambda s: studio.edit_prompt(s, shot_id(shot), prompt)),
             [text, text2], "edit_shot", "Set the prompt of shot `shot_id`.")
    endpoint(lambda token: studio.api_call(token, lambda s: studio.undo(s)), [], "undo",
             "Undo the latest delete, move, insert, prompt edit or take selection.")
    endpoint(lambda token: studio.api_call(token, lambda s: studio.redo(s)), [], "redo", "Redo what undo undid.")
    endpoint(lambda token: studio.api_call(token, lambda s: studio.status(s)),
             [], "status", "The project: shots with status, takes, seeds, seconds and seam scores.")
    endpoint(lambda token: studio.api_call(token, lambda s: studio.cancel(s)),
             [], "cancel", "Cancel this session's render after the current step (finished shots are kept).",
             queue=False)

    def api_render(token, progress=gr.Progress()):
        yield from studio.api_job(token, lambda s: jobs.render_all(s, progress))

    def api_regenerate(token, index, cascade, progress=gr.Progress()):
        def job(session):
            shot = shot_number(index, len(session.director.project.shots))
            editing.check_reroll(session.director, shot)
            return jobs.regenerate(session, shot, cascade=true_or_false(cascade, "cascade"), progress=progress)

        yield from studio.api_job(token, job)

    endpoint(api_render, [], "render", "Render every missing or stale shot in order; streams the status after each.",
             concurrency_id=RENDER_GROUP, concurrency_limit=1)
    endpoint(api_regenerate, [index, flag], "regenerate",
             "New take of shot `index` (0-based) from the stored motion before it; cascade=True re-renders the "
             "stale shots after it too.", concurrency_id=RENDER_GROUP, concurrency_limit=1)

    def api_export(token, crossfade, audio):
        return studio.api_call(token, lambda s: studio.publish(s, studio.export(s, audio, crossfade)[0]))

    endpoint(api_export, [number, file_in], "export", "Export the whole film; returns the mp4.",
             outs=[state, out_file], concurrency_id=EXPORT_GROUP, concurrency_limit=1)
    endpoint(lambda token: studio.api_call(token, lambda s: studio.publish(s, studio.download_project(s))),
             [], "download_project", "The project as a zip (reference, prompts, settings, takes).",
             outs=[state, out_file])


def launch_options() -> dict[str, Any]:
    """Styling launch() needs (Gradio 6 takes css at launch). Without the stylesheet (an install
    that did not ship it) the page still works, unstyled."""
    try:
        return {"css": CSS_PATH.read_text(encoding="utf-8")}
    except OSError:
        log.warning("%s is missing; the page will be unstyled", CSS_PATH)
        return {}


def launch_app(demo: gr.Blocks, host: str | None = None, port: int | None = None, share: bool = False,
               prevent_thread_lock: bool = False, **options: Any):
    """Launch on `host`:`port` (the serving rules come with StudioBlocks.launch)."""
    return demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                       **options)
