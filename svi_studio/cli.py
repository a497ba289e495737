"""`python -m svi_studio …`: the command line over the same Director the app uses.

    render SPEC_OR_DIR [--engine NAME] [--project-dir DIR] [--out FILM.mp4] [--set KEY=VALUE ...]
    render --reference IMG --prompt "shot 1" --prompt "shot 2" [--engine NAME] [--project-dir DIR] [--out FILM.mp4]
    regen DIR --shot N [--seed S] [--prompt TEXT] [--cascade] [--engine NAME] [--anchor-image IMG] [--end-image IMG] …
    set-shot DIR --shot N [--prompt TEXT] [--seed S] [--anchor-image IMG] [--end-image IMG] [--pose-video MP4]
             [--clear anchor_image|end_image|pose_video ...]
    set-film DIR --pose-video MP4 | --clear pose_video      one pose video for the whole film, cut per shot
    status DIR
    export DIR OUT.mp4 [--audio FILE] [--crossfade SECONDS] [--scale X]
    bundle DIR OUT.zip
    unbundle ZIP DIR
    presets

Every command takes --json for machine-readable output (one JSON object per line for
progress events, then a final result object). Exit codes: 0 ok, 1 user error
(the message says what to do), 2 usage error, 130 cancelled.

Settings given with --set (steps=4, num_frames=21, guidance=3.5, …) and seeds given with
--seed go through the same settings.normalise_settings / validate_seed as the app and
the Python API: the same values are rounded (with a "note:" line) or refused (with the
same message).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import UserError
from .project.model import ProjectError
from .settings import SettingsError


def _print(args, payload: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, default=str), flush=True)
    else:
        print(text, flush=True)


def _engine(name: str | None, project_dir: Path | None = None, speed: dict[str, Any] | None = None):
    from .engines import default_engine_name, load_engine

    if name is None and project_dir is not None and (project_dir / "project.json").is_file():
        try:
            name = json.loads((project_dir / "project.json").read_text(encoding="utf-8")).get("engine")
        except (ValueError, RecursionError, AttributeError, OSError):
            name = None  # opening the project names what is wrong with the file
    if name is not None and not isinstance(name, str):
        name = None
    name = name or default_engine_name()
    if not speed:
        return load_engine(name)
    if name == "draft":
        raise SettingsError("speed switches (--attention, --compile, --cache, --quantize, --vae-tiling, --fuse-loras) "
                            "apply to the wan engines only, not the draft engine.")
    return load_engine(name, speed=speed)


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """The speed switches of engines/speed.py as flags; each is off (or the preset's) unless given."""
    from .engines.speed import SWITCHES

    group = parser.add_argument_group("speed switches (wan engines; default: the preset's, else off)")
    group.add_argument("--attention", metavar="BACKEND", help=f"{SWITCHES['attention'][0]}. {SWITCHES['attention'][1]}")
    group.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                       help=f"regional torch.compile (default backend inductor; 'off' to turn a preset's off). {SWITCHES['compile'][1]}")
    group.add_argument("--cache", metavar="SPEC", help=f"{SWITCHES['cache'][0]}. {SWITCHES['cache'][1]}")
    group.add_argument("--quantize", metavar="KIND", help=f"{SWITCHES['quantize'][0]}. {SWITCHES['quantize'][1]}")
    group.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None, help=SWITCHES["vae_tiling"][1])
    group.add_argument("--fuse-loras", action=argparse.BooleanOptionalAction, default=None, help=SWITCHES["fuse_loras"][1])


def speed_overrides(args) -> dict[str, Any]:
    """The speed flags given on the command line (absent flags leave the preset's choice)."""
    flags = {"attention": args.attention, "compile": args.compile, "cache": args.cache, "quantize": args.quantize,
             "vae_tiling": args.vae_tiling, "fuse_loras": args.fuse_loras}
    return {name: value for name, value in flags.items() if value is not None}


def _label(engine) -> str:
    return f"{engine.label}" + ("  [DRAFT: camera moves of the reference, not diffusion]" if engine.is_draft else "")


