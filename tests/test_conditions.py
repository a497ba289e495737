"""Per-shot conditions: anchor image and end frame, through the engines, the Python API,
the CLI spec and commands, and gradio_client.

What a user relies on:
- a shot's own anchor image is what that shot is made from (SVI Pro: the anchor latent at
  the transformer input; draft: the pictures in its frames), and changing or clearing it
  re-renders that shot and the ones after it;
- a shot with an end frame arrives at it (draft: its last frame is the end image; SVI Pro:
  the end image's own latent sits on the last condition frame, masked, and is dropped
  before decoding and before the next shot takes its motion);
- a condition an engine cannot honour, or a file outside the project, is refused with a
  message; a setting or condition an engine ignores never makes a take stale.
"""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from svi_studio import cli
from svi_studio.director import Director
from svi_studio.engines import EngineError, load_engine
from svi_studio.engines.draft import DraftEngine
from svi_studio.engines.request import ClipRequest
from svi_studio.engines.wan import tiny_settings
from svi_studio.project.bundle import bundle_project
from svi_studio.project.model import ProjectError
from svi_studio.project.store import ProjectStore
from svi_studio.video_io import write_mp4
from test_svi_conditioning import assert_first_frame_mask, clip_inputs, split, transformer_inputs

SMALL = {"num_frames": 13, "width": 96, "height": 64, "fps": 8}  # draft shots: 13 frames, the last second = 8
PROMPTS = ["a kitten on a windowsill, static shot", "it jumps down, static shot", "it meets a dog, static shot"]
RED, BLUE = (220, 30, 30), (30, 40, 210)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def solid(colour, size=(96, 64)) -> Image.Image:
    return Image.new("RGB", size, colour)


