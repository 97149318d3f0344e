"""Tiny pretrained folders shared by the whole test suite, saved once per session.

Each ``write_*`` function saves tiny random models (``interpedit.backbones.tiny_presets``) with the libraries' own
``save_pretrained`` in the layout of the real hub repo, so that code under test loads them through
``interpedit.backbones`` exactly as it would load ``stable-diffusion-v1-5/stable-diffusion-v1-5``. Use the
session fixtures from a test module with::

    from tests.tiny_components import tiny_sd_dir  # noqa: F401  (a pytest fixture)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interpedit.backbones import tiny_presets


TINY_SEED = 0


def write_tiny_sd(directory: Path, *, inpainting: bool = False, in_channels: int = 4) -> Path:
    """Save a Stable-Diffusion-shaped repo: ``unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json``.

    Args:
        directory: folder to create.
        inpainting: save a 9-channel inpainting UNet.
        in_channels: UNet input channels when not inpainting.
    """
    text_encoder = tiny_presets.tiny_clip_text(seed=TINY_SEED)
    if inpainting:
        unet = tiny_presets.tiny_inpainting_unet(cross_attention_dim=text_encoder.config.hidden_size, seed=TINY_SEED)
    else:
        unet = tiny_presets.tiny_unet2d_condition(
            in_channels=in_channels, cross_attention_dim=text_encoder.config.hidden_size, seed=TINY_SEED
        )
    unet.save_pretrained(directory / "unet")
    tiny_presets.tiny_vae(seed=TINY_SEED).save_pretrained(directory / "vae")
    text_encoder.save_pretrained(directory / "text_encoder")
    tiny_presets.tiny_clip_tokenizer().save_pretrained(directory / "tokenizer")
    tiny_presets.sd_ddim_scheduler().save_pretrained(directory / "scheduler")
    # model_index.json lets diffusers pipelines load the folder too (no safety checker, no feature extractor).
    import diffusers

    model_index = {
        "_class_name": "StableDiffusionInpaintPipeline" if inpainting else "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (directory / "model_index.json").write_text(json.dumps(model_index, indent=2))
    return directory


def write_tiny_unet2d(directory: Path) -> Path:
    """Save an unconditional pixel-space ``UNet2DModel`` (``unet/``) with its DDIM scheduler (``scheduler/``)."""
    tiny_presets.tiny_unet2d(seed=TINY_SEED).save_pretrained(directory / "unet")
    tiny_presets.sd_ddim_scheduler().save_pretrained(directory / "scheduler")
    return directory


def write_tiny_clip(directory: Path) -> Path:
    """Save a two-tower ``CLIPModel`` and its ``CLIPProcessor`` at the root, like ``openai/clip-vit-base-patch32``."""
    tiny_presets.tiny_clip(seed=TINY_SEED).save_pretrained(directory)
    tiny_presets.tiny_clip_processor().save_pretrained(directory)
    return directory


def write_tiny_sam(directory: Path) -> Path:
    """Save a ``SamModel`` and its ``SamProcessor`` at the root, like ``facebook/sam-vit-base``."""
    tiny_presets.tiny_sam(seed=TINY_SEED).save_pretrained(directory)
    tiny_presets.tiny_sam_processor().save_pretrained(directory)
    return directory


def write_tiny_vit(directory: Path, **tiny_vit_kwargs) -> Path:
    """Save a tiny timm ViT in timm's hub layout (``config.json`` + ``model.safetensors``)."""
    from timm.models import save_for_hf

    save_for_hf(tiny_presets.tiny_vit(seed=TINY_SEED, **tiny_vit_kwargs), str(directory), safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Stable-Diffusion-shaped repo folder (latent UNet with cross-attention width 8)."""
    return write_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_inpainting_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD-inpainting-shaped repo folder (9-channel UNet)."""
    return write_tiny_sd(tmp_path_factory.mktemp("tiny-sd-inpainting"), inpainting=True)


@pytest.fixture(scope="session")
def tiny_unet2d_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny unconditional pixel-space UNet with its scheduler."""
    return write_tiny_unet2d(tmp_path_factory.mktemp("tiny-unet2d"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP repo folder (model + processor)."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM repo folder (model + processor, 64-pixel inputs)."""
    return write_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny timm ViT folder (32-pixel inputs, patch 4, width 32, no classifier)."""
    return write_tiny_vit(tmp_path_factory.mktemp("tiny-vit"))


TINY_SHAPES_CLIP_TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 64}
TINY_SHAPES_CLIP_VISION = {"architecture": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "embed_dim": 16,
                           "depth": 1, "num_heads": 2}


def write_tiny_shapes_sd(directory: Path, *, inpainting: bool = False) -> Path:
    """A tiny shapes Stable Diffusion pipeline folder, made the way the committed one is: a random ``ShapesCLIP``
    (whose text tower and word-level tokenizer become the text encoder), a VAE with downsampling factor 4, SD's DDIM
    schedule (``python -m lightning_modules.stable_diffusion components``), then a UNet over 16x16 latents of 64 px
    images, saved with the pipeline's own ``save_pretrained``."""
    import torch

    from interpedit.backbones.stable_diffusion import load_stable_diffusion
    from interpedit.clip import ShapesCLIP
    from interpedit.shapes import vocabulary
    from interpedit.stable_diffusion.cli import write_components
    from interpedit.stable_diffusion.inpainting_unet import inpainting_unet_from
    from interpedit.stable_diffusion.pipeline_folder import save_pipeline_folder

    torch.manual_seed(TINY_SEED)
    clip = ShapesCLIP(vocabulary(), vision_config=TINY_SHAPES_CLIP_VISION, text_config=TINY_SHAPES_CLIP_TEXT,
                      embed_dim=16)
    clip.save_pretrained(directory / "clip")
    tiny_presets.tiny_vae(block_out_channels=(4, 8, 8), sample_size=64, seed=TINY_SEED).save_pretrained(
        directory / "vae")
    write_components(str(directory / "vae"), str(directory / "clip"), str(directory / "components"))
    components = load_stable_diffusion(directory / "components", components=("vae", "text_encoder", "tokenizer",
                                                                             "scheduler"))
    unet = tiny_presets.tiny_unet2d_condition(sample_size=16, cross_attention_dim=16, seed=TINY_SEED)
    components.unet = inpainting_unet_from(unet) if inpainting else unet
    return save_pipeline_folder(components, directory / "pipeline")


@pytest.fixture(scope="session")
def tiny_shapes_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes Stable Diffusion pipeline folder (word-level tokenizer, 64 px images, 16x16 latents)."""
    return write_tiny_shapes_sd(tmp_path_factory.mktemp("tiny-shapes-sd"))


@pytest.fixture(scope="session")
def tiny_shapes_inpainting_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes inpainting pipeline folder (its 9-channel UNet made by ``inpainting_unet_from``)."""
    return write_tiny_shapes_sd(tmp_path_factory.mktemp("tiny-shapes-sd-inpainting"), inpainting=True)
