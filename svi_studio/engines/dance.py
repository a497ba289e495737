"""SVI-Dance's pose conditioning, composed onto diffusers' WanTransformer3DModel.

SVI-Dance (SVI 1.0 on Wan2.1-I2V-14B-480P, file `version-1.0/svi-dance.safetensors`) adds
one module to the transformer, `dwpose_embedding`: seven Conv3d layers with SiLU between
them that turn a rendered pose video into one token per patch, added to the tokens right
after the patch embedding (DESIGN.md "SVI-Dance"):

    pose video (1, 3, T + 3, H, W) in [0, 1]   frame 0 repeated 3 more times (81 → 84 frames)
      → Conv3d 3→16 k3 s1, 16→16 k3 s1 ×2, 16→16 k3 s(1,2,2), 16→16 k3 s(2,2,2) ×2,
        16→D k(1,2,2) s(1,2,2) p0        (D = 5120 on the 14B model; the tiny model's inner dim)
      → (1, D, T', H/16, W/16)           the patch grid, T' = (T - 1) / 4 + 1

`PoseConditioning` holds the module and a forward hook on `transformer.patch_embedding`
that adds the pose tokens of the current clip (set with `use(pose)` for one clip). Both the
conditional and the unconditional pass get them, as SVI does. The conv stack runs in fp32.

The dance file holds the LoRA keys (`pipe.dit.blocks.N.…lora_A.default.weight`) and the full
`dwpose_embedding.{0..12}.{weight,bias}`. `split_dance_file` sorts every key into one of the
two; any other key is refused by name (UniAnimate-DiT's `randomref_embedding_pose` is not
used by SVI-Dance).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .base import EngineError

POSE_PREFIX = "dwpose_embedding."
POSE_CHANNELS = 16
_LORA_KEY = re.compile(r"\.lora_(A|B|down|up)(\.default)?\.weight$|\.alpha$|\.diff_b$")


class DanceFileError(EngineError):
    """A dance weights file with keys that neither load into the pose module nor are LoRA weights."""


def pose_embedding(out_channels: int) -> nn.Sequential:
    """SVI-Dance's `dwpose_embedding` (state-dict indices 0, 2, …, 12 are the convolutions)."""
    c = POSE_CHANNELS
    return nn.Sequential(
        nn.Conv3d(3, c, 3, stride=1, padding=1), nn.SiLU(),
        nn.Conv3d(c, c, 3, stride=1, padding=1), nn.SiLU(),
        nn.Conv3d(c, c, 3, stride=1, padding=1), nn.SiLU(),
        nn.Conv3d(c, c, 3, stride=(1, 2, 2), padding=1), nn.SiLU(),
        nn.Conv3d(c, c, 3, stride=(2, 2, 2), padding=1), nn.SiLU(),
        nn.Conv3d(c, c, 3, stride=(2, 2, 2), padding=1), nn.SiLU(),
        nn.Conv3d(c, out_channels, (1, 2, 2), stride=(1, 2, 2), padding=0),
    )


def split_dance_file(state_dict: dict[str, torch.Tensor], label: str) -> tuple[dict, dict]:
    """(LoRA keys, pose-module keys without the prefix) of a dance file; DanceFileError names any other key."""
    lora, pose, refused = {}, {}, []
    for key, tensor in state_dict.items():
        if key.startswith(POSE_PREFIX):
            pose[key[len(POSE_PREFIX):]] = tensor
        elif _LORA_KEY.search(key):
            lora[key] = tensor
        else:
            refused.append(key)
    if refused:
        raise DanceFileError(f"{label}: {len(refused)} key(s) are neither SVI-Dance's pose embedding nor LoRA weights "
                             f"and would be ignored: {', '.join(sorted(refused)[:6])}"
                             f"{' …' if len(refused) > 6 else ''}. Is it an UniAnimate-DiT or other file?")
    return lora, pose