def mean_colour(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(-1, 3).mean(axis=0)


@pytest.fixture
def draft():
    return DraftEngine(caption=False, tag=False)


@pytest.fixture
def film(tmp_path, draft, reference_image):
    return Director.create(tmp_path / "film", draft, reference=reference_image, prompts=PROMPTS, settings=SMALL)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("condition-images")
    paths = {"red": folder / "red.png", "blue": folder / "blue.png"}
    solid(RED).save(paths["red"])
    solid(BLUE).save(paths["blue"])
    return paths


def frames_of(director: Director, index: int) -> np.ndarray:
    shot = director.project.shots[index]
    return director.store.frames(shot.id, shot.selected_take)


def clips_made(events) -> list[int]:
    return [event.shot_index for event in events if event.kind == "clip"]


# == anchor image =================================================================================


def test_anchor_image_is_what_the_draft_shot_shows_and_changing_it_rerenders_from_there(film, images):
    list(film.render())
    reference_colour = mean_colour(frames_of(film, 1))
    notices = film.set_shot_media(1, "anchor_image", images["red"])
    assert film.project.shots[1].anchor_image.startswith("media/")
    assert [s.status for s in film.statuses()] == ["fresh", "stale", "fresh"]
    assert clips_made(film.render()) == [1, 2]  # that shot, then the one continuing from it
    shown = mean_colour(frames_of(film, 1))
    assert np.allclose(shown, RED, atol=3), (shown, reference_colour)  # a cut to the new picture
    assert not np.allclose(mean_colour(frames_of(film, 2)), RED, atol=20)  # shot 3 keeps the reference
    assert isinstance(notices, list)

    film.set_shot_media(1, "anchor_image", None)  # cleared: back to the reference, stale again
    assert film.project.shots[1].media == {}
    assert [s.status for s in film.statuses()][1] == "stale"
    assert clips_made(film.render()) == [1, 2]
    assert not np.allclose(mean_colour(frames_of(film, 1)), RED, atol=20)


def test_pro_anchor_image_is_the_anchor_latent_at_the_transformer_input(tmp_path, tiny_engine, reference_image,
                                                                        images):
    director = Director.create(tmp_path / "pro", tiny_engine, reference=reference_image, prompts=PROMPTS[:2],
                               settings={"num_frames": 9, "steps": 1})
    director.set_shot_media(1, "anchor_image", images["blue"])
    list(director.render())
    settings = director.shot_settings(director.project.shots[1])
    with transformer_inputs(tiny_engine.pipe) as calls:
        list(director.regenerate(1))
    from svi_studio.reference import load_reference

    picture, _ = load_reference(director.store.safe_path(director.project.shots[1].anchor_image))
    expected = tiny_engine.encode_anchor(picture, settings).tensors["anchor_latent"]
    reference = tiny_engine.encode_anchor(reference_image, settings).tensors["anchor_latent"]
    _, _, condition = split(calls[0]["hidden"])
    assert torch.equal(condition[:, :, :1], expected)
    assert not torch.equal(condition[:, :, :1], reference)


def test_pixel_mode_shows_the_shot_anchor_to_clip(reference_image):
    engine = load_engine("tiny-shot")
    settings = tiny_settings(engine, num_frames=9, steps=1)
    anchor_picture = solid(BLUE, (112, 64))
    anchor = engine.encode_anchor(anchor_picture, settings)
    first = engine.generate_clip(ClipRequest(engine.encode_anchor(reference_image, settings), None, "x", "", 1, settings))
    with clip_inputs(engine.pipe) as plain:
        engine.generate_clip(ClipRequest(anchor, first.motion_out, "x", "", 2, settings))
    with clip_inputs(engine.pipe) as anchored:
        engine.generate_clip(ClipRequest(anchor, first.motion_out, "x", "", 2, settings,
                                         {"anchor_image": anchor.image}))
    # Without the condition CLIP sees the previous clip's last frame; with it, the shot's anchor (all blue).
    assert not torch.equal(plain[0], anchored[0])
    pixels = anchored[0][0]
    assert pixels[2].mean() > pixels[0].mean() + 0.5  # blue channel well above red: the blue anchor


# == end frame ====================================================================================


def test_draft_shot_ends_on_its_end_image(film, images):
    film.set_shot_media(0, "end_image", images["red"])
    list(film.render())
    frames = frames_of(film, 0)
    end = np.asarray(solid(RED))
    assert np.abs(frames[-1].astype(int) - end).max() <= 6  # the mp4 round trip, nothing more
    assert np.abs(frames[0].astype(int) - end).mean() > 40  # it starts on the reference
    middle = np.abs(frames[-4].astype(int) - end).mean()  # on the way: a dissolve over the last second
    assert 5 < middle < np.abs(frames[0].astype(int) - end).mean()


@pytest.mark.parametrize("convention,last_mask", [("all", [1, 1, 1, 1]), ("last", [0, 0, 0, 1])])
def test_pro_end_frame_is_its_own_latent_on_the_last_condition_frame(tiny_engine, reference_image, convention,
                                                                     last_mask):
    settings = tiny_settings(tiny_engine, num_frames=21, steps=1, end_frame_mask=convention)
    anchor = tiny_engine.encode_anchor(reference_image, settings)
    end_picture = solid(BLUE, (112, 64))
    expected_end = tiny_engine.encode_anchor(end_picture, settings).tensors["anchor_latent"]  # a standalone encode
    with transformer_inputs(tiny_engine.pipe) as calls:
        clip = tiny_engine.generate_clip(ClipRequest(anchor, None, "x", "", 3, settings, {"end_image": end_picture}))
    for call in calls:
        _, mask, condition = split(call["hidden"])
        assert condition.shape[2] == 6
        assert torch.equal(condition[:, :, :1], anchor.tensors["anchor_latent"])
        assert torch.equal(condition[:, :, -1:], expected_end)
        assert torch.equal(condition[:, :, 1:-1], torch.zeros_like(condition[:, :, 1:-1]))
        assert mask[0, :, -1, 0, 0].tolist() == last_mask
        assert torch.equal(mask[:, :, 1:-1], torch.zeros_like(mask[:, :, 1:-1]))
        assert torch.equal(mask[:, :, 0], torch.ones_like(mask[:, :, 0]))
    # The locked end frame is dropped: 5 latent frames kept, 17 pixel frames, the tail is the kept one.
    assert clip.latents.shape[2] == 5 and clip.frames.shape[0] == 17
    assert torch.equal(clip.motion_out.tensors["motion_latents"], clip.latents[:, :, -3:])
    # The next shot continues from the last *kept* latent, not from the end image's.
    with transformer_inputs(tiny_engine.pipe) as calls:
        tiny_engine.generate_clip(ClipRequest(anchor, clip.motion_out, "x", "", 4, settings))
    _, mask, condition = split(calls[0]["hidden"])
    assert torch.equal(condition[:, :, 1:2], clip.latents[:, :, -1:])
    assert_first_frame_mask(mask)


def test_pro_end_frame_without_room_is_refused_with_a_message(tiny_engine, reference_image):
    settings = tiny_settings(tiny_engine, num_frames=9, steps=1, num_motion_latents=2)  # 3 latent frames
    anchor = tiny_engine.encode_anchor(reference_image, settings)
    first = tiny_engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, settings))
    with pytest.raises(EngineError, match="at least 13 frames per shot"):
        tiny_engine.generate_clip(ClipRequest(anchor, first.motion_out, "x", "", 2, settings,
                                              {"end_image": solid(RED, (112, 64))}))