def _run_events(args, events) -> list[str]:
    """Print each clip as it finishes; Ctrl-C cancels at the next step and keeps finished clips."""
    rendered = []
    for event in events:
        if event.kind == "clip":
            seam = "" if event.seam_score is None else f", seam {event.seam_score:.2f}"
            _print(args, event.to_dict(),
                   f"shot {event.shot_index + 1}: take {event.take_id} ({event.timings['generate_s']:.1f}s{seam}) → {event.clip_path}")
            rendered.append(event.take_id)
        elif event.kind == "done" and event.cancelled:
            _print(args, event.to_dict(), "cancelled; finished shots are kept.")
    return rendered


def _on_step(args):
    if not args.progress:
        return None

    def show(step):
        sys.stderr.write(f"\rshot {step.shot_index + 1} (clip {step.job_index + 1}/{step.job_size}): "
                         f"step {step.step}/{step.total_steps}   ")
        sys.stderr.flush()

    return show


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE pairs → settings changes; VALUE is read as JSON when it is JSON (4, 3.5,
    {"style": 0.8}), else kept as text (the settings gate then says what is wrong with it)."""
    changes: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set takes KEY=VALUE (e.g. --set steps=4), got {pair!r}.")
        try:
            changes[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            changes[key.strip()] = value
    return changes


def cmd_render(args) -> int:
    from .project.store import render_lock

    source = Path(args.source) if args.source else None
    if source is not None and source.is_dir() and (source / "project.json").is_file():
        # Taken before the project is opened, so a second render of it is refused before it changes
        # anything ("this project is being rendered by another process (pid N) …").
        with render_lock(source):
            return _render(args)
    return _render(args)


def _render(args) -> int:
    from .director import Director

    source = Path(args.source) if args.source else None
    changes = parse_set(args.set)
    if source is not None and source.is_dir() and (source / "project.json").is_file():
        engine = _engine(args.engine, source, speed_overrides(args))
        director = Director.open(source, engine)
        if changes:
            director.notices.extend(director.update_settings(**changes))
    else:
        engine = _engine(args.engine, speed=speed_overrides(args))
        project_dir = Path(args.project_dir) if args.project_dir else Path(tempfile.mkdtemp(prefix="svi-project-"))
        if source is not None:
            director = Director.from_spec(source, project_dir, engine, settings=changes or None)
        else:
            if not args.reference or not args.prompt:
                raise ProjectError("give a spec file, a project folder, or --reference IMG with one --prompt per shot.")
            # Director.create opens the file with reference.load_reference, as the app and the API do.
            director = Director.create(project_dir, engine, reference=Path(args.reference), prompts=args.prompt,
                                       style_prompt=args.style or "", settings=changes or None)
    for notice in director.notices:
        _print(args, {"notice": notice}, f"note: {notice}")
    _print(args, {"project": str(director.root), "engine": engine.describe()},
           f"project {director.root} — engine: {_label(engine)}")
    cancel = threading.Event()
    try:
        _run_events(args, director.render(cancel=cancel, on_step=_on_step(args)))
    except KeyboardInterrupt:
        cancel.set()
        return 130
    result: dict[str, Any] = {"project": str(director.root), "shots": [s.to_dict() for s in director.statuses()]}
    if args.out:
        result["film"] = str(args.out)
        result["timeline"] = director.export(args.out)
        _print(args, result, f"film → {args.out} ({result['timeline']['frames']} frames, {result['timeline']['seconds']}s)")
    else:
        _print(args, result, "done.")
    return 0


def _apply_media(args, director) -> None:
    """--anchor-image / --end-image / --pose-video / --clear: the shot's conditions, through
    the same Director.set_shot_media (and the same file checks) as the app and the API."""
    from .engines.request import CONDITION_ROLES

    index = args.shot - 1
    for role in args.clear or []:
        if role not in CONDITION_ROLES:
            raise ProjectError(f"--clear takes one of {', '.join(CONDITION_ROLES)}, not {role!r}.")
        director.set_shot_media(index, role, None)
    for role in CONDITION_ROLES:
        path = getattr(args, role, None)
        if path:
            for notice in director.set_shot_media(index, role, Path(path)):
                _print(args, {"notice": notice}, f"note: {notice}")


def cmd_set_shot(args) -> int:
    from .director import Director

    project = Path(args.project)
    director = Director.open(project, _engine(args.engine, project) if args.engine else None)
    if args.prompt is not None or args.seed is not None:
        for notice in director.set_shot(args.shot - 1, prompt=args.prompt, seed=args.seed):
            _print(args, {"notice": notice}, f"note: {notice}")
    _apply_media(args, director)
    return cmd_status(args)


def cmd_set_film(args) -> int:
    from .director import Director

    project = Path(args.project)
    director = Director.open(project, _engine(args.engine, project) if args.engine else None)
    for role in args.clear or []:
        director.set_film_media(role, None)
    if args.pose_video:
        director.set_film_media("pose_video", Path(args.pose_video))
    return cmd_status(args)


def cmd_regen(args) -> int:
    from .director import Director
    from .project.store import render_lock

    with render_lock(args.project):  # before opening: a refused second render changes nothing
        director = Director.open(Path(args.project), _engine(args.engine, Path(args.project), speed_overrides(args)))
        _apply_media(args, director)
        cancel = threading.Event()
        try:
            _run_events(args, director.regenerate(args.shot - 1, seed=args.seed, prompt=args.prompt,
                                                  cascade=args.cascade, cancel=cancel, on_step=_on_step(args)))
        except KeyboardInterrupt:
            cancel.set()
            return 130
    return cmd_status(args)


def cmd_status(args) -> int:
    from .director import Director

    director = Director.open(Path(args.project), None)
    statuses = director.statuses()
    lines = [f"{director.project.name} — engine {director.project.engine}, "
             f"{director.project.settings.width}x{director.project.settings.height}, {director.project.settings.fps} fps"]
    for s in statuses:
        seam = "" if s.seam_score is None else f"  seam {s.seam_score:.2f}"
        span = "" if s.start_s is None else f"  {s.start_s:.2f}-{s.end_s:.2f}s"
        why = f" ({s.reason})" if s.reason else ""
        lines.append(f"  shot {s.index + 1}: {s.status}{why}  take {s.selected_take or '-'}  seed {s.seed}"
                     f"  frames {s.frames or '-'}{span}{seam}")
    _print(args, {"project": str(director.root), "shots": [s.to_dict() for s in statuses]}, "\n".join(lines))
    return 0


def cmd_export(args) -> int:
    from .director import Director

    director = Director.open(Path(args.project), None)
    timeline = director.export(args.out, audio=args.audio, crossfade=args.crossfade, scale=args.scale)
    _print(args, {"film": str(args.out), "timeline": timeline},
           f"film → {args.out} ({timeline['frames']} frames, {timeline['seconds']}s"
           + (", DRAFT" if timeline["draft"] else "") + ")")
    return 0


def cmd_bundle(args) -> int:
    from .project.bundle import bundle_project

    out = bundle_project(args.project, args.out)
    _print(args, {"bundle": str(out)}, f"bundle → {out}")
    return 0


def cmd_unbundle(args) -> int:
    from .project.bundle import unbundle_project

    store = unbundle_project(args.zip, args.project)
    _print(args, {"project": str(store.root), "shots": len(store.project.shots)},
           f"project → {store.root} ({len(store.project.shots)} shots)")
    return 0


def cmd_presets(args) -> int:
    from .engines.presets import list_presets
    from .project.spec import list_project_presets

    payload = {"engines": ["draft"] + list_presets(), "projects": [p.stem for p in list_project_presets()]}
    _print(args, payload, "engines: " + ", ".join(payload["engines"]) + "\nprojects: " + ", ".join(payload["projects"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svi_studio", description="SVI Studio: shot-by-shot long video.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--progress", action="store_true", help="show denoising steps on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", parents=[common], help="render missing and stale shots")
    render.add_argument("source", nargs="?", help="a project spec (.json or preset name) or a project folder")
    render.add_argument("--engine", help="draft, tiny, wan or a model preset id (default: the project's, else wan on CUDA, draft on CPU)")
    render.add_argument("--project-dir", help="where a new project is created (default: a temp folder)")
    render.add_argument("--reference", help="reference image, for a project given by --prompt")
    render.add_argument("--prompt", action="append", help="one shot's prompt (repeat per shot)")
    render.add_argument("--style", help="style/character prompt shared by every shot")
    render.add_argument("--out", help="export the film to this mp4 when done")
    render.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a setting (repeat): steps=4, num_frames=21, guidance=3.5, width=832, num_motion_latents=2, …")
    add_speed_arguments(render)
    render.set_defaults(func=cmd_render)

    regen = sub.add_parser("regen", parents=[common], help="a new take of one shot from its stored upstream motion")
    regen.add_argument("project")
    regen.add_argument("--shot", type=int, required=True, help="shot number, 1-based")
    regen.add_argument("--seed", help="a whole number 0 .. 2**64-1 (checked like the app checks it)")
    regen.add_argument("--prompt")
    regen.add_argument("--cascade", action="store_true", help="also re-render the shots after it")
    regen.add_argument("--engine")
    add_speed_arguments(regen)
    _media_arguments(regen)
    regen.set_defaults(func=cmd_regen)

    set_shot = sub.add_parser("set-shot", parents=[common], help="edit one shot: prompt, seed, anchor image, end frame, pose video")
    set_shot.add_argument("project")
    set_shot.add_argument("--shot", type=int, required=True, help="shot number, 1-based")
    set_shot.add_argument("--prompt")
    set_shot.add_argument("--seed", help="a whole number 0 .. 2**64-1")
    set_shot.add_argument("--engine", help="check the conditions against this engine (default: none loaded)")
    _media_arguments(set_shot)
    set_shot.set_defaults(func=cmd_set_shot)

    set_film = sub.add_parser("set-film", parents=[common], help="one pose video for the whole film, cut per shot")
    set_film.add_argument("project")
    set_film.add_argument("--pose-video", dest="pose_video", metavar="VIDEO")
    set_film.add_argument("--clear", action="append", metavar="ROLE", help="pose_video")
    set_film.add_argument("--engine", help="check the condition against this engine (default: none loaded)")
    set_film.set_defaults(func=cmd_set_film)

    status = sub.add_parser("status", parents=[common], help="per-shot status")
    status.add_argument("project")
    status.set_defaults(func=cmd_status)

    export = sub.add_parser("export", parents=[common], help="export the film as mp4")
    export.add_argument("project")
    export.add_argument("out")
    export.add_argument("--audio")
    export.add_argument("--crossfade", type=float, default=0.0)
    export.add_argument("--scale", type=float, default=1.0)
    export.set_defaults(func=cmd_export)

    bundle = sub.add_parser("bundle", parents=[common], help="zip a project")
    bundle.add_argument("project")
    bundle.add_argument("out")
    bundle.set_defaults(func=cmd_bundle)

    unbundle = sub.add_parser("unbundle", parents=[common], help="unpack a project zip")
    unbundle.add_argument("zip")
    unbundle.add_argument("project")
    unbundle.set_defaults(func=cmd_unbundle)

    presets = sub.add_parser("presets", parents=[common], help="list engine and project presets")
    presets.set_defaults(func=cmd_presets)
    return parser


def _media_arguments(parser: argparse.ArgumentParser) -> None:
    """--anchor-image, --end-image, --pose-video (one option per condition role) and --clear ROLE."""
    from .engines.request import CONDITION_LABELS, CONDITION_ROLES

    for role in CONDITION_ROLES:
        parser.add_argument(f"--{role.replace('_', '-')}", dest=role, metavar="FILE",
                            help=f"the shot's {CONDITION_LABELS[role]}")
    parser.add_argument("--clear", action="append", metavar="ROLE",
                        help=f"remove a condition: {', '.join(CONDITION_ROLES)} (repeat)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, OSError) as error:  # OSError: a file the user named cannot be read or written
        if getattr(args, "json", False):
            print(json.dumps({"error": str(error), "type": type(error).__name__}, ensure_ascii=False), flush=True)
        else:
            print(f"error: {error}", file=sys.stderr)
        return 1
