"""The app's "Speed" panel: which speed switches the loaded wan engine runs with, and what each does.

Read-only by design: the switches are applied when the engine loads (quantization and compile change
the model itself) and one engine serves every session of the app, so one visitor must not change
another's renders. They are set in the model preset's `"speed"` object, or per render with the CLI
flags (`python -m svi_studio render --cache fbc:0.05 …`); see engines/speed.py.
"""

from __future__ import annotations

import html

import gradio as gr

from ..engines.speed import SWITCHES

CLI_FLAGS = {"attention": "--attention BACKEND", "compile": "--compile [BACKEND]", "cache": "--cache SPEC",
             "quantize": "--quantize int8|fp8", "vae_tiling": "--vae-tiling", "fuse_loras": "--fuse-loras"}


def speed_table(engine) -> str:
    """Markdown: one row per switch — its state on this engine, its expected effect, how to set it."""
    options = engine.speed.options.describe()
    rows = ["| Switch | Now | Expected effect | Set with |", "|---|---|---|---|"]
    for name, (values, effect) in SWITCHES.items():
        state = options.get(name)
        shown = {None: "off", False: "off", True: "on"}.get(state, str(state)) if name != "attention" else str(state)
        rows.append(f"| {name} | **{html.escape(shown)}** | {html.escape(effect)} | "
                    f"preset `speed.{name}`, CLI `{CLI_FLAGS[name]}` |")
    return "\n".join(rows)


def speed_panel(engine) -> None:
    """Add the Speed accordion to the Blocks being built (wan engines only; nothing for the draft engine)."""
    if getattr(engine, "speed", None) is None:
        return
    with gr.Accordion("Speed", open=False, elem_id="speed"):
        gr.Markdown("Speed switches of this engine, applied when it loaded and shared by every session. Change them in "
                    f"the model preset (`{html.escape(engine.preset_id)}`, its `speed` object) and restart the app, or "
                    "per render with the CLI flags. Measured effects: `python bench/gpu_clip.py --matrix`.",
                    elem_id="speed-intro")
        gr.Markdown(speed_table(engine), elem_id="speed-table")