def test_pixel_mode_end_frame_goes_through_diffusers_last_image(reference_image):
    engine = load_engine("tiny-shot")
    settings = tiny_settings(engine, num_frames=9, steps=1)
    anchor = engine.encode_anchor(reference_image, settings)
    with transformer_inputs(engine.pipe) as calls, clip_inputs(engine.pipe) as seen:
        clip = engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, settings, {"end_image": solid(RED, (112, 64))}))
    _, mask, _ = split(calls[0]["hidden"])
    assert mask[0, :, -1, 0, 0].tolist() == [0, 0, 0, 1]  # diffusers' first/last-frame mask
    assert seen[0].shape[0] == 1  # CLIP sees the first frame (the I2V-480P transformer takes one image)
    assert clip.frames.shape[0] == 9


# == the project: staleness, refusals, files ======================================================


def test_settings_and_conditions_an_engine_ignores_never_make_a_take_stale(film, images):
    list(film.render())
    film.update_settings(steps=7, guidance=3.0, end_frame_mask="last")  # the draft engine uses none of them
    assert [s.status for s in film.statuses()] == ["fresh"] * 3
    film.update_settings(fps=10)
    assert [s.status for s in film.statuses()][0] == "stale"


def test_a_condition_the_engine_cannot_honour_is_refused_by_name(film, images, tmp_path):
    class NoEndFrames(DraftEngine):
        accepts = frozenset({"anchor_image"})

    director = Director.open(film.root, NoEndFrames(caption=False, tag=False))
    with pytest.raises(EngineError, match="shot 1 has an end frame, which the 'draft' engine cannot use"):
        director.set_shot_media(0, "end_image", images["red"])
    assert director.project.shots[0].media == {}
    with pytest.raises(ProjectError, match="no condition 'mask'"):
        director.set_shot_media(0, "mask", images["red"])
    # A project that already has one (set with another engine) is refused at render time, with the same message.
    film.set_shot_media(0, "end_image", images["red"])
    reopened = Director.open(film.root, NoEndFrames(caption=False, tag=False))
    with pytest.raises(EngineError, match="cannot use"):
        list(reopened.render())


def test_a_pose_video_is_refused_by_engines_without_pose_conditioning(film, tmp_path):
    video = tmp_path / "pose.mp4"
    write_mp4(video, np.zeros((9, 64, 96, 3), dtype=np.uint8), 8)
    shot_engine = Director.open(film.root, load_engine("tiny-shot"))
    with pytest.raises(EngineError, match="shot 1 has a pose video, which the 'tiny-shot' engine cannot use"):
        shot_engine.set_shot_media(0, "pose_video", video)
    with pytest.raises(EngineError, match="cannot use a pose video"):
        shot_engine.set_film_media("pose_video", video)


def test_media_outside_the_project_is_refused(film, images):
    data = json.loads((film.root / "project.json").read_text())
    data["shots"][0]["media"] = {"anchor_image": "../../outside.png"}
    (film.root / "project.json").write_text(json.dumps(data))
    with pytest.raises(ProjectError, match="not a path inside the project folder"):  # refused on load, before any render
        Director.open(film.root, DraftEngine())


def test_schema_1_anchor_image_migrates_and_media_travel_in_bundles(film, images, tmp_path):
    film.set_shot_media(1, "anchor_image", images["red"])
    relative = film.project.shots[1].anchor_image
    data = json.loads((film.root / "project.json").read_text())
    data["schema_version"] = 1
    data["shots"][1].pop("media")
    data["shots"][1]["anchor_image"] = relative  # how schema 1 stored it
    (film.root / "project.json").write_text(json.dumps(data))
    store = ProjectStore.load(film.root)
    assert store.project.shots[1].media == {"anchor_image": relative}
    store.save()
    assert json.loads((film.root / "project.json").read_text())["shots"][1]["media"] == {"anchor_image": relative}
    with zipfile.ZipFile(bundle_project(film.root, tmp_path / "film.zip")) as archive:
        assert relative in archive.namelist()


