"""Loaders round-trip tiny saved models exactly, and missing weights fail with one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import save_file
from transformers import (
    CLIPModel,
    CLIPProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
    SamModel,
    SamProcessor,
)

from interpedit.backbones import (
    DINO_VIT_ALIASES,
    PretrainedWeightsNotFoundError,
    load_diffusers_model,
    load_hub_mixin_model,
    load_inpainting_unet,
    load_scheduler,
    load_timm_vit,
    load_transformers_model,
    scheduler_from_config,
    tiny_presets,
)
from tests.tiny_components import (  # noqa: F401  (pytest fixtures)
    TINY_SEED,
    tiny_clip_dir,
    tiny_inpainting_dir,
    tiny_sam_dir,
    tiny_sd_dir,
    tiny_unet2d_dir,
    tiny_vit_dir,
)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ---- round trips through the local-path branch ----------------------------------------------------------------


def test_unet2d_condition_round_trip(tiny_sd_dir: Path) -> None:
    reference = tiny_presets.tiny_unet2d_condition(seed=TINY_SEED)
    loaded = load_diffusers_model(UNet2DConditionModel, tiny_sd_dir, subfolder="unet")
    assert_same_state(reference, loaded)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 32, 32, generator=generator)
    context = torch.randn(2, 5, 8, generator=generator)
    with torch.no_grad():
        expected = reference(sample, 10, encoder_hidden_states=context).sample
        actual = loaded(sample, 10, encoder_hidden_states=context).sample
    assert torch.equal(expected, actual)


def test_vae_and_text_encoder_and_tokenizer_round_trip(tiny_sd_dir: Path) -> None:
    vae = load_diffusers_model(AutoencoderKL, str(tiny_sd_dir), subfolder="vae")
    assert_same_state(tiny_presets.tiny_vae(seed=TINY_SEED), vae)
    text_encoder = load_transformers_model(CLIPTextModel, tiny_sd_dir, subfolder="text_encoder")
    assert_same_state(tiny_presets.tiny_clip_text(seed=TINY_SEED), text_encoder)
    tokenizer = load_transformers_model(CLIPTokenizer, tiny_sd_dir, subfolder="tokenizer")
    prompts = ["A Red circle left of a blue square", "x"]
    expected = tiny_presets.tiny_clip_tokenizer()(prompts, padding="max_length", truncation=True).input_ids
    assert tokenizer(prompts, padding="max_length", truncation=True).input_ids == expected
    # CLIP conventions kept: lower-cased characters, start/end tokens, end-of-word suffix on the last letter.
    ids = tokenizer("ab").input_ids
    assert ids[0] == tiny_presets.TINY_CLIP_BOS_TOKEN_ID and ids[-1] == tiny_presets.TINY_CLIP_EOS_TOKEN_ID
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == ["a", "b</w>"]
    assert tokenizer("AB").input_ids == ids


def test_tiny_sd_folder_is_a_loadable_pipeline(tiny_sd_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    assert_same_state(pipe.unet, load_diffusers_model(UNet2DConditionModel, tiny_sd_dir, subfolder="unet"))
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.safety_checker is None
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        "a red circle", num_inference_steps=2, height=32, width=32, output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_scheduler_by_name_or_class_and_conversion(tiny_sd_dir: Path) -> None:
    reference = tiny_presets.sd_ddim_scheduler()
    by_name = load_scheduler("DDIMScheduler", tiny_sd_dir)
    by_class = load_scheduler(DDIMScheduler, tiny_sd_dir, clip_sample=True)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert isinstance(by_name, DDIMScheduler) and public(by_name.config) == public(reference.config)
    assert by_class.config.clip_sample is True
    ddpm = scheduler_from_config("DDPMScheduler", by_name)
    assert isinstance(ddpm, DDPMScheduler)
    assert torch.equal(ddpm.alphas_cumprod, reference.alphas_cumprod)
    # SD's betas: scaled linear from 0.00085 to 0.012.
    assert torch.isclose(reference.betas[0], torch.tensor(0.00085))
    assert torch.isclose(reference.betas[-1], torch.tensor(0.012))


def test_inpainting_unet_checks_channels(tiny_inpainting_dir: Path, tiny_sd_dir: Path) -> None:
    unet = load_inpainting_unet(tiny_inpainting_dir)
    assert unet.config.in_channels == 9 and unet.config.out_channels == 4
    assert_same_state(tiny_presets.tiny_inpainting_unet(seed=TINY_SEED), unet)
    with pytest.raises(ValueError, match="in_channels=4.*inpainting UNet takes 9"):
        load_inpainting_unet(tiny_sd_dir)


def test_unet2d_round_trip_and_dtype(tiny_unet2d_dir: Path) -> None:
    loaded = load_diffusers_model(UNet2DModel, tiny_unet2d_dir, subfolder="unet", torch_dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    reference = tiny_presets.tiny_unet2d(seed=TINY_SEED)
    for (key, a), b in zip(reference.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.double(), b), key


def test_clip_towers_load_from_one_clip_folder(tiny_clip_dir: Path) -> None:
    clip = load_transformers_model(CLIPModel, tiny_clip_dir)
    assert_same_state(tiny_presets.tiny_clip(seed=TINY_SEED), clip)
    processor = load_transformers_model(CLIPProcessor, tiny_clip_dir)
    text_tower = load_transformers_model(CLIPTextModelWithProjection, tiny_clip_dir)
    vision_tower = load_transformers_model(CLIPVisionModelWithProjection, tiny_clip_dir)
    image = torch.rand(40, 56, 3).mul(255).to(torch.uint8).numpy()
    inputs = processor(text=["a blue square"], images=image, return_tensors="pt", padding="max_length")
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        # The single towers read the same weights as the two-tower model (as SD image variation relies on).
        text_embeds = text_tower(inputs["input_ids"]).text_embeds
        assert torch.allclose(text_embeds, clip.get_text_features(inputs["input_ids"]).pooler_output)
        image_embeds = vision_tower(pixel_values=inputs["pixel_values"]).image_embeds
        assert torch.allclose(image_embeds, clip.get_image_features(inputs["pixel_values"]).pooler_output)


def test_sam_round_trip(tiny_sam_dir: Path) -> None:
    model = load_transformers_model(SamModel, tiny_sam_dir)
    processor = load_transformers_model(SamProcessor, tiny_sam_dir)
    assert_same_state(tiny_presets.tiny_sam(seed=TINY_SEED), model)
    assert processor.image_processor.size["longest_edge"] == model.config.vision_config.image_size == 64


def test_timm_vit_from_timm_export_folder(tiny_vit_dir: Path) -> None:
    reference = tiny_presets.tiny_vit(seed=TINY_SEED)
    loaded = load_timm_vit(tiny_vit_dir)
    assert_same_state(reference, loaded)
    assert loaded.patch_embed.patch_size == (4, 4) and loaded.num_classes == 0
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reference.forward_features(images), loaded.forward_features(images))
    # The export keeps its preprocessing config (timm's local-dir source), not the architecture's default.
    assert tuple(loaded.pretrained_cfg["input_size"]) == (3, 32, 32)


def test_timm_vit_new_image_size_resamples_position_embeddings(tiny_vit_dir: Path) -> None:
    loaded = load_timm_vit(tiny_vit_dir, img_size=48, dynamic_img_size=True)
    assert loaded.pos_embed.shape == (1, 1 + 12 * 12, 32)
    with torch.no_grad():
        assert loaded.forward_features(torch.randn(1, 3, 40, 24)).shape == (1, 1 + 10 * 6, 32)
    reference = tiny_presets.tiny_vit(seed=TINY_SEED)
    assert torch.equal(reference.blocks[0].attn.qkv.weight, loaded.blocks[0].attn.qkv.weight)


def test_timm_vit_from_hand_written_config_and_weight_file(tmp_path: Path) -> None:
    reference = tiny_presets.tiny_vit(architecture="vit_small_patch14_reg4_dinov2", patch_size=4, seed=3)
    assert reference.num_prefix_tokens == 5  # class token + 4 registers, as DINOv2-reg
    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    model_args = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    (tmp_path / "config.json").write_text(
        json.dumps({"architecture": "vit_small_patch14_reg4_dinov2", "model_args": model_args})
    )
    assert_same_state(reference, load_timm_vit(tmp_path))
    from_file = load_timm_vit(
        tmp_path / "model.safetensors", architecture="vit_small_patch14_reg4_dinov2", **model_args
    )
    assert_same_state(reference, from_file)
    random_init = load_timm_vit(tmp_path, pretrained=False)
    assert not torch.equal(random_init.pos_embed, reference.pos_embed)


def test_timm_folder_errors_name_the_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_args": {}}))
    with pytest.raises(ValueError, match=r"config\.json: missing field 'architecture'"):
        load_timm_vit(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224"}))
    with pytest.raises(PretrainedWeightsNotFoundError, match="no model.safetensors"):
        load_timm_vit(tmp_path)
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="pass architecture="):
        load_timm_vit(weights)


class _HubMixinNet(torch.nn.Module, PyTorchModelHubMixin):
    """A project model saved with huggingface_hub's mixin (as ShapesCLIP is)."""

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, 2)


