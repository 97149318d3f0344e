"""Tiny, randomly initialised versions of every pretrained part: the same classes, small configs.

They follow diffusers' and transformers' own test components (a UNet with ``block_out_channels=(4, 8)``, a CLIP
text encoder with ``hidden_size=8``), run in milliseconds on a CPU and need no network. Each preset is
deterministic under its ``seed``, leaves the global random state untouched and, like ``from_pretrained``,
returns the model in eval mode. The shapes world (32x32 scenes)
uses them too, e.g. ``tiny_unet2d_condition(in_channels=3, out_channels=3, cross_attention_dim=32)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


# Layout of the tiny CLIP vocabulary: the 256 byte-level characters, the same with CLIP's end-of-word suffix,
# then the two special tokens, like the real CLIP vocabulary (where the specials are the last two ids too).
TINY_CLIP_BOS_TOKEN_ID = 512
TINY_CLIP_EOS_TOKEN_ID = 513
TINY_CLIP_VOCAB_SIZE = 514


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Build under a fixed seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_unet2d_condition(
    *,
    in_channels: int = 4,
    out_channels: int = 4,
    sample_size: int = 32,
    block_out_channels: Sequence[int] = (4, 8),
    layers_per_block: int = 1,
    cross_attention_dim: int = 8,
    norm_num_groups: int = 2,
    attention_head_dim: int = 2,
    seed: int = 0,
):
    """A ``UNet2DConditionModel`` with one plain and one cross-attention level (diffusers' test preset).

    Args:
        in_channels: input channels (4 for latents, 3 for pixel-space shapes, 9 for inpainting).
        out_channels: predicted channels.
        sample_size: nominal spatial size.
        block_out_channels: channels per level; each must be divisible by ``norm_num_groups``.
        layers_per_block: resnets per level.
        cross_attention_dim: width of the conditioning tokens (the text encoder's hidden size).
        norm_num_groups: GroupNorm groups.
        attention_head_dim: number of attention heads (diffusers' historical name for it).
        seed: initialisation seed.
    """
    from diffusers import UNet2DConditionModel

    levels = len(block_out_channels)
    with _seeded(seed):
        return UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            cross_attention_dim=cross_attention_dim,
            norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
        ).eval()


def tiny_inpainting_unet(*, cross_attention_dim: int = 8, sample_size: int = 32, seed: int = 0):
    """A tiny inpainting ``UNet2DConditionModel``: 9 inputs (latents, mask, masked-image latents), 4 outputs."""
    return tiny_unet2d_condition(
        in_channels=9, out_channels=4, cross_attention_dim=cross_attention_dim, sample_size=sample_size, seed=seed
    )


def tiny_unet2d(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    sample_size: int = 32,
    block_out_channels: Sequence[int] = (4, 8),
    layers_per_block: int = 1,
    norm_num_groups: int = 2,
    attention_head_dim: int = 4,
    seed: int = 0,
):
    """An unconditional ``UNet2DModel`` with one plain and one self-attention level.

    Args:
        in_channels: input channels.
        out_channels: predicted channels.
        sample_size: spatial size.
        block_out_channels: channels per level; each must be divisible by ``norm_num_groups``.
        layers_per_block: resnets per level.
        norm_num_groups: GroupNorm groups.
        attention_head_dim: channels per attention head.
        seed: initialisation seed.
    """
    from diffusers import UNet2DModel

    levels = len(block_out_channels)
    with _seeded(seed):
        return UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * (levels - 1),
            up_block_types=("AttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
        ).eval()


def tiny_vae(
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    latent_channels: int = 4,
    block_out_channels: Sequence[int] = (4, 8),
    norm_num_groups: int = 2,
    sample_size: int = 32,
    seed: int = 0,
):
    """An ``AutoencoderKL`` downsampling by ``2 ** (len(block_out_channels) - 1)`` (2 by default).

    Args:
        in_channels: image channels.
        out_channels: decoded channels.
        latent_channels: latent channels.
        block_out_channels: channels per level.
        norm_num_groups: GroupNorm groups.
        sample_size: nominal image size.
        seed: initialisation seed.
    """
    from diffusers import AutoencoderKL

    levels = len(block_out_channels)
    with _seeded(seed):
        return AutoencoderKL(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(block_out_channels),
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
        ).eval()


def sd_ddim_scheduler(**overrides: Any):
    """A ``DDIMScheduler`` with Stable Diffusion's betas (scaled linear 0.00085 to 0.012, 1000 steps).

    Args:
        **overrides: config values to replace (``num_train_timesteps``, ``timestep_spacing``, ...).
    """
    from diffusers import DDIMScheduler

    config = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    config.update(overrides)
    return DDIMScheduler(**config)


def tiny_clip_tokenizer(*, model_max_length: int = 16):
    """A ``CLIPTokenizer`` with a byte-level vocabulary and no merges: every character is one token.

    It behaves like CLIP's (lower-casing, end-of-word suffix, start/end tokens) and needs no downloaded files.

    Args:
        model_max_length: padding/truncation length; match the text encoder's ``max_position_embeddings``.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate(alphabet)}
    vocab.update({char + "</w>": index + len(alphabet) for index, char in enumerate(alphabet)})
    vocab["<|startoftext|>"] = TINY_CLIP_BOS_TOKEN_ID
    vocab["<|endoftext|>"] = TINY_CLIP_EOS_TOKEN_ID
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _tiny_clip_text_config(
    hidden_size: int, intermediate_size: int, num_hidden_layers: int, num_attention_heads: int,
    max_position_embeddings: int, vocab_size: int, projection_dim: int,
):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        projection_dim=projection_dim,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=TINY_CLIP_BOS_TOKEN_ID,
        eos_token_id=TINY_CLIP_EOS_TOKEN_ID,
        pad_token_id=TINY_CLIP_EOS_TOKEN_ID,
    )


def tiny_clip_text(
    *,
    hidden_size: int = 8,
    intermediate_size: int = 16,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    max_position_embeddings: int = 16,
    vocab_size: int = TINY_CLIP_VOCAB_SIZE,
    projection_dim: int = 8,
    with_projection: bool = False,
    seed: int = 0,
):
    """A ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``) matching ``tiny_clip_tokenizer``'s ids.

    Args:
        hidden_size: token width; the UNet's ``cross_attention_dim`` must equal it.
        intermediate_size: MLP width.
        num_hidden_layers: transformer layers.
        num_attention_heads: attention heads.
        max_position_embeddings: longest prompt in tokens.
        vocab_size: embedding rows; at least the tokenizer's length.
        projection_dim: width of the projected text embedding (only with ``with_projection``).
        with_projection: return ``CLIPTextModelWithProjection`` instead of ``CLIPTextModel``.
        seed: initialisation seed.
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = _tiny_clip_text_config(
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings,
        vocab_size, projection_dim,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with _seeded(seed):
        return cls(config).eval()


def _tiny_clip_vision_config(
    image_size: int, patch_size: int, hidden_size: int, intermediate_size: int, num_hidden_layers: int,
    num_attention_heads: int, projection_dim: int,
):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        projection_dim=projection_dim,
    )


def tiny_clip_vision(
    *,
    image_size: int = 32,
    patch_size: int = 4,
    hidden_size: int = 16,
    intermediate_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    projection_dim: int = 8,
    with_projection: bool = True,
    seed: int = 0,
):
    """A ``CLIPVisionModelWithProjection`` (or ``CLIPVisionModel``) on ``image_size`` inputs.

    Args:
        image_size: input side in pixels.
        patch_size: patch side in pixels.
        hidden_size: token width.
        intermediate_size: MLP width.
        num_hidden_layers: transformer layers.
        num_attention_heads: attention heads.
        projection_dim: width of the projected image embedding.
        with_projection: return ``CLIPVisionModelWithProjection`` instead of ``CLIPVisionModel``.
        seed: initialisation seed.
    """
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    config = _tiny_clip_vision_config(
        image_size, patch_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, projection_dim
    )
    cls = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    with _seeded(seed):
        return cls(config).eval()


def tiny_clip(
    *,
    image_size: int = 32,
    patch_size: int = 4,
    text_hidden_size: int = 8,
    vision_hidden_size: int = 16,
    projection_dim: int = 8,
    max_position_embeddings: int = 16,
    seed: int = 0,
):
    """A two-tower ``CLIPModel`` (text + vision) whose text side matches ``tiny_clip_tokenizer``.

    Args:
        image_size: input side in pixels.
        patch_size: patch side in pixels.
        text_hidden_size: text token width.
        vision_hidden_size: image token width.
        projection_dim: width of the shared embedding space.
        max_position_embeddings: longest prompt in tokens.
        seed: initialisation seed.
    """
    from transformers import CLIPConfig, CLIPModel

    text = _tiny_clip_text_config(
        text_hidden_size, 2 * text_hidden_size, 2, 2, max_position_embeddings, TINY_CLIP_VOCAB_SIZE, projection_dim
    )
    vision = _tiny_clip_vision_config(
        image_size, patch_size, vision_hidden_size, 2 * vision_hidden_size, 2, 2, projection_dim
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)
    with _seeded(seed):
        return CLIPModel(config).eval()


def tiny_clip_processor(*, image_size: int = 32, model_max_length: int = 16):
    """A ``CLIPProcessor``: resize the short side and centre-crop to ``image_size``, plus ``tiny_clip_tokenizer``."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    tokenizer = tiny_clip_tokenizer(model_max_length=model_max_length)
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_sam(
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    num_hidden_layers: int = 2,
    prompt_hidden_size: int = 16,
    initializer_range: float = 0.5,
    seed: int = 0,
):
    """A ``SamModel`` with a 2-layer image encoder on ``image_size`` inputs and a small mask decoder.

    Args:
        image_size: side the image encoder sees (SAM: 1024); pair with ``tiny_sam_processor(image_size=...)``.
        patch_size: patch side in pixels; the mask decoder's low-resolution masks are 4x the patch grid.
        vision_hidden_size: image encoder width.
        num_hidden_layers: image encoder layers (the last one is global attention, the rest windowed).
        prompt_hidden_size: width of image embeddings, prompts and mask decoder.
        initializer_range: std of the random weights. SAM's usual 0.02 shrinks the signal through so many
            narrow layers that every mask logit is ~1e-5 and every prompt gives the same mask; 0.5 keeps logits
            of order one and masks that differ from point to point.
        seed: initialisation seed.
    """
    from transformers import SamConfig, SamModel

    grid = image_size // patch_size
    config = SamConfig(
        vision_config=dict(
            hidden_size=vision_hidden_size,
            output_channels=prompt_hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            window_size=max(1, grid // 2),
            global_attn_indexes=[num_hidden_layers - 1],
            num_pos_feats=prompt_hidden_size // 2,
            mlp_dim=2 * vision_hidden_size,
        ),
        prompt_encoder_config=dict(
            hidden_size=prompt_hidden_size, image_size=image_size, patch_size=patch_size, mask_input_channels=4
        ),
        mask_decoder_config=dict(
            hidden_size=prompt_hidden_size,
            mlp_dim=2 * prompt_hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            iou_head_hidden_dim=prompt_hidden_size,
        ),
        initializer_range=initializer_range,
    )
    with _seeded(seed):
        return SamModel(config).eval()


def tiny_sam_processor(*, image_size: int = 64):
    """A ``SamProcessor`` that resizes the longest side to ``image_size`` and pads to a square, as SAM does."""
    from transformers import SamImageProcessor, SamProcessor

    mask_size = max(1, image_size // 4)
    image_processor = SamImageProcessor(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask_size},
        mask_pad_size={"height": mask_size, "width": mask_size},
    )
    return SamProcessor(image_processor)


def tiny_vit(
    *,
    architecture: str = "vit_tiny_patch16_224",
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    num_classes: int = 0,
    seed: int = 0,
    **timm_kwargs: Any,
) -> torch.nn.Module:
    """A timm ``VisionTransformer`` built through ``timm.create_model`` with a tiny size.

    A real architecture name keeps the class, the forward and the save format those of the pretrained encoders:
    ``vit_tiny_patch16_224`` is the same ``VisionTransformer`` as DINO's ``vit_base_patch8_224``, and
    ``architecture="vit_small_patch14_reg4_dinov2"`` gives DINOv2's variant with register tokens and layer scale.

    Args:
        architecture: timm model name whose class and options (registers, layer scale) to reuse.
        img_size: input side in pixels.
        patch_size: patch side in pixels.
        embed_dim: token width.
        depth: transformer blocks.
        num_heads: attention heads.
        num_classes: classifier outputs; 0 keeps features only, as encoders use them.
        seed: initialisation seed.
        **timm_kwargs: other ``timm.create_model`` arguments (``dynamic_img_size=True``, ``reg_tokens=4``).
    """
    import timm

    with _seeded(seed):
        return timm.create_model(
            architecture,
            pretrained=False,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=num_classes,
            **timm_kwargs,
        ).eval()