# == CLI ==========================================================================================


def run_cli(capsys, *argv) -> tuple[int, list[dict]]:
    code = cli.main([*argv, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, lines


def test_cli_spec_names_conditions_relative_to_the_spec_file(tmp_path, images, reference_image, capsys):
    folder = tmp_path / "spec"
    folder.mkdir()
    reference_image.save(folder / "ref.png")
    solid(RED).save(folder / "red.png")
    solid(BLUE).save(folder / "blue.png")
    spec = {"name": "conditions", "reference": "ref.png", "settings": SMALL,
            "shots": [{"prompt": PROMPTS[0], "end_image": "blue.png"},
                      {"prompt": PROMPTS[1], "anchor_image": "red.png"}]}
    (folder / "film.json").write_text(json.dumps(spec))
    code, out = run_cli(capsys, "render", str(folder / "film.json"), "--engine", "draft",
                        "--project-dir", str(tmp_path / "p"))
    assert code == 0, out
    shots = out[-1]["shots"]
    assert set(shots[0]["media"]) == {"end_image"} and set(shots[1]["media"]) == {"anchor_image"}
    director = Director.open(tmp_path / "p", None)
    assert np.allclose(mean_colour(frames_of(director, 1)), RED, atol=25)  # the caption covers a little
    missing = dict(spec, shots=[{"prompt": "x", "end_image": "nope.png"}])
    (folder / "bad.json").write_text(json.dumps(missing))
    code, out = run_cli(capsys, "render", str(folder / "bad.json"), "--engine", "draft",
                        "--project-dir", str(tmp_path / "q"))
    assert code == 1 and "shot 1's end_image 'nope.png' not found" in out[-1]["error"]


def test_cli_set_shot_and_regen_set_and_clear_conditions(film, images, capsys):
    list(film.render())
    code, out = run_cli(capsys, "set-shot", str(film.root), "--shot", "2", "--anchor-image", str(images["red"]))
    assert code == 0 and [s["status"] for s in out[-1]["shots"]] == ["fresh", "stale", "fresh"]
    code, out = run_cli(capsys, "regen", str(film.root), "--shot", "3", "--end-image", str(images["blue"]),
                        "--engine", "draft")
    assert code == 0 and set(out[-1]["shots"][2]["media"]) == {"end_image"}
    code, out = run_cli(capsys, "set-shot", str(film.root), "--shot", "2", "--clear", "anchor_image")
    assert code == 0 and out[-1]["shots"][1]["media"] == {}
    code, out = run_cli(capsys, "set-shot", str(film.root), "--shot", "2", "--anchor-image", str(images["red"]) + ".gone")
    assert code == 1 and "shot 2's anchor image: file not found" in out[-1]["error"]


# == gradio_client ================================================================================


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from svi_studio.ui.app import build_app, launch_app

    demo = build_app("draft", tmp_path_factory.mktemp("conditions-data"), max_shots=4)
    port = free_port()
    launch_app(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_gradio_client_sets_renders_and_clears_conditions(server, images, reference_image, tmp_path):
    from gradio_client import Client, handle_file

    reference = tmp_path / "ref.png"
    reference_image.save(reference)
    client = Client(server, verbose=False)
    client.predict("conditions", api_name="/new_project")
    client.predict(handle_file(str(reference)), api_name="/set_reference")
    client.predict({"num_frames": 13, "fps": 8}, api_name="/update_settings")
    client.predict(PROMPTS[:2], api_name="/set_shots")
    status = client.predict(1, "anchor_image", handle_file(str(images["red"])), api_name="/set_shot_media")
    assert set(status["shots"][1]["media"]) == {"anchor_image"}
    assert "end_image" in status["conditions"] and "anchor_image" in status["conditions"]
    status = client.predict(0, "end_image", handle_file(str(images["blue"])), api_name="/set_shot_media")
    status = client.predict(api_name="/render")
    assert [s["status"] for s in status["shots"]] == ["fresh", "fresh"]
    status = client.predict(1, "anchor_image", None, api_name="/set_shot_media")
    assert status["shots"][1]["media"] == {} and status["shots"][1]["status"] == "stale"
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"pose video must be a video \(\.mp4"):  # a picture sent as a pose video
        client.predict(0, "pose_video", handle_file(str(images["red"])), api_name="/set_shot_media")


# == pose video (SVI-Dance) =======================================================================


def pose_clip(num_frames: int, width: int, height: int, column_of=lambda f: 4 * f) -> np.ndarray:
    """A 'skeleton' video: on black, a white vertical bar whose column moves with the frame index."""
    video = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for frame in range(num_frames):
        column = column_of(frame) % (width - 4)
        video[frame, :, column:column + 4] = 255
    return video


@pytest.fixture(scope="module")
def dance():
    return load_engine("tiny-dance")


def test_pose_frames_reach_the_transformer_input_and_change_the_output(dance, reference_image):
    from svi_studio.engines.dance import pose_frames_to_tensor

    settings = tiny_settings(dance, num_frames=13, steps=1)
    anchor = dance.encode_anchor(reference_image, settings)
    pose = pose_clip(13, 112, 64)
    patches = []
    handle = dance.pipe.transformer.patch_embedding.register_forward_hook(lambda m, a, out: patches.append(out.clone()))
    try:
        plain = dance.generate_clip(ClipRequest(anchor, None, "x", "", 5, settings))
        posed = dance.generate_clip(ClipRequest(anchor, None, "x", "", 5, settings, {"pose_video": pose}))
    finally:
        handle.remove()
    calls = len(patches) // 2
    # The tokens after the patch embedding differ by exactly the pose embedding of the video,
    # frame 0 repeated 3 more times, [0, 1] range: (1, D, T', H/16, W/16) = the patch grid.
    with torch.no_grad():
        expected = dance.pose.module(pose_frames_to_tensor(pose))
    assert expected.shape == patches[0].shape == (1, 24, 4, 4, 7)
    first_step_gap = patches[calls] - patches[0]  # same seed, same noise at step 1: only the pose differs
    torch.testing.assert_close(first_step_gap, expected, atol=1e-5, rtol=1e-4)
    assert not np.array_equal(plain.frames, posed.frames)


def write_dance_file(path: Path, transformer, extra: dict | None = None, pose_out: int = 24) -> dict:
    """A tiny SVI-Dance file: DiffSynth LoRA keys for the tiny transformer's block 0 + a dwpose_embedding."""
    from safetensors.torch import save_file

    from svi_studio.engines.dance import pose_embedding

    torch.manual_seed(3)
    inner = 24
    tensors = {}
    for name in ("self_attn.q", "self_attn.k", "ffn.0"):
        out_features = 32 if name == "ffn.0" else inner
        tensors[f"pipe.dit.blocks.0.{name}.lora_A.default.weight"] = torch.randn(4, inner) * 0.5
        tensors[f"pipe.dit.blocks.0.{name}.lora_B.default.weight"] = torch.randn(out_features, 4) * 0.5
    pose_state = {f"dwpose_embedding.{k}": v for k, v in pose_embedding(pose_out).state_dict().items()}
    tensors.update(pose_state)
    tensors.update(extra or {})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return pose_state


def test_a_dance_file_is_applied_key_by_key_or_refused_by_name(tmp_path, reference_image):
    from svi_studio.engines.dance import DanceFileError, load_dance_file
    from svi_studio.engines.loras import LoraSpec

    engine = load_engine("tiny-dance")
    settings = tiny_settings(engine, num_frames=9, steps=1)
    anchor = engine.encode_anchor(reference_image, settings)
    pose = pose_clip(9, 112, 64)
    before = engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, settings, {"pose_video": pose})).frames
    good = tmp_path / "svi-dance.safetensors"
    pose_state = write_dance_file(good, engine.pipe.transformer)
    load_dance_file(engine.loras, engine.pose, LoraSpec(name="svi_dance", path=str(good), role="svi"))
    for key, tensor in pose_state.items():  # every pose key is in the module
        assert torch.equal(engine.pose.module.state_dict()[key.removeprefix("dwpose_embedding.")], tensor)
    assert engine.loras.applied["svi_dance"] == 3  # every LoRA module of the file reached the transformer
    after = engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, settings.merged(
        {"lora_weights": {"svi_dance": 1.0}}), {"pose_video": pose})).frames
    assert not np.array_equal(before, after)

    cases = {
        "randomref_embedding_pose.0.weight": {"randomref_embedding_pose.0.weight": torch.zeros(2, 2)},
        "blocks.7": {"pipe.dit.blocks.7.self_attn.q.lora_A.default.weight": torch.zeros(4, 24),
                     "pipe.dit.blocks.7.self_attn.q.lora_B.default.weight": torch.zeros(24, 4)},
    }
    for name, extra in cases.items():
        bad = tmp_path / f"bad-{name[:10]}.safetensors"
        write_dance_file(bad, engine.pipe.transformer, extra)
        fresh = load_engine("tiny-dance")
        with pytest.raises(DanceFileError, match=name.replace(".", r"\.")):
            load_dance_file(fresh.loras, fresh.pose, LoraSpec(name="svi_dance", path=str(bad), role="svi"))
    wide = tmp_path / "wide.safetensors"
    write_dance_file(wide, engine.pipe.transformer, pose_out=5120)  # the 14B model's pose embedding
    fresh = load_engine("tiny-dance")
    with pytest.raises(DanceFileError, match=r"wrong shape .*dwpose_embedding\.12\.weight"):
        load_dance_file(fresh.loras, fresh.pose, LoraSpec(name="svi_dance", path=str(wide), role="svi"))


