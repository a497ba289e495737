"""Shot status, derived from the project (never stored by hand).

missing    no selected take
rendering  the director is rendering it now
stale      its selected take consumed motion from a take that is no longer the upstream
           shot's selected take (or the upstream has none), or its recipe — prompts,
           seed, settings, engine, anchor — changed since
broken     its selected take's files are missing or damaged
fresh      otherwise
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MISSING, RENDERING, STALE, FRESH, BROKEN = "missing", "rendering", "stale", "fresh", "broken"


def recipe_fingerprint(prompt: str, negative_prompt: str, seed: int, settings: dict[str, Any],
                       engine_preset: str, anchor_fingerprint: str | None) -> str:
    """sha256 (first 16 hex) of everything that determines a clip besides its incoming motion."""
    payload = json.dumps(
        {"prompt": prompt, "negative": negative_prompt, "seed": int(seed), "settings": settings,
         "engine": engine_preset, "anchor": anchor_fingerprint},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def recipe_settings(settings: dict[str, Any], ignored: tuple[str, ...] | list[str],
                    defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings that go into a recipe: those the engine ignores are pinned to the engine's
    defaults, so changing one never makes a take stale. (Pinned rather than left out, so a
    take rendered before this rule, with those settings at their defaults, keeps its recipe.)"""
    return {key: defaults.get(key) if key in ignored else value for key, value in settings.items()}


def stale_reason(take, is_first: bool, upstream_take: str | None, current_recipe: str) -> str | None:
    """Why a selected take is stale, or None if it is fresh.

    upstream_take: the previous shot's selected take id (None if it has none or is_first).
    """
    if is_first and take.upstream_take is not None:
        return "it now opens the film but was rendered to continue another shot"
    if not is_first and upstream_take is None:
        return "the shot before it has no take"
    if not is_first and take.upstream_take != upstream_take:
        return "the shot before it has a different take now"
    if take.recipe != current_recipe:
        return "its prompt, seed or settings changed since it was rendered"
    return None
