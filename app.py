"""SVI Studio — the web app.

    python app.py                       # the default engine: wan on a CUDA GPU, else the CPU draft engine
    python app.py --engine tiny         # the offline test engine (its output is noise)
    python app.py --engine wan2.1-svi-film --port 7861 --data-dir films
    python app.py --projects-dir films  # also list the project folders in ./films (made with the CLI), open them in place

Importing this module builds the app (`demo`) without launching it; Hugging Face
Spaces and the tests do that. Options for an import come from the environment:
SVI_ENGINE, SVI_DATA_DIR (default ./data), SVI_HOST, SVI_PORT, SVI_MAX_SHOTS,
SVI_SESSION_QUOTA_GB (default 2), SVI_SESSION_TTL_HOURS (default 24), SVI_MAX_UPLOAD_MB
(default: the quota), SVI_PROJECTS_DIR.
Public sharing (a gradio.live link) is off unless --share is given.

--projects-dir DIR (SVI_PROJECTS_DIR) lists DIR and its subfolders that hold a project made with
`python -m svi_studio new` in the Projects panel and opens them in place: the app edits and
renders into that folder. It opens folders of this machine, so it is refused unless the app is
served on a loopback address (127.0.0.1, localhost, ::1) without --share.
"""

from __future__ import annotations

import argparse
import os
import sys

from svi_studio.ui import build_app, launch_app, projects


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SVI Studio: shot-by-shot long video on Wan + Stable Video Infinity.")
    parser.add_argument("--engine", default=os.environ.get("SVI_ENGINE"),
                        help="engine preset: wan, tiny, draft, or a preset id under presets/models "
                             "(default: $SVI_ENGINE, else wan with a CUDA GPU and draft without)")
    parser.add_argument("--host", default=os.environ.get("SVI_HOST") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("SVI_PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860))
    parser.add_argument("--data-dir", default=os.environ.get("SVI_DATA_DIR") or "data",
                        help="where session projects are kept (default ./data)")
    parser.add_argument("--session-quota-gb", type=float, default=None,
                        help="disk each session may use, checked before a render, an upload and an export "
                             "(default $SVI_SESSION_QUOTA_GB, else 2; 0: no limit)")
    parser.add_argument("--session-ttl-hours", type=float, default=None,
                        help="remove sessions idle this long, never while rendering "
                             "(default $SVI_SESSION_TTL_HOURS, else 24; 0: keep forever)")
    parser.add_argument("--max-upload-mb", type=float, default=None,
                        help="largest file a user may upload (default $SVI_MAX_UPLOAD_MB, else the session quota)")
    parser.add_argument("--projects-dir", default=os.environ.get("SVI_PROJECTS_DIR") or None,
                        help="also list the project folders in this folder (made with `python -m svi_studio new`) "
                             "in the Projects panel and open them in place; local servers only "
                             "(default $SVI_PROJECTS_DIR)")
    parser.add_argument("--share", action="store_true", help="also publish a public gradio.live link (off by default)")
    options = parser.parse_args(argv)
    if options.projects_dir:
        try:
            projects.check_local(options.host, options.share)
            options.projects_dir = projects.check_projects_dir(options.projects_dir)
        except ValueError as error:
            parser.error(str(error))
    return options


options = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
demo = build_app(engine_name=options.engine, data_dir=options.data_dir, session_quota_gb=options.session_quota_gb,
                 session_ttl_hours=options.session_ttl_hours, max_upload_mb=options.max_upload_mb,
                 projects_dir=options.projects_dir)

if __name__ == "__main__":
    launch_app(demo, host=options.host, port=options.port, share=options.share)