def test_hub_mixin_model_round_trip_and_missing_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    saved = _HubMixinNet(width=5)
    saved.save_pretrained(tmp_path / "net")
    loaded = load_hub_mixin_model(_HubMixinNet, tmp_path / "net")
    assert loaded.linear.in_features == 5  # constructor arguments come back from config.json
    assert_same_state(saved, loaded)
    (tmp_path / "net" / "model.safetensors").unlink()
    with pytest.raises(PretrainedWeightsNotFoundError, match="does not hold the files _HubMixinNet needs"):
        load_hub_mixin_model(_HubMixinNet, tmp_path / "net")
    with pytest.raises(PretrainedWeightsNotFoundError, match=f"^{MADE_UP_ID}: cannot load _HubMixinNet"):
        load_hub_mixin_model(_HubMixinNet, MADE_UP_ID, cache_dir=tmp_path / "cache")


# ---- presets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset",
    [
        tiny_presets.tiny_unet2d_condition,
        tiny_presets.tiny_vae,
        tiny_presets.tiny_clip_text,
        tiny_presets.tiny_sam,
        tiny_presets.tiny_vit,
    ],
)
def test_presets_are_deterministic_and_leave_global_rng_alone(preset) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, again, other = preset(seed=0), preset(seed=0), preset(seed=1)
    assert torch.equal(torch.rand(3), expected_next)
    assert_same_state(first, again)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))


