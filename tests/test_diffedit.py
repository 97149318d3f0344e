"""DiffEdit: the compat mode is diffusers' StableDiffusionDiffEditPipeline; the paper mode's mask, encoding and
blending; DDIM inversion baseline; both through eval.py."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.diffusion.unet_cost import count_unet_calls
from interpedit.editing.ddim_inversion_edit import DDIMInversionEdit
from interpedit.editing.diffedit import DiffEdit, difference_mask, strength_timesteps
from tests.tiny_components import tiny_sd_dir, tiny_shapes_sd_dir  # noqa: F401  (pytest fixtures)

SOURCE = ["a small red circle at the top left", "a large blue square at the center"]
TARGET = ["a small green circle at the top left", "a large blue star at the center"]


def batch_of(images):
    return {"source_image": images, "source_prompt": SOURCE[: len(images)], "target_prompt": TARGET[: len(images)]}


def diffedit_pipeline(folder):
    """diffusers' DiffEdit pipeline on the folder's components, with the schedulers the issue prescribes."""
    sd = load_stable_diffusion(folder)
    pipe = StableDiffusionDiffEditPipeline(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
        scheduler=DDIMScheduler.from_config(sd.scheduler.config),
        inverse_scheduler=DDIMInverseScheduler.from_config(sd.scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_diffedit(pipe, image, source, target, seed, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    common = {key: kwargs[key] for key in ("num_inference_steps", "guidance_scale")}
    mask = pipe.generate_mask(image=image, source_prompt=source, target_prompt=target, generator=generator,
                              num_maps_per_mask=kwargs["num_maps_per_mask"],
                              mask_encode_strength=kwargs["mask_encode_strength"],
                              mask_thresholding_ratio=kwargs["mask_thresholding_ratio"], **common)
    latents = pipe.invert(prompt=source, image=image, inpaint_strength=kwargs["inpaint_strength"],
                          generator=generator, **common).latents
    edited = pipe(prompt=target, mask_image=mask, image_latents=latents, inpaint_strength=kwargs["inpaint_strength"],
                  generator=generator, output_type="pt", **common).images
    return torch.from_numpy(mask), edited


@pytest.mark.parametrize("fixture", ["tiny_sd_dir", "tiny_shapes_sd_dir"])
def test_compat_mode_is_the_diffusers_pipeline(fixture, request):
    folder = request.getfixturevalue(fixture)
    settings = dict(num_inference_steps=8, guidance_scale=5.0, mask_encode_strength=0.5, num_maps_per_mask=3,
                    mask_thresholding_ratio=1.5, inpaint_strength=0.75)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    method = DiffEdit(str(folder), diffusers_compat=True, seed=7, **settings)
    output = method(batch_of(images))
    pipe = diffedit_pipeline(folder)
    for i in range(2):
        mask, edited = diffusers_diffedit(pipe, images[i:i + 1], SOURCE[i], TARGET[i], seed=7, **settings)
        factor = images.shape[-1] // mask.shape[-1]
        assert torch.equal(output["edit_region"][i, ::factor, ::factor], mask[0].bool())
        assert 0 < mask.float().mean() < 1  # a mask with both values, so the test can tell them apart
        assert (output["edited"][i] - edited[0]).abs().mean() <= 2 / 255


def test_paper_mode_keeps_the_source_latent_outside_the_mask(tiny_shapes_sd_dir):
    method = DiffEdit(str(tiny_shapes_sd_dir), num_inference_steps=6, num_maps_per_mask=2, guidance_scale=3.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    latents_seen = {}
    original_decode = method.decode
    method.decode = lambda latents: latents_seen.setdefault("final", latents) is not None and original_decode(latents)
    output = method(batch_of(images))
    mask = output["edit_region"][:, ::4, ::4]
    source = method.encode(images)
    final = latents_seen["final"]
    keep = ~mask[:, None].expand_as(final)
    torch.testing.assert_close(final[keep], source[keep])  # the last blend restores the source latent outside
    assert output["edited"].shape == images.shape and output["edit_region"].dtype == torch.bool


def test_paper_mode_costs_one_mask_call_and_the_encoding_and_decoding_steps(tiny_shapes_sd_dir):
    method = DiffEdit(str(tiny_shapes_sd_dir), num_inference_steps=10, num_maps_per_mask=4, inpaint_strength=0.5)
    images = torch.rand(3, 3, 64, 64)
    with count_unet_calls(method) as cost:
        method(batch_of(images[:2]))
    # mask: 2 prompts x 4 draws x 2 images in one call; encoding: 5 steps x 2; decoding: 5 steps x 2 branches x 2
    assert cost.forwards == 2 * 4 * 2 + 5 * 2 + 5 * 2 * 2
    assert cost.calls == 1 + 5 + 5


def test_difference_mask_clamps_rescales_and_thresholds():
    difference = torch.zeros(1, 4, 4)
    difference[0, 0, 0] = 100.0  # an extreme value
    difference[0, 1, :2] = 1.0
    difference[0, 2, :3] = 0.4
    mask = difference_mask(difference, clamp_quantile=0.9, threshold=0.5)
    # Without the clamp only the extreme pixel would pass; with it the 1.0 pixels reach the top of the range.
    assert mask[0, 1, :2].all() and mask[0, 0, 0] and not mask[0, 2].any() and int(mask.sum()) == 3


def test_strength_timesteps_are_diffusers_get_timesteps():
    timesteps = torch.arange(981, 0, -20)
    assert strength_timesteps(timesteps, 0.8).tolist() == timesteps[10:].tolist()
    assert strength_timesteps(timesteps, 0.5)[0] == 481
    with pytest.raises(ValueError, match="leaves no step"):
        strength_timesteps(timesteps, 0.001)


def test_ddim_inversion_baseline_is_diffusers_inverse_scheduler_then_the_pipeline(tiny_shapes_sd_dir):
    from diffusers import StableDiffusionPipeline

    steps, scale = 6, 4.0
    method = DDIMInversionEdit(str(tiny_shapes_sd_dir), num_inference_steps=steps, guidance_scale=scale)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with count_unet_calls(method) as cost:
        edited = method(batch_of(images))["edited"]
    assert cost.forwards == 2 * steps + 2 * 2 * steps  # inversion at guidance 1, then sampling with CFG
    # The reference: diffusers' inverse scheduler with the source prompt, then the pipeline from its result.
    pipe = StableDiffusionPipeline.from_pretrained(tiny_shapes_sd_dir)
    pipe.set_progress_bar_config(disable=True)
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(steps)
    with torch.no_grad():
        cond, _ = pipe.encode_prompt(SOURCE, "cpu", 1, False)
        latents = pipe.vae.encode(images * 2 - 1).latent_dist.mode() * pipe.vae.config.scaling_factor
        for t in inverse.timesteps:
            latents = inverse.step(pipe.unet(latents, t, encoder_hidden_states=cond).sample, t, latents).prev_sample
    expected = pipe(TARGET, latents=latents, num_inference_steps=steps, guidance_scale=scale, output_type="pt").images
    torch.testing.assert_close(edited, expected, rtol=1e-3, atol=1e-3)


def test_bad_settings_and_sizes_are_refused(tiny_shapes_sd_dir, tiny_sd_dir):
    with pytest.raises(ValueError, match="inpaint_strength: 1.5 is outside"):
        DiffEdit(str(tiny_shapes_sd_dir), inpaint_strength=1.5)
    with pytest.raises(ValueError, match="torch_dtype: 'float8'"):
        DDIMInversionEdit(str(tiny_shapes_sd_dir), torch_dtype="float8")
    method = DDIMInversionEdit(str(tiny_shapes_sd_dir), num_inference_steps=2)
    with pytest.raises(ValueError, match="images of 62x62 px do not divide into the latent grid"):
        method({"source_image": torch.rand(1, 3, 62, 62), "source_prompt": SOURCE[:1], "target_prompt": TARGET[:1]})
