"""The plain-PyTorch parts of the shapes Stable Diffusion: text conditioning, sampling and inpainting inputs agree
with the diffusers pipelines; VAE training pieces; inpainting masks and the 9-channel UNet."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from interpedit.backbones import tiny_unet2d_condition, tiny_vae
from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.clip import ShapesCLIP
from interpedit.stable_diffusion.inpainting_masks import MASK_KINDS, box_masks, dilate, random_inpainting_masks
from interpedit.stable_diffusion.inpainting_unet import inpainting_conditioning, inpainting_unet_from
from interpedit.stable_diffusion.sampling import sample_images
from interpedit.stable_diffusion.text_conditioning import encode_prompts, shapes_text_encoder, word_sensitivity
from interpedit.stable_diffusion.vae_training import latent_scaling_factor, random_crops, vae_loss
from tests.tiny_components import (  # noqa: F401  (pytest fixtures)
    tiny_sd_dir,
    tiny_shapes_inpainting_dir,
    tiny_shapes_sd_dir,
)

PROMPTS = ["a small red circle at the top left", "a large blue square at the center and a medium green star at the top"]


def test_encode_prompts_is_the_pipelines_encode_prompt(tiny_sd_dir, tiny_shapes_sd_dir):
    for folder in (tiny_sd_dir, tiny_shapes_sd_dir):
        pipe = StableDiffusionPipeline.from_pretrained(folder)
        theirs, _ = pipe.encode_prompt(PROMPTS + [""], "cpu", 1, False)
        torch.testing.assert_close(encode_prompts(pipe.tokenizer, pipe.text_encoder, PROMPTS + [""]), theirs)


def test_shapes_text_encoder_is_the_shapes_clips_text_tower():
    from interpedit.shapes import vocabulary
    from tests.tiny_components import TINY_SHAPES_CLIP_TEXT, TINY_SHAPES_CLIP_VISION

    clip = ShapesCLIP(vocabulary(), vision_config=TINY_SHAPES_CLIP_VISION, text_config=TINY_SHAPES_CLIP_TEXT, embed_dim=16)
    text_encoder, tokenizer = shapes_text_encoder(clip)
    tokens = clip.tokenize(PROMPTS)
    with torch.no_grad():
        expected = clip.text_model(**tokens).last_hidden_state
        got = encode_prompts(tokenizer, text_encoder, PROMPTS)
    assert got.shape == (2, 64, 16)
    for row, length in enumerate(tokens["attention_mask"].sum(1).tolist()):
        # The words' states are the tower's (causal attention: padding after the end token changes nothing before it).
        torch.testing.assert_close(got[row, :length], expected[row, :length], rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in text_encoder.parameters())


def test_truncated_text_encoder_keeps_the_first_layers_and_saves(tmp_path):
    from transformers import CLIPTextModel

    from interpedit.shapes import vocabulary
    from tests.tiny_components import TINY_SHAPES_CLIP_TEXT, TINY_SHAPES_CLIP_VISION

    clip = ShapesCLIP(vocabulary(), vision_config=TINY_SHAPES_CLIP_VISION, text_config=TINY_SHAPES_CLIP_TEXT, embed_dim=16)
    tower = clip.text_model.text_model
    tokens = clip.tokenize(PROMPTS)["input_ids"]
    for layers in range(TINY_SHAPES_CLIP_TEXT["num_hidden_layers"] + 1):
        text_encoder, tokenizer = shapes_text_encoder(clip, num_layers=layers)
        with torch.no_grad():
            hidden = clip.text_model(tokens, output_hidden_states=True).hidden_states[layers]
            expected = tower.final_layer_norm(hidden)
            got = text_encoder(tokens).last_hidden_state
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The 0-layer encoder (the shapes pipeline's) survives save_pretrained / from_pretrained unchanged.
    text_encoder, _ = shapes_text_encoder(clip, num_layers=0)
    text_encoder.save_pretrained(tmp_path / "text_encoder")
    reloaded = CLIPTextModel.from_pretrained(tmp_path / "text_encoder")
    assert reloaded.config.num_hidden_layers == 0
    torch.testing.assert_close(reloaded(tokens).last_hidden_state, text_encoder(tokens).last_hidden_state)
    with pytest.raises(ValueError, match="num_layers: 7 is outside"):
        shapes_text_encoder(clip, num_layers=7)


def test_committed_shapes_clip_layers_discard_shape_and_position_words():
    # Why the shapes pipeline keeps 0 layers: measured on the committed shapes CLIP, the full tower barely moves
    # when a shape or position word changes, while its embeddings respond to every attribute alike.
    clip = ShapesCLIP.load("pretrained/shapes_clip")
    full = word_sensitivity(*shapes_text_encoder(clip)[::-1])
    embeddings = word_sensitivity(*shapes_text_encoder(clip, num_layers=0)[::-1])
    assert full["shape"] < 0.2 * full["colour"] and full["position"] < 0.2 * full["colour"]
    assert min(embeddings.values()) > 0.5 * max(embeddings.values())
    assert embeddings["shape"] > 3 * full["shape"] and embeddings["position"] > 1.5 * full["position"]


def test_sampling_on_the_diffusion_core_reproduces_the_pipeline(tiny_shapes_sd_dir):
    sd = load_stable_diffusion(tiny_shapes_sd_dir)
    pipe = sd.pipeline()
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(PROMPTS, num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(3),
                  output_type="pt").images
    mine = sample_images(sd.unet, sd.vae, sd.tokenizer, sd.text_encoder, sd.scheduler, PROMPTS, steps=4,
                         guidance_scale=5.0, seed=3)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_inpainting_inputs_and_sampling_reproduce_the_inpaint_pipeline(tiny_shapes_inpainting_dir):
    sd = load_stable_diffusion(tiny_shapes_inpainting_dir, inpainting=True)
    pipe = sd.pipeline()
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe, StableDiffusionInpaintPipeline)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = box_masks(torch.tensor([[8.0, 8.0, 40.0, 30.0], [20.0, 0.0, 64.0, 64.0]]), 64, 64).float()
    # The pipeline draws the starting noise, then the masked image's posterior sample, from one generator.
    generator = torch.Generator().manual_seed(5)
    theirs = pipe(PROMPTS, image=images, mask_image=masks[:, None], num_inference_steps=3, guidance_scale=4.0,
                  strength=1.0, generator=generator, output_type="pt").images
    replay = torch.Generator().manual_seed(5)
    torch.randn(2, 4, 16, 16, generator=replay)
    conditioning = inpainting_conditioning(sd.vae, images, masks, generator=replay)
    assert conditioning[0].shape == (2, 1, 16, 16) and conditioning[1].shape == (2, 4, 16, 16)
    mine = sample_images(sd.unet, sd.vae, sd.tokenizer, sd.text_encoder, sd.scheduler, PROMPTS, steps=3,
                         guidance_scale=4.0, seed=5, inpainting=conditioning)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_inpainting_unet_starts_as_the_text_to_image_unet():
    base = tiny_unet2d_condition(cross_attention_dim=8, sample_size=16)
    wide = inpainting_unet_from(base)
    assert wide.config.in_channels == 9 and base.config.in_channels == 4
    x, t, context = torch.randn(2, 4, 16, 16), torch.tensor([3, 900]), torch.randn(2, 5, 8)
    extra = torch.randn(2, 5, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(wide(torch.cat([x, extra], 1), t, encoder_hidden_states=context).sample,
                                   base(x, t, encoder_hidden_states=context).sample)
    with pytest.raises(ValueError, match="already has 9 input channels"):
        inpainting_unet_from(wide)


def test_random_inpainting_masks_of_each_kind():
    objects = torch.zeros(4, 2, 32, 32, dtype=torch.bool)
    objects[:, 0, 10:14, 5:9] = True
    valid = torch.tensor([[True, False]] * 4)
    for kind, name in enumerate(MASK_KINDS):
        probabilities = [0.0] * 4
        probabilities[kind] = 1.0
        masks, kinds = random_inpainting_masks(objects, valid, torch.Generator().manual_seed(1),
                                               probabilities=probabilities, object_dilation=1, box_margin=(2, 2))
        assert kinds.tolist() == [kind] * 4, name
        if name == "object":
            assert torch.equal(masks.bool(), dilate(objects[:, 0], 1))
        elif name == "object_box":
            assert torch.equal(masks[0].nonzero().min(0).values, torch.tensor([8, 3]))
            assert torch.equal(masks[0].nonzero().max(0).values, torch.tensor([15, 10]))
        elif name == "full":
            assert bool(masks.bool().all())
        else:
            assert 0 < masks.mean() < 1
    # Scenes without objects get random boxes instead of object masks.
    masks, kinds = random_inpainting_masks(objects, torch.zeros(4, 2, dtype=torch.bool), torch.Generator(),
                                           probabilities=[1.0, 0.0, 0.0, 0.0])
    assert kinds.tolist() == [2] * 4
    with pytest.raises(ValueError, match="probabilities"):
        random_inpainting_masks(objects, valid, torch.Generator(), probabilities=[1.0, 0.0])


def test_vae_loss_crops_and_scaling_factor():
    vae = tiny_vae(block_out_channels=(4, 8, 8), sample_size=32)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    crops = random_crops(images, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 3, 16, 16)
    assert any(torch.equal(crops[0], images[0, :, y:y + 16, x:x + 16]) for y in range(17) for x in range(17))
    with pytest.raises(ValueError, match="crop size 40 does not fit images of 32x32"):
        random_crops(images, 40)
    losses = vae_loss(vae, images, kl_weight=0.5, reconstruction="mse", sample_posterior=False)
    expected = torch.nn.functional.mse_loss(losses["reconstruction"], images) + 0.5 * losses["kl"]
    torch.testing.assert_close(losses["loss"], expected)
    with pytest.raises(ValueError, match="reconstruction loss 'l2' is not one of"):
        vae_loss(vae, images, reconstruction="l2")
    generator = torch.manual_seed(0)
    factor = latent_scaling_factor(vae, [images[:2], images[2:]])
    torch.manual_seed(0)
    latents = torch.cat([vae.encode(images[:2]).latent_dist.sample(), vae.encode(images[2:]).latent_dist.sample()])
    assert factor == pytest.approx(1.0 / latents.double().std(unbiased=False).item(), rel=1e-6)
    del generator
