"""Engines: every way of turning a shot into a clip, behind one interface (base.Engine).

    load_engine("draft")               the CPU camera-move draft engine
    load_engine("tiny")                wan engine code on tiny random components (tests)
    load_engine("wan")                 the default GPU preset, wan2.2-svi-pro
    load_engine("wan2.1-svi-film")     any preset under presets/models/, or a path to one
"""

from __future__ import annotations

import logging
from typing import Any

from .base import Anchor, Cancelled, Clip, Engine, EngineError, OutOfMemory  # noqa: F401
from .request import ClipRequest  # noqa: F401

DEFAULT_GPU_PRESET = "wan2.2-svi-pro"


class _DropTorchvisionNotice(logging.Filter):
    """transformers announces its PIL fallback for CLIPImageProcessor on every import when
    torchvision is absent (it is, on CPU installs); the fallback is what we want."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_DropTorchvisionNotice())


def load_engine(name: str, device: str | None = None, **options: Any) -> Engine:
    """Build an engine by name or preset id. Options go to the engine's loader
    (wan: fuse_loras, extra_loras)."""
    if name == "draft":
        from .draft import DraftEngine

        return DraftEngine(**options)
    from .wan import load_wan_engine

    preset = DEFAULT_GPU_PRESET if name == "wan" else name
    return load_wan_engine(preset, device=device, **options)


def default_engine_name() -> str:
    """The wan preset when a CUDA GPU is present, else the CPU draft engine."""
    import torch

    return "wan" if torch.cuda.is_available() else "draft"
