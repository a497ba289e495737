"""`SVIWanImageToVideoPipeline`: diffusers' Wan I2V pipeline with SVI conditioning.

Only `prepare_latents` changes: instead of VAE-encoding [image, zeros…] it builds
the condition the SVI LoRAs were trained with. Everything else — text encoding,
the two-expert denoising loop, schedulers, offload, LoRA loading — is diffusers'.

SVI 2.0 Pro (latent mode, Wan2.2-I2V-A14B):
    condition latent = [anchor_latent, motion_latents, zeros]  along latent time
    anchor_latent:  (1, 16, 1, h, w)  normalised VAE latent of the reference
    motion_latents: (1, 16, m, h, w)  last m latent frames of the previous clip's
                    denoised, normalised latents (absent for the first clip)
    Nothing is decoded and re-encoded; padding is zeros in latent space.

SVI Film / Shot (pixel mode, Wan2.1-I2V-14B-480P with CLIP):
    condition video = [motion_frames, padding] (num_frames pixel frames) → VAE → normalise
    motion_frames:  (N, 3, H, W) in [-1, 1], the previous clip's last N decoded frames
                    (the reference image for the first clip)
    padding:        zeros (Film) or the reference repeated (Shot)

In both modes the mask is 1 on latent frame 0 (all 4 mask channels) and 0 elsewhere,
so the transformer input is cat([noise (16), mask (4), condition (16)]) = 36 channels.

End frame (first/last-frame layout, DESIGN.md "Per-shot conditions"):
    latent mode: end_latent (1, 16, 1, h, w), the end image VAE-encoded on its own and
                 normalised, replaces the last latent frame of the condition; the mask
                 there is [1, 1, 1, 1] (end_mask "all") or [0, 0, 0, 1] ("last"). The
                 engine drops that locked frame from the denoised latents.
    pixel mode:  diffusers' own `last_image` argument: the end image is the last frame of
                 the condition video, the mask's last latent frame is [0, 0, 0, 1] (as in
                 diffusers). CLIP sees the first frame only: diffusers would encode
                 [first, end] for CLIP, which only Wan2.1-FLF2V's transformer (with its
                 image position embedding) can take; the I2V-14B-480P model SVI is
                 trained on takes one image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import WanImageToVideoPipeline
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

from .schedulers import WanFlowMatchEulerScheduler  # noqa: F401  (its home was here)

LATENT_MODE = "latent"
PIXEL_MODE = "pixel"


@dataclass
class SVICondition:
    """What the next clip is conditioned on (see the module docstring for shapes)."""

    mode: str
    anchor_latent: torch.Tensor | None = None
    motion_latents: torch.Tensor | None = None
    motion_frames: torch.Tensor | None = None
    padding_frame: torch.Tensor | None = None  # (3, H, W) in [-1, 1]; None pads with zeros
    end_latent: torch.Tensor | None = None  # (1, 16, 1, h, w) normalised; latent mode's end frame
    end_mask: str = "all"  # "all": mask [1,1,1,1] on the end frame; "last": [0,0,0,1]


class SVIWanImageToVideoPipeline(WanImageToVideoPipeline):
    """WanImageToVideoPipeline whose condition latent follows the SVI recipes."""

    _svi_condition: SVICondition | None = None
    # the step callback may also ask for this step's guided flow prediction (live preview's x0)
    _callback_tensor_inputs = [*WanImageToVideoPipeline._callback_tensor_inputs, "noise_pred"]

    def __call__(self, *args, svi_condition: SVICondition | None = None, **kwargs):
        """Same arguments as WanImageToVideoPipeline, plus `svi_condition`.

        Without `svi_condition` the pipeline behaves exactly like diffusers' own.
        """
        self._svi_condition = svi_condition
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self._svi_condition = None

    def encode_image(self, image, device=None):
        """CLIP hidden states of the conditioning image. Given [first, end] (diffusers' last_image
        path) on a transformer without FLF2V's image position embedding, only the first is encoded."""
        embedder = getattr(getattr(self.transformer, "condition_embedder", None), "image_embedder", None)
        if isinstance(image, (list, tuple)) and len(image) == 2 and getattr(embedder, "pos_embed", None) is None:
            image = image[0]
        return super().encode_image(image, device)

    # -- latents ---------------------------------------------------------------------------

    def latents_mean_std(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std) of the VAE latent space, shaped (1, z_dim, 1, 1, 1)."""
        z_dim = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(device, dtype)
        std = torch.tensor(self.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(device, dtype)
        return mean, std

    @torch.no_grad()
    def encode_normalised(self, video: torch.Tensor) -> torch.Tensor:
        """VAE-encode a pixel video (B, 3, T, H, W) in [-1, 1] → normalised latents (B, 16, T', H/8, W/8), float32.

        Inputs go to the VAE's execution device, not `vae.device`: under sequential CPU offload the
        weights sit on the meta device, under model/group offload on the CPU.
        """
        video = video.to(device=get_module_execution_device(self.vae), dtype=self.vae.dtype)
        latent = self.vae.encode(video).latent_dist.mode()
        mean, std = self.latents_mean_std(latent.device, torch.float32)
        return (latent.float() - mean) / std

    @torch.no_grad()
    def decode_normalised(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, 16, T', h, w) → uint8 frames (B, T, H, W, 3)."""
        device = get_module_execution_device(self.vae)
        mean, std = self.latents_mean_std(device, self.vae.dtype)
        latents = latents.to(device=device, dtype=self.vae.dtype) * std + mean
        video = self.vae.decode(latents, return_dict=False)[0]  # (B, 3, T, H, W) in [-1, 1]
        video = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu()

    def first_frame_mask(self, batch_size, num_latent_frames, latent_height, latent_width, device, dtype):
        """Mask (B, 4, T', h, w): 1 on latent frame 0 (the 4 pixel frames it stands for), 0 elsewhere."""
        mask = torch.zeros(
            batch_size, self.vae_scale_factor_temporal, num_latent_frames, latent_height, latent_width,
            device=device, dtype=dtype,
        )
        mask[:, :, 0] = 1
        return mask

    def prepare_latents(
        self,
        image,
        batch_size,
        num_channels_latents=16,
        height=480,
        width=832,
        num_frames=81,
        dtype=None,
        device=None,
        generator=None,
        latents=None,
        last_image=None,
    ):
        condition = self._svi_condition
        if condition is None:
            return super().prepare_latents(
                image, batch_size, num_channels_latents, height, width, num_frames,
                dtype, device, generator, latents, last_image,
            )
        if self.config.expand_timesteps:
            raise ValueError("SVI conditioning does not support Wan2.2 TI2V-5B.")
        if last_image is not None and condition.mode != PIXEL_MODE:
            raise ValueError("in latent mode the end frame comes as SVICondition.end_latent, not last_image.")

        # 1. Noise, drawn exactly as diffusers draws it (so seeds mean the same thing).
        num_latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        latent_height = height // self.vae_scale_factor_spatial
        latent_width = width // self.vae_scale_factor_spatial
        shape = (batch_size, num_channels_latents, num_latent_frames, latent_height, latent_width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)

        # 2. Condition latent, per SVI mode.
        if condition.mode == LATENT_MODE:
            condition_latent = self._latent_mode_condition(condition, shape, device, dtype)
        elif condition.mode == PIXEL_MODE:
            condition_latent = self._pixel_mode_condition(condition, num_frames, height, width, last_image).to(device, dtype)
        else:
            raise ValueError(f"unknown SVI mode {condition.mode!r}")
        condition_latent = condition_latent.repeat(batch_size, 1, 1, 1, 1)

        # 3. Mask, then y = cat([mask (4), condition (16)]).
        mask = self.first_frame_mask(batch_size, num_latent_frames, latent_height, latent_width, device, dtype)
        if condition.mode == LATENT_MODE and condition.end_latent is not None:
            if condition.end_mask == "all":
                mask[:, :, -1] = 1
            else:
                mask[:, -1, -1] = 1
        elif last_image is not None:
            mask[:, -1, -1] = 1  # diffusers' first/last-frame mask: [0, 0, 0, 1] on the last latent frame
        return latents, torch.cat([mask, condition_latent], dim=1)

    def _latent_mode_condition(self, condition: SVICondition, shape, device, dtype) -> torch.Tensor:
        """[anchor, motion tail, zeros] along latent time; (1, 16, T', h, w)."""
        _, channels, num_latent_frames, latent_height, latent_width = shape
        anchor = condition.anchor_latent
        if anchor is None or tuple(anchor.shape[-2:]) != (latent_height, latent_width):
            raise ValueError(
                f"anchor latent of shape {None if anchor is None else tuple(anchor.shape)} does not fit "
                f"a {latent_height}x{latent_width} latent; re-encode the reference at this resolution."
            )
        parts = [anchor[:, :, :1].to(device, dtype)]
        if condition.motion_latents is not None:
            motion = condition.motion_latents.to(device, dtype)
            if tuple(motion.shape[-2:]) != (latent_height, latent_width):
                raise ValueError("motion latents come from a clip of another resolution.")
            parts.append(motion)
        end = []
        if condition.end_latent is not None:
            end = [condition.end_latent[:, :, :1].to(device, dtype)]
            if tuple(end[0].shape[-2:]) != (latent_height, latent_width):
                raise ValueError("the end frame latent was encoded at another resolution.")
        used = sum(part.shape[2] for part in parts + end)
        if used > num_latent_frames:
            raise ValueError(f"{used} conditioning latent frames do not fit a clip of {num_latent_frames}.")
        parts.append(torch.zeros(1, channels, num_latent_frames - used, latent_height, latent_width, device=device, dtype=dtype))
        return torch.cat(parts + end, dim=2)

    def _pixel_mode_condition(self, condition: SVICondition, num_frames, height, width, last_image=None) -> torch.Tensor:
        """VAE([motion frames, padding(, last_image)]) normalised; (1, 16, T', h, w).
        last_image: (1, 3, H, W) in [-1, 1] (diffusers preprocesses it), the end frame."""
        motion = condition.motion_frames.float()  # (N, 3, H, W)
        if tuple(motion.shape[-2:]) != (height, width):
            raise ValueError("motion frames come from a clip of another resolution.")
        end = [] if last_image is None else [last_image[:1].float().to(motion.device)]
        pad_count = num_frames - motion.shape[0] - len(end)
        if condition.padding_frame is None:
            padding = motion.new_zeros(pad_count, 3, height, width)
        else:
            padding = condition.padding_frame.float().unsqueeze(0).expand(pad_count, -1, -1, -1)
        video = torch.cat([motion, padding, *end], dim=0).permute(1, 0, 2, 3).unsqueeze(0)  # (1, 3, T, H, W)
        return self.encode_normalised(video)
