"""Model presets (presets/models/*.json) follow upstream SVI: film weights, guidance, settings that pass the gate."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from svi_studio.engines.presets import PRESET_DIR, PresetError, list_presets, load_preset
from svi_studio.settings import SettingsError, normalise_settings


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_default_passes_the_settings_gate(name):
    settings = load_preset(name).default_settings()
    again, notices = normalise_settings(settings)
    assert again == settings and notices == []


def test_film_preset_uses_the_latest_film_weights_and_keeps_the_older_selectable():
    latest, original = load_preset("wan2.1-svi-film"), load_preset("wan2.1-svi-film-original")
    assert [lora.file for lora in latest.loras] == ["version-1.0/svi-film-opt-10212025.safetensors"]
    assert [lora.file for lora in original.loras] == ["version-1.0/svi-film.safetensors"]
    # the same model and recipe otherwise
    assert replace(original, id=latest.id, label=latest.label, notes=latest.notes,
                   loras=latest.loras) == latest
    assert "wan2.1-svi-film-original" in latest.notes


def test_lightning_guidance_is_a_documented_choice():
    raw = json.loads((PRESET_DIR / "wan2.2-svi-pro-lightning.json").read_text())
    settings = load_preset("wan2.2-svi-pro-lightning").default_settings()
    assert settings.guidance == 1.5 and settings.guidance_2 is None  # CFG 1.5 on both experts
    for fragment in ("1.5", "CFG 1-2", "Guidance 1", "halves"):
        assert fragment in raw["_guidance"], fragment


def test_a_preset_with_the_guidance_trap_is_refused_at_render_time():
    preset = load_preset("wan2.2-svi-pro-lightning")
    trap = preset.default_settings().to_dict() | {"guidance": 1.0, "guidance_2": 3.0}
    with pytest.raises(SettingsError, match="silently ignored"):
        normalise_settings(trap)


def test_unknown_scheduler_in_a_preset_is_refused(tmp_path):
    data = json.loads((PRESET_DIR / "tiny.json").read_text()) | {"scheduler": "ddim"}
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match="scheduler must be one of"):
        load_preset(path)
