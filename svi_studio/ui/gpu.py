"""How long one shot holds a GPU: the `duration` ZeroGPU asks of every `@spaces.GPU` call.

ZeroGPU gives a call the seconds it asks for (and queues long asks behind short ones),
so the estimate should be a little above the real time, never far below: a call that
runs past its duration is killed. The model:

    seconds = START + steps × passes × STEP_S × (tokens / TOKENS_480P) ** 1.3
                    + DECODE_S × (pixels × frames) / (480 × 832 × 81)

tokens = (height/16)(width/16)(1 + (frames-1)/4), the transformer's sequence length;
passes = 2 with classifier-free guidance (guidance > 1), else 1. STEP_S is one
transformer pass of a 14B Wan expert at 480×832×81 on a ZeroGPU slice (half an H200),
calibrated from the published anchors in DESIGN.md (about 14 s for a 4-step,
no-CFG clip on a full H200; 366 s for 40 CFG steps), with a margin for the slice.
"""

from __future__ import annotations

from ..settings import ClipSettings

START_S = 10.0  # moving weights onto the GPU slice, encoding the prompt and the anchor
STEP_S = 4.5  # one transformer pass at 480×832×81
DECODE_S = 8.0  # VAE decode of 81 frames at 480×832
TOKENS_480P = (480 // 16) * (832 // 16) * 21
MIN_S, MAX_S = 15, 600
DRAFT_S = 15  # the draft and tiny engines never need more


def transformer_tokens(settings: ClipSettings) -> int:
    return (settings.height // 16) * (settings.width // 16) * (1 + (settings.num_frames - 1) // 4)


def estimate_seconds(settings: ClipSettings, engine_name: str = "wan") -> int:
    """Seconds to ask ZeroGPU for to render one clip with `settings` on engine `engine_name`."""
    if engine_name in ("draft", "tiny"):
        return DRAFT_S
    passes = 2 if settings.guidance > 1.0 else 1
    scale = (transformer_tokens(settings) / TOKENS_480P) ** 1.3
    pixels = settings.width * settings.height * settings.num_frames / (480 * 832 * 81)
    seconds = START_S + settings.steps * passes * STEP_S * scale + DECODE_S * pixels
    return int(min(MAX_S, max(MIN_S, round(seconds * 1.15))))
