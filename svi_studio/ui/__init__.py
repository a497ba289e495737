"""The SVI Studio web app (Gradio): `build_app()` builds it, `launch_app()` serves it."""

from .app import build_app, launch_app, launch_options  # noqa: F401
