"""The motion state: what one clip hands to the next.

For the wan engine in SVI 2.0 Pro mode it is the tail of the clip's denoised,
normalised latents; in pixel (Film/Shot) mode the clip's last decoded frames; for
the draft engine a camera pose and velocity. Director, store, UI and export treat
it as an opaque bundle of tensors plus string metadata, saved as safetensors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .fsutil import atomic_write_bytes

# Kinds of motion state an engine may produce.
LATENT_TAIL = "latent_tail"  # tensors: {"motion_latents": (1, 16, m, h, w)}
PIXEL_TAIL = "pixel_tail"  # tensors: {"motion_frames": (N, H, W, 3) uint8}
CAMERA = "camera"  # tensors: {"pose": (3,), "velocity": (3,)} float64


@dataclass
class MotionState:
    """A small dict of tensors plus metadata, saved bit-exactly to safetensors."""

    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.tensors.items()}
        meta = {"kind": self.kind, "meta": json.dumps(self.meta, sort_keys=True)}
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> "MotionState":
        tensors = st_load(data)
        # safetensors.torch.load drops metadata; read it from the header.
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta_block = header.get("__metadata__", {})
        return cls(kind=meta_block.get("kind", ""), tensors=tensors, meta=json.loads(meta_block.get("meta", "{}")))

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "MotionState":
        return cls.from_bytes(Path(path).read_bytes())

    def fingerprint(self) -> str:
        """sha256 over kind, metadata and every tensor's dtype, shape and bytes."""
        digest = hashlib.sha256()
        digest.update(self.kind.encode())
        digest.update(json.dumps(self.meta, sort_keys=True).encode())
        for name in sorted(self.tensors):
            tensor = self.tensors[name].detach().to("cpu").contiguous()
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    def equals(self, other: "MotionState | None") -> bool:
        """Bit-for-bit equality (kind, metadata and every tensor)."""
        if other is None:
            return False
        return self.fingerprint() == other.fingerprint()