def test_shapes_world_pixel_unet_and_text_widths_compose() -> None:
    text_encoder = tiny_presets.tiny_clip_text(hidden_size=32, intermediate_size=64, num_attention_heads=4)
    unet = tiny_presets.tiny_unet2d_condition(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), cross_attention_dim=32, norm_num_groups=8
    )
    ids = tiny_presets.tiny_clip_tokenizer()(["red circle"], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        context = text_encoder(ids).last_hidden_state
        out = unet(torch.randn(1, 3, 32, 32), 5, encoder_hidden_states=context).sample
    assert context.shape == (1, 16, 32) and out.shape == (1, 3, 32, 32)


def test_dino_aliases_name_pretrained_timm_models() -> None:
    import timm

    pretrained = set(timm.list_pretrained())
    assert DINO_VIT_ALIASES["dino_vitb8"] == "vit_base_patch8_224.dino"
    assert DINO_VIT_ALIASES["dinov2_vitb14_reg"] == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert set(DINO_VIT_ALIASES.values()) <= pretrained


# ---- offline behaviour and errors ------------------------------------------------------------------------------


class _RecordingModel:
    """Stands in for a library class to see which keyword arguments the loader passes."""

    calls: list[tuple[str, dict]] = []

    @classmethod
    def from_pretrained(cls, source: str, **kwargs):
        cls.calls.append((source, kwargs))
        return cls()


def test_offline_env_passes_local_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _RecordingModel.calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_diffusers_model(_RecordingModel, "some/repo", subfolder="unet")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    load_diffusers_model(_RecordingModel, "some/repo")
    assert _RecordingModel.calls == [("some/repo", {"subfolder": "unet", "local_files_only": True}), ("some/repo", {})]


def test_trust_remote_code_is_refused() -> None:
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_transformers_model(_RecordingModel, "some/repo", trust_remote_code=True)


MADE_UP_ID = "interpedit-tests/no-such-model-4f2a"


@pytest.mark.parametrize(
    ("load", "class_name"),
    [
        (
            lambda cache: load_diffusers_model(UNet2DConditionModel, MADE_UP_ID, subfolder="unet", cache_dir=cache),
            "UNet2DConditionModel",
        ),
        (lambda cache: load_scheduler("DDIMScheduler", MADE_UP_ID, cache_dir=cache), "DDIMScheduler"),
        (lambda cache: load_transformers_model(SamModel, MADE_UP_ID, cache_dir=cache), "SamModel"),
        # transformers v5 would silently return a tokenizer with only special tokens here.
        (lambda cache: load_transformers_model(CLIPTokenizer, MADE_UP_ID, cache_dir=cache), "CLIPTokenizer"),
    ],
)
def test_made_up_hub_id_fails_with_how_to_fix(load, class_name: str, tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsNotFoundError) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert message.startswith(f"{MADE_UP_ID}: cannot load {class_name}")
    assert f"hf download {MADE_UP_ID} --local-dir DIR" in message and "HF_HOME" in message


def test_uncached_timm_weights_name_the_hub_repo(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsNotFoundError) as caught:
        load_timm_vit("dino_vitb8", cache_dir=tmp_path)
    message = str(caught.value)
    assert "timm model vit_base_patch8_224.dino" in message
    assert "hf download timm/vit_base_patch8_224.dino --local-dir DIR" in message and "HF_HOME" in message


def test_unknown_timm_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="Close matches: vit_base_patch8_224.dino"):
        load_timm_vit("vit_bse_patch8_224.dino")


def test_missing_local_paths_say_no_such_directory(tmp_path: Path, tiny_sd_dir: Path) -> None:
    missing = tmp_path / "never-downloaded"
    for load in (
        lambda: load_diffusers_model(AutoencoderKL, missing, subfolder="vae"),
        lambda: load_transformers_model(CLIPTextModel, str(missing)),
        lambda: load_timm_vit(missing),
    ):
        with pytest.raises(PretrainedWeightsNotFoundError, match=f"no such file or directory: {missing}"):
            load()
    expected = f"DDPMScheduler.*no such directory: {tiny_sd_dir / 'sched'}"
    with pytest.raises(PretrainedWeightsNotFoundError, match=expected):
        load_scheduler(DDPMScheduler, tiny_sd_dir, subfolder="sched")
    with pytest.raises(PretrainedWeightsNotFoundError, match="does not hold the files CLIPTokenizer needs"):
        load_transformers_model(CLIPTokenizer, tiny_sd_dir, subfolder="unet")