def pose_frames_to_tensor(pose: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → (1, 3, T + 3, H, W) float32 in [0, 1], frame 0 repeated 3 more times."""
    video = torch.from_numpy(np.ascontiguousarray(pose)).permute(3, 0, 1, 2).float() / 255.0
    video = torch.cat([video[:, :1].repeat(1, 3, 1, 1), video], dim=1)
    return video.unsqueeze(0)


class PoseConditioning:
    """The pose module of one transformer, and the hook that adds its tokens."""

    def __init__(self, transformer: nn.Module, module: nn.Sequential | None = None):
        inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        self.transformer = transformer
        self.module = (module if module is not None else pose_embedding(inner)).float().eval()
        self._tokens: torch.Tensor | None = None
        self._handle = transformer.patch_embedding.register_forward_hook(self._add)

    def load(self, pose_state: dict[str, torch.Tensor], label: str) -> None:
        """Load `dwpose_embedding` weights (prefix removed); every key must fit, by name and shape."""
        expected = self.module.state_dict()
        missing = sorted(set(expected) - set(pose_state))
        unknown = sorted(set(pose_state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(pose_state) if expected[k].shape != pose_state[k].shape)
        if missing or unknown or wrong:
            raise DanceFileError(
                f"{label}: the pose embedding does not fit this model ("
                + "; ".join(part for part in (
                    f"missing {', '.join(POSE_PREFIX + k for k in missing)}" if missing else "",
                    f"unknown {', '.join(POSE_PREFIX + k for k in unknown)}" if unknown else "",
                    f"wrong shape {', '.join(POSE_PREFIX + k for k in wrong)}" if wrong else "") if part)
                + "). Was the file made for another model size?")
        self.module.load_state_dict({k: v.float() for k, v in pose_state.items()})

    @torch.no_grad()
    def tokens(self, pose: np.ndarray) -> torch.Tensor:
        """Pose tokens (1, D, T', H/16, W/16) of a pose video uint8 (T, H, W, 3), in fp32."""
        device = next(self.module.parameters()).device
        return self.module(pose_frames_to_tensor(pose).to(device))

    @contextmanager
    def use(self, pose: np.ndarray | None) -> Iterator[None]:
        """Add this pose video's tokens to every transformer call inside the block (None: no pose)."""
        self._tokens = None if pose is None else self.tokens(pose)
        try:
            yield
        finally:
            self._tokens = None

    def _add(self, module, args, output):
        if self._tokens is None:
            return output
        if tuple(self._tokens.shape[2:]) != tuple(output.shape[2:]):
            raise EngineError(f"the pose video gives a {tuple(self._tokens.shape[2:])} grid, the clip a "
                              f"{tuple(output.shape[2:])} one; render the pose at the clip's size and frame count.")
        return output + self._tokens.to(device=output.device, dtype=output.dtype)

    def remove(self) -> None:
        self._handle.remove()


def load_dance_file(stack, pose: PoseConditioning, spec) -> None:
    """Load an SVI-Dance file: its pose embedding into `pose`, its LoRA weights into `stack`
    as adapter `spec.name`. Every key is applied or refused by name: a key of neither kind,
    a pose key that does not fit, and a LoRA key naming no module of the transformer."""
    from pathlib import Path

    from .loras import plan_lora, read_safetensors

    label = Path(spec.path).name
    lora, pose_state = split_dance_file(read_safetensors(spec.path), label)
    if not pose_state:
        raise DanceFileError(f"{label}: holds no {POSE_PREFIX}* keys; it is not an SVI-Dance file.")
    stray = sorted(plan_lora(pose.transformer, lora, label).unused) if lora else []
    if stray:
        raise DanceFileError(f"{label}: LoRA keys for modules this transformer lacks would be ignored: "
                             f"{', '.join(stray[:6])}{' …' if len(stray) > 6 else ''}.")
    pose.load(pose_state, label)
    if lora:
        stack.add(spec, state_dict=lora)
