"""The wan engine: Wan image-to-video + SVI LoRA through one in-process diffusers pipeline.

The same code runs the real models (presets wan2.2-svi-pro, wan2.1-svi-film, …) and
the tiny offline components (presets tiny, tiny-film, tiny-shot).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from ..motion import LATENT_TAIL, PIXEL_TAIL, MotionState
from ..settings import WAN_NEGATIVE_PROMPT, ClipSettings
from ..stitching import StitchRule, pixel_rule, svi_pro_rule
from .base import Anchor, Cancelled, CancelToken, Clip, Engine, EngineError, OutOfMemory, StepCallback, resize_to_fill
from .live_preview import PREVIEW_TENSOR_INPUTS, LivePreviewer
from .loras import LoraSpec, LoraStack
from .presets import ModelPreset, load_preset, resolve_lora_file
from .schedulers import make_scheduler
from .speed import Speed, SpeedOptions, apply_speed
from .svi_pipeline import LATENT_MODE, PIXEL_MODE, SVICondition, SVIWanImageToVideoPipeline

MAX_MOTION_LATENTS = 3  # the motion state keeps the last 3 latent frames; a clip uses the last m
MOTION_FRAMES = {"film": 5, "shot": 1}  # pixel-mode N per SVI mode
MAX_MOTION_FRAMES = 5


class WanEngine(Engine):
    """Engine over a `SVIWanImageToVideoPipeline` and its `LoraStack`."""

    name = "wan"
    label = "Wan + SVI"
    speed: Speed | None = None  # the speed switches applied at load (load_wan_engine)

    def __init__(self, pipe: SVIWanImageToVideoPipeline, preset: ModelPreset, loras: LoraStack | None = None):
        self.pipe = pipe
        self.preset = preset
        self.preset_id = preset.id
        self.label = preset.label
        self.max_area = preset.max_area
        self.svi_mode = preset.svi_mode
        if self.svi_mode != "pro":  # motion frames are an SVI 2.0 Pro (latent mode) setting
            self.ignored_settings = ("num_motion_latents",)
        self.loras = loras if loras is not None else LoraStack(pipe)
        if preset.is_tiny:
            self.name = "tiny"
        pipe.set_progress_bar_config(disable=True)
        self._flow_shift: float | None = None

    # -- interface ------------------------------------------------------------------------

    def default_settings(self) -> ClipSettings:
        return self.preset.default_settings()

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.speed is not None and not self.speed.options.is_off:
            described["speed"] = self.speed.describe()
        return described

    def stitch_rule(self, settings: ClipSettings) -> StitchRule:
        if self.svi_mode == "pro":
            return svi_pro_rule(settings.num_motion_latents)
        return pixel_rule(MOTION_FRAMES[self.svi_mode])

    @property
    def two_experts(self) -> bool:
        return getattr(self.pipe, "transformer_2", None) is not None

    @torch.no_grad()
    def encode_anchor(self, image: Image.Image, settings: ClipSettings) -> Anchor:
        """Resize/crop the reference to the clip size and VAE-encode it once.

        tensors["anchor_latent"]: (1, 16, 1, H/8, W/8), normalised.
        tensors["reference_frame"]: (3, H, W) in [-1, 1] (Shot-mode padding).
        """
        fitted = resize_to_fill(image, settings.width, settings.height)
        pixels = self.pipe.video_processor.preprocess(fitted, height=settings.height, width=settings.width)
        anchor_latent = self.pipe.encode_normalised(pixels.unsqueeze(2)).cpu()
        return Anchor(
            image=fitted, width=settings.width, height=settings.height,
            tensors={"anchor_latent": anchor_latent, "reference_frame": pixels[0].float().cpu()},
        )

    def generate_clip(
        self,
        anchor: Anchor,
        motion_in: MotionState | None,
        prompt: str,
        negative_prompt: str,
        seed: int,
        settings: ClipSettings,
        on_step: StepCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Clip:
        if (anchor.width, anchor.height) != (settings.width, settings.height):
            raise EngineError("the anchor was encoded at another resolution; encode the reference again.")
        # 1. LoRA weights and sampler for this clip.
        self.loras.set_weights(self.clip_lora_weights(settings))
        if self.speed is not None:
            self.speed.before_clip(settings.steps)
        self._set_flow_shift(settings.flow_shift)
        if self.two_experts:
            self.pipe.register_to_config(boundary_ratio=settings.boundary_ratio)

        # 2. The SVI condition from the anchor and the incoming motion state.
        condition, first_frame = self._condition(anchor, motion_in, settings)

        # 3. Denoise; the step callback reports progress (and live previews, if asked) and honours cancel.
        previewer = LivePreviewer.for_callback(on_step)

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, settings.steps)
            if previewer is not None:
                previewer.wan_step(pipe, step + 1, settings.steps, callback_kwargs)
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            return {}

        generator = torch.Generator("cpu").manual_seed(int(seed))
        kwargs: dict[str, Any] = {}
        if self.two_experts:
            kwargs["guidance_scale_2"] = settings.guidance if settings.guidance_2 is None else settings.guidance_2
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        try:
            latents = self.pipe(
                image=first_frame,
                prompt=prompt,
                negative_prompt=negative_prompt or WAN_NEGATIVE_PROMPT,
                height=settings.height,
                width=settings.width,
                num_frames=settings.num_frames,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                generator=generator,
                output_type="latent",
                callback_on_step_end=step_end,
                callback_on_step_end_tensor_inputs=PREVIEW_TENSOR_INPUTS,
                svi_condition=condition,
                **kwargs,
            ).frames  # (1, 16, T', h, w), denoised and normalised
            # 4. Decode for display; the latents themselves are what the next clip consumes.
            frames = self.pipe.decode_normalised(latents)[0].numpy()
        except torch.OutOfMemoryError as error:
            raise OutOfMemory(
                f"the GPU ran out of memory rendering {settings.width}x{settings.height}, {settings.num_frames} frames "
                f"({str(error).splitlines()[0][:120]}). Turn on model CPU offload (or group offload on 24 GB cards), or lower the resolution."
            ) from None
        latents = latents.detach().float().cpu()

        # 5. The outgoing motion state.
        if self.svi_mode == "pro":
            motion_out = MotionState(
                LATENT_TAIL, {"motion_latents": latents[:, :, -MAX_MOTION_LATENTS:].clone()},
                {"height": str(settings.height), "width": str(settings.width)},
            )
        else:
            tail = torch.from_numpy(frames[-MAX_MOTION_FRAMES:].copy())
            motion_out = MotionState(PIXEL_TAIL, {"motion_frames": tail},
                                     {"height": str(settings.height), "width": str(settings.width)})
        info = {"svi_mode": self.svi_mode, "loras": self.loras.describe()}
        return Clip(frames=frames, latents=latents, motion_out=motion_out, info=info)

    # -- helpers --------------------------------------------------------------------------

    def clip_lora_weights(self, settings: ClipSettings) -> dict[str, float]:
        """The weight of every loaded adapter for this clip.

        Adapters the clip's settings name get that weight; the preset's own (SVI, speed) get
        their default; a style LoRA the clip does not name gets 0 — the engine is shared by every
        session of the app, and one user's style LoRA must not leak into another user's film.
        """
        named = dict(settings.lora_weights)
        return {name: named.get(name, spec.weight if spec.role != "style" else 0.0)
                for name, spec in self.loras.specs.items()} | named

    def _condition(self, anchor: Anchor, motion_in: MotionState | None, settings: ClipSettings):
        """(SVICondition, the PIL frame the pipeline — and CLIP, on Wan2.1 — sees first)."""
        if self.svi_mode == "pro":
            motion = None
            if motion_in is not None:
                if motion_in.kind != LATENT_TAIL:
                    raise EngineError(f"this engine continues from a latent tail, got a {motion_in.kind!r} motion state "
                                      "(made by another engine); re-render the shot before this one.")
                motion = motion_in.tensors["motion_latents"][:, :, -settings.num_motion_latents:]
            condition = SVICondition(LATENT_MODE, anchor_latent=anchor.tensors["anchor_latent"], motion_latents=motion)
            return condition, anchor.image

        count = MOTION_FRAMES[self.svi_mode]
        reference = anchor.tensors["reference_frame"]  # (3, H, W) in [-1, 1]
        if motion_in is None:
            motion = reference.unsqueeze(0)  # the first clip is conditioned on the reference alone
        else:
            if motion_in.kind != PIXEL_TAIL:
                raise EngineError(f"this engine continues from decoded frames, got a {motion_in.kind!r} motion state; "
                                  "re-render the shot before this one.")
            tail = motion_in.tensors["motion_frames"][-count:]  # (N, H, W, 3) uint8
            motion = tail.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        padding = reference if self.svi_mode == "shot" else None
        condition = SVICondition(PIXEL_MODE, motion_frames=motion, padding_frame=padding)
        first = ((motion[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        return condition, Image.fromarray(first)

    def _set_flow_shift(self, flow_shift: float) -> None:
        if self._flow_shift == flow_shift:
            return
        kind = "euler" if isinstance(self.pipe.scheduler, FlowMatchEulerDiscreteScheduler) else "unipc"
        self.pipe.scheduler = make_scheduler(kind, self.pipe.scheduler.config, flow_shift)
        self._flow_shift = flow_shift


# -- loading ----------------------------------------------------------------------------------

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def load_pipeline(preset: ModelPreset, device: str | None = None) -> SVIWanImageToVideoPipeline:
    """Build the pipeline a preset names: tiny components offline, or from the hub / a local folder."""
    settings = preset.default_settings()
    if preset.is_tiny:
        from .tiny import tiny_pipeline

        pipe = tiny_pipeline(preset.base_model.split(":", 1)[1], scheduler=preset.scheduler,
                             flow_shift=settings.flow_shift, boundary_ratio=settings.boundary_ratio)
        return pipe.to(device or "cpu")

    from diffusers import AutoencoderKLWan

    dtype = DTYPES[preset.dtype]
    # The VAE and CLIP stay in float32, as the Wan authors and diffusers' docs recommend. CLIP has to be
    # loaded explicitly: from_pretrained(dtype=bf16) would cast it along with the transformer.
    components = {"vae": AutoencoderKLWan.from_pretrained(preset.base_model, subfolder="vae", dtype=torch.float32)}
    index = SVIWanImageToVideoPipeline.load_config(preset.base_model)
    if (index.get("image_encoder") or [None, None])[1]:  # Wan2.1 I2V; Wan2.2 A14B has none
        from transformers import CLIPVisionModel

        components["image_encoder"] = CLIPVisionModel.from_pretrained(
            preset.base_model, subfolder="image_encoder", dtype=torch.float32)
    pipe = SVIWanImageToVideoPipeline.from_pretrained(preset.base_model, dtype=dtype, **components)
    pipe.scheduler = make_scheduler(preset.scheduler, pipe.scheduler.config, settings.flow_shift)
    apply_offload(pipe, preset.offload, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return pipe


def apply_offload(pipe, policy: str, device: str) -> None:
    """none: everything on `device`; model: diffusers' model CPU offload; group: leaf-level group
    offload with CUDA streams (fits 24 GB cards); sequential: diffusers' sequential offload (slowest)."""
    if device == "cpu" or policy == "none":
        pipe.to(device)
    elif policy == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif policy == "group":
        pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=True)
    elif policy == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise ValueError(f"unknown offload policy {policy!r}")