def test_draft_draws_the_pose_skeleton_and_a_film_pose_video_is_cut_by_frame_ranges(film, tmp_path):
    film.update_settings(num_frames=13, fps=8)
    video = tmp_path / "film-pose.mp4"
    write_mp4(video, pose_clip(40, 96, 64, column_of=lambda f: 2 * f), 8)  # the bar moves 2 px per film frame
    film.set_film_media("pose_video", video)
    list(film.render())

    def bar_column(frame: np.ndarray) -> int:
        white = (frame.min(axis=-1) > 200).sum(axis=0)
        return int(np.argmax(white))

    # Draft clips re-create one frame: shot k's frame 0 stands for film frame 12·k.
    for index, origin in enumerate([0, 12, 24]):
        frames = frames_of(film, index)
        for offset in (0, 6, 12):
            assert abs(bar_column(frames[offset]) - 2 * (origin + offset)) <= 1, (index, offset)
    # A shot's own pose video wins over the film's, resampled to its frames.
    own = tmp_path / "own.mp4"
    write_mp4(own, pose_clip(5, 96, 64, column_of=lambda f: 80), 8)
    film.set_shot_media(1, "pose_video", own)
    assert [s.status for s in film.statuses()][1] == "stale"
    list(film.render())
    assert all(abs(bar_column(frame) - 80) <= 1 for frame in frames_of(film, 1))


