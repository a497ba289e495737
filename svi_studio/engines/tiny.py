"""Tiny, randomly initialised Wan components, built offline (no hub access, ever).

The shapes follow diffusers' own fast tests for Wan. The tiny engine runs the real
wan engine code on these; its output is noise by design, but every tensor on the
way — anchor latent, condition layout, motion tail, LoRA targeting — is real.
"""

from __future__ import annotations

import string

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerFast,
    UMT5Config,
    UMT5EncoderModel,
)

from .schedulers import WanFlowMatchEulerScheduler
from .svi_pipeline import SVIWanImageToVideoPipeline

try:  # transformers >= 5 names the torchvision-free processor explicitly
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor

TEXT_DIM = 32
IMAGE_DIM = 4
INNER_DIM = 2 * 12  # num_attention_heads * attention_head_dim; k_img/v_img project from it


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose 'words' are single characters, so any two prompts differ."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    specials = ["<pad>", "</s>", "<unk>"]
    symbols = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation)
    vocab = {token: index for index, token in enumerate(specials + symbols)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def tiny_text_encoder(vocab_size: int) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
    )
    return UMT5EncoderModel(config).eval()


def tiny_vae() -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


def tiny_transformer(with_image: bool, added_kv_proj_dim: int | None = None) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        image_dim=IMAGE_DIM if with_image else None,
        added_kv_proj_dim=added_kv_proj_dim if with_image else None,
    ).eval()


def tiny_pipeline(layout: str = "wan2.2", scheduler: str = "unipc", flow_shift: float = 5.0,
                  boundary_ratio: float = 0.875, seed: int = 0) -> SVIWanImageToVideoPipeline:
    """Build the pipeline. layout "wan2.2": two experts, no CLIP (SVI 2.0 Pro);
    "wan2.1": one transformer with a tiny CLIP image encoder and k_img/v_img projections (SVI Film/Shot)."""
    if layout not in ("wan2.2", "wan2.1"):
        raise ValueError(f"unknown tiny layout {layout!r}")
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = tiny_text_encoder(len(tokenizer))
    vae = tiny_vae()
    if scheduler == "euler":
        sched = WanFlowMatchEulerScheduler(shift=flow_shift)
    else:
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift)
    if layout == "wan2.2":
        transformer = tiny_transformer(with_image=False)
        transformer_2 = tiny_transformer(with_image=False)
        return SVIWanImageToVideoPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=sched,
            transformer=transformer, transformer_2=transformer_2, boundary_ratio=boundary_ratio,
        )
    transformer = tiny_transformer(with_image=True, added_kv_proj_dim=INNER_DIM)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(hidden_size=IMAGE_DIM, projection_dim=IMAGE_DIM, num_hidden_layers=2, num_attention_heads=2,
                         image_size=32, intermediate_size=16, patch_size=1)
    ).eval()
    image_processor = CLIPImageProcessor(crop_size=32, size=32)
    return SVIWanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=sched, transformer=transformer,
        image_encoder=image_encoder, image_processor=image_processor,
    )
