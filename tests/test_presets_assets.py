"""Project presets (presets/projects/*.json) and the reference images they use (assets/*.png).

The images are drawn by tools/make_assets.py; the slow tests re-run it and check that it
is deterministic and that the committed PNGs are what it draws.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svi_studio.project.spec import PROJECT_PRESET_DIR, list_project_presets, load_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSET_DIR = REPO_ROOT / "assets"
MAKE_ASSETS = REPO_ROOT / "tools" / "make_assets.py"

#: the pictures tools/make_assets.py draws, with their sizes
ASSETS = {
    "cat_windowsill.png": (832, 480),
    "lighthouse_coast.png": (832, 480),
    "robot_portrait.png": (480, 832),
}
MAX_ASSET_BYTES = 400 * 1024
MIN_PIXEL_STD = 25.0  # a flat or nearly flat picture is a broken drawing

PRESETS = sorted(PROJECT_PRESET_DIR.glob("*.json"))


def test_the_presets_are_there():
    names = {p.stem for p in PRESETS}
    assert {"cat-adventure", "lighthouse-storm", "robot-workshop"} <= names


def test_cat_adventure_sorts_first():
    assert list_project_presets()[0].stem == "cat-adventure"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_with_shots_seeds_and_reference(path):
    spec = load_spec(path)
    assert spec.name.strip() and spec.description.strip() and spec.style_prompt.strip()
    assert len(spec.prompts) >= 2
    assert all(prompt.strip() for prompt in spec.prompts)
    assert all(isinstance(seed, int) for seed in spec.seeds), "every shot has its own seed"
    assert len(set(spec.seeds)) == len(spec.seeds), "seeds differ from shot to shot"
    assert spec.reference is not None and spec.reference.is_file()
    assert spec.reference.parent == ASSET_DIR
    image = spec.reference_image()
    assert image.mode == "RGB"
    assert image.width % 16 == 0 and image.height % 16 == 0, image.size


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_shot_names_a_camera_move(path):
    camera = pytest.importorskip("svi_studio.engines.camera")
    for number, prompt in enumerate(load_spec(path).prompts, start=1):
        move = camera.parse_camera(prompt)
        assert not move.fallback, f"shot {number} has no camera direction the draft engine can read"


def test_cat_adventure_is_the_three_shot_story():
    spec = load_spec("cat-adventure")
    assert spec.name == "Cat Adventure"
    assert spec.reference == (ASSET_DIR / "cat_windowsill.png").resolve()
    style = spec.style_prompt.lower()
    assert "pixar" in style and "orange tabby kitten" in style and "big curious" in style
    assert len(spec.prompts) == 3
    first, second, third = (p.lower() for p in spec.prompts)
    assert "windowsill" in first and "slowly pulling back" in first
    assert "jumps down" in second and "sidewalk" in second
    assert "golden retriever" in third and "garden" in third


def test_lighthouse_and_robot_shot_counts():
    assert len(load_spec("lighthouse-storm").prompts) == 4
    robot = load_spec("robot-workshop")
    assert len(robot.prompts) == 3
    image = robot.reference_image()
    assert image.height > image.width, "the robot example is the portrait one"


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_asset_size_and_content(name):
    path = ASSET_DIR / name
    assert path.is_file(), f"{name} missing: run python tools/make_assets.py"
    assert path.stat().st_size < MAX_ASSET_BYTES
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == ASSETS[name]
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > MIN_PIXEL_STD
    assert (pixels.reshape(-1, 3).std(axis=0) > 15).all(), "every channel varies"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5000, "soft gradients, not a few flat colours"


@pytest.fixture(scope="module")
def drawn_twice(tmp_path_factory):
    """tools/make_assets.py run twice, in parallel, into two fresh folders."""
    a, b = tmp_path_factory.mktemp("assets_a"), tmp_path_factory.mktemp("assets_b")
    procs = [
        subprocess.Popen(
            [sys.executable, str(MAKE_ASSETS), "--out", str(d)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in (a, b)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
    return a, b


@pytest.mark.slow
def test_make_assets_is_deterministic(drawn_twice):
    a, b = drawn_twice
    assert sorted(p.name for p in a.iterdir()) == sorted(ASSETS)
    for name in ASSETS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two runs"


@pytest.mark.slow
def test_committed_assets_match_the_script(drawn_twice):
    """The committed PNGs are what the script draws: byte for byte on the machine that made
    them; elsewhere (another CPU's float rounding, another zlib) the pixels agree to 1-2 levels."""
    fresh = drawn_twice[0]
    for name in ASSETS:
        if (fresh / name).read_bytes() == (ASSET_DIR / name).read_bytes():
            continue
        with Image.open(fresh / name) as x, Image.open(ASSET_DIR / name) as y:
            new = np.asarray(x.convert("RGB"), dtype=np.int16)
            old = np.asarray(y.convert("RGB"), dtype=np.int16)
        assert new.shape == old.shape
        diff = np.abs(new - old)
        assert diff.max() <= 3 and (diff > 0).mean() < 0.01, (
            f"{name} is out of date: run python tools/make_assets.py and commit assets/"
        )