def load_wan_engine(preset: ModelPreset | str, device: str | None = None, fuse_loras: bool = False,
                    extra_loras: list[LoraSpec] | None = None, speed: dict | None = None) -> WanEngine:
    """Load the pipeline and the preset's LoRA stack (plus `extra_loras`, e.g. a user's style LoRA), then
    apply the preset's speed switches with `speed` (e.g. CLI flags) over them (see engines/speed.py)."""
    if isinstance(preset, str):
        preset = load_preset(preset)
    options = SpeedOptions.from_dict(preset.speed).merged({**(speed or {}), **({"fuse_loras": True} if fuse_loras else {})})
    pipe = load_pipeline(preset, device)
    stack = LoraStack(pipe, fuse=options.fuse_loras)
    for source in preset.loras:
        stack.add(LoraSpec(name=source.name, path=resolve_lora_file(source), target=source.target,
                           weight=source.weight, role=source.role))
    for spec in extra_loras or []:
        stack.add(spec)
    engine = WanEngine(pipe, preset, stack)
    engine.speed = apply_speed(pipe, options, stack, steps=preset.default_settings().steps)
    return engine


def tiny_settings(engine: WanEngine, **changes: Any) -> ClipSettings:
    """The tiny preset's settings with `changes` (a convenience for tests and benches)."""
    return replace(engine.default_settings(), **changes)