def test_dance_engine_renders_a_shot_with_its_pose_video(tmp_path, dance, reference_image):
    director = Director.create(tmp_path / "dance", dance, reference=reference_image, prompts=PROMPTS[:2],
                               settings={"num_frames": 9, "steps": 1})
    video = tmp_path / "pose.mp4"
    write_mp4(video, pose_clip(9, 112, 64), 8)
    director.set_shot_media(1, "pose_video", video)
    assert clips_made(director.render()) == [0, 1]
    assert director.store.take(director.project.shots[1].id, director.project.shots[1].selected_take).info["media"]


def test_cards_offer_the_conditions_the_engine_accepts_and_show_a_pose_video_set_by_id(tmp_path, reference_image):
    from svi_studio.ui import build_app
    from svi_studio.ui.presenter import card_key
    from svi_studio.ui.studio import Studio

    def card_inputs(engine: str) -> dict[str, bool]:
        demo = build_app(engine, tmp_path / engine)
        shown = {block.elem_id: block.visible for block in demo.blocks.values() if getattr(block, "elem_id", None)}
        return {role: shown[f"shot-1-{role}"] for role in ("anchor-image", "end-image", "pose-video")}

    assert card_inputs("tiny") == {"anchor-image": True, "end-image": True, "pose-video": False}  # SVI 2.0 Pro
    assert card_inputs("draft") == {"anchor-image": True, "end-image": True, "pose-video": True}

    studio = Studio(DraftEngine(), tmp_path / "app", max_shots=3)
    outcome = studio.new_project(None)
    session = outcome.session
    session.director.set_reference(reference_image)
    session.director.add_shot("dance")
    session.director.add_shot("dance on")
    second = session.director.project.shots[1].id
    video = tmp_path / "pose.mp4"
    write_mp4(video, pose_clip(9, 96, 64), 8)
    session.director.move_shot(1, 0)  # the card's shot id, not its position, decides which shot gets it
    studio.set_shot_media(session, second, "pose_video", str(video))
    assert set(session.director.project.shots[0].media) == {"pose_video"}
    assert session.director.project.shots[1].media == {}
    model = studio.presenter.model(session)
    assert model[card_key(0, "pose_video")] is not None and model[card_key(1, "pose_video")] is None
