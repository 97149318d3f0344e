"""Wall time of one DiffEdit edit: ours (paper mode, compat mode) against diffusers' pipeline on the same components.

    python bench/diffedit.py                                          # a tiny random pipeline, 64 px
    python bench/diffedit.py --pipeline pretrained/shapes_stable_diffusion
    python bench/diffedit.py --pipeline sd15 --dtype float16          # SD-1.5-sized random weights, 512 px (GPU)

Four edits of the same image and prompts, timed in turn (ABCD ABCD ...) after warm-up, so that drift hits all alike:

- (a) ``DiffEdit`` in paper mode (inversion at guidance 1, r = 0.5), its mask predicted with CFG
  (``mask_guidance_scale``) so that it costs the 4n forwards diffusers' mask costs;
- (a') ``StableDiffusionDiffEditPipeline`` doing the same UNet evaluations: ``generate_mask`` at the guidance scale
  (at guidance 1 it fails: it unpacks ``encode_prompt``'s pair in the wrong order), ``invert`` at guidance 1,
  ``__call__`` at the guidance scale, ``inpaint_strength`` 0.5;
- (b) ``DiffEdit(diffusers_compat=True)`` with diffusers' defaults (CFG on the mask, the inversion and the decoding,
  ``inpaint_strength`` 0.8);
- (b') the pipeline's ``generate_mask``, ``invert`` and ``__call__`` with the same settings;
- and, for information, (c) the paper mode's defaults: the mask from 2n guidance-free forwards.

The pipeline is built from the method's own VAE, text encoder, tokenizer and UNet objects, with ``DDIMScheduler``
and ``DDIMInverseScheduler`` from the folder's scheduler config, so every row runs the same weights. UNet forwards
(batch entries) per edit are counted with ``interpedit.diffusion.unet_cost.count_unet_calls``. On CUDA each edit is
bracketed by ``torch.cuda.synchronize()``. The figures of merit are (a)/(a') (aim: <= 1.0x) and (b)/(b'). See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402  (after the path set-up)
    add_run_arguments,
    device_note,
    interleaved_rounds,
    refuses_big_preset_on_cpu,
    run_device,
)

TARGET_RATIO = 1.0
"""Paper mode should be no slower than diffusers' pipeline at the same number of UNet evaluations."""
SOURCE_PROMPT = "a large red circle at the center"
TARGET_PROMPT = "a large blue circle at the center"


def write_sd15_sized(folder: Path) -> Path:
    """Random weights at Stable Diffusion 1.5's sizes (UNet 860M, VAE 84M, CLIP ViT-L/14 text tower 123M), saved as
    a pipeline folder. The tokenizer is the tiny word-level CLIP tokenizer padded to 77 tokens (no download)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from interpedit.backbones import tiny_presets
    from interpedit.stable_diffusion.pipeline_folder import save_pipeline_folder

    torch.manual_seed(0)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, cross_attention_dim=768, sample_size=64)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512, scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                num_attention_heads=12, max_position_embeddings=77))
    tokenizer = tiny_presets.tiny_clip_tokenizer(model_max_length=77)
    save_pipeline_folder(folder, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                         scheduler=tiny_presets.sd_ddim_scheduler())
    return folder


def resolve_pipeline(name: str, scratch: Path) -> tuple[str, str]:
    """(folder, description) for ``tiny``, ``sd15`` or a pipeline folder / hub id."""
    if name == "tiny":
        from tests.tiny_components import write_tiny_sd

        return str(write_tiny_sd(scratch / "tiny_sd")), "tiny random pipeline (tests.tiny_components.write_tiny_sd)"
    if name == "sd15":
        return str(write_sd15_sized(scratch / "sd15")), "random weights at SD 1.5's sizes"
    return name, name


def diffusers_pipeline(method):
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline(
        vae=method.vae, text_encoder=method.text_encoder, tokenizer=method.tokenizer, unet=method.unet,
        scheduler=DDIMScheduler.from_config(method.scheduler.config),
        inverse_scheduler=DDIMInverseScheduler.from_config(method.scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_edit(pipe, image: torch.Tensor, seed: int, *, steps: int, mask_guidance: float, invert_guidance: float,
                   guidance: float, num_maps: int, inpaint_strength: float, thresholding_ratio: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mask = pipe.generate_mask(image=image, source_prompt=SOURCE_PROMPT, target_prompt=TARGET_PROMPT,
                                  generator=generator, num_inference_steps=steps, guidance_scale=mask_guidance,
                                  num_maps_per_mask=num_maps, mask_encode_strength=0.5,
                                  mask_thresholding_ratio=thresholding_ratio)
        latents = pipe.invert(prompt=SOURCE_PROMPT, image=image, inpaint_strength=inpaint_strength,
                              generator=generator, num_inference_steps=steps, guidance_scale=invert_guidance).latents
        image = pipe(prompt=TARGET_PROMPT, mask_image=mask, image_latents=latents, inpaint_strength=inpaint_strength,
                     generator=generator, num_inference_steps=steps, guidance_scale=guidance, output_type="pt").images
    return {"edit_region": torch.from_numpy(mask), "edited": image}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="tiny", help="tiny, sd15, or a pipeline folder / hub id (default tiny)")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default: 64, sd15 512, else the "
                        "VAE's sample_size)")
    parser.add_argument("--steps", type=int, default=50, help="num_inference_steps (default 50)")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--num-maps", type=int, default=10, help="num_maps_per_mask (default 10)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    add_run_arguments(parser, iterations=5, big_preset="sd15")
    args = parser.parse_args(argv)

    from interpedit.editing import DiffEdit

    device = run_device(args)
    if refuses_big_preset_on_cpu(args, device, args.pipeline == "sd15", "the sd15 preset (an edit takes minutes on a CPU)"):
        return 2

    with tempfile.TemporaryDirectory() as scratch:
        folder, description = resolve_pipeline(args.pipeline, Path(scratch))
        dtype = None if args.dtype == "float32" else args.dtype
        paper = DiffEdit(folder, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                         num_maps_per_mask=args.num_maps, torch_dtype=dtype).to(device)
        paper_cfg_mask = DiffEdit(folder, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                                  num_maps_per_mask=args.num_maps, mask_guidance_scale=args.guidance_scale,
                                  torch_dtype=dtype)
        compat = DiffEdit(folder, diffusers_compat=True, num_inference_steps=args.steps,
                          guidance_scale=args.guidance_scale, num_maps_per_mask=args.num_maps, torch_dtype=dtype)
        # One set of weights for every row: the compat method and the pipeline reuse the paper method's networks.
        for method in (compat, paper_cfg_mask):
            method.vae, method.text_encoder, method.unet = paper.vae, paper.text_encoder, paper.unet
        pipe = diffusers_pipeline(paper)
        side = args.resolution or (512 if args.pipeline == "sd15" else 64 if args.pipeline == "tiny"
                                   else int(paper.vae.config.sample_size))
        image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
        batch = {"source_image": image, "source_prompt": [SOURCE_PROMPT], "target_prompt": [TARGET_PROMPT]}
        common = dict(steps=args.steps, num_maps=args.num_maps, thresholding_ratio=3.0)
        rows: dict[str, Callable[[], object]] = {
            "(a) ours, paper mode, CFG mask": lambda: paper_cfg_mask(batch),
            "(a') diffusers, same UNet evaluations": lambda: diffusers_edit(
                pipe, image, 0, mask_guidance=args.guidance_scale, invert_guidance=1.0, guidance=args.guidance_scale,
                inpaint_strength=paper.inpaint_strength, **common),
            "(b) ours, diffusers_compat": lambda: compat(batch),
            "(b') diffusers, its defaults": lambda: diffusers_edit(
                pipe, image, 0, mask_guidance=args.guidance_scale, invert_guidance=args.guidance_scale,
                guidance=args.guidance_scale, inpaint_strength=compat.inpaint_strength, **common),
            "(c) ours, paper mode defaults": lambda: paper(batch),
        }
        rounds = interleaved_rounds(rows, paper.unet, device, warmup=args.warmup, iterations=args.iterations)

    print("DiffEdit: one edit, ours against diffusers' StableDiffusionDiffEditPipeline on the same components")
    print(f"  pipeline {description}, {side}x{side} px, {args.dtype}, {device_note(device)}")
    print(f"  {args.steps} steps, CFG {args.guidance_scale}, {args.num_maps} maps; paper r = {paper.inpaint_strength},"
          f" compat inpaint_strength = {compat.inpaint_strength}; {args.warmup} warm-up + {args.iterations} timed"
          " rounds, interleaved")
    print()
    print(f"{'edit':<40} {'median ms':>10} {'IQR ms':>8} {'UNet fwd':>9}")
    for name in rows:
        print(f"{name:<40} {1000 * rounds.median(name):>10.1f} {1000 * rounds.iqr(name):>8.1f}"
              f" {rounds.forwards(name):>9.0f}")
    names = list(rows)
    for ours, theirs, aim in ((names[0], names[1], TARGET_RATIO), (names[2], names[3], None)):
        ratio = rounds.time_ratio(ours, theirs)
        verdict = f"  (aim <= {aim:.2f}x: {'met' if ratio <= aim else 'not met'})" if aim else ""
        print(f"ratio {ours.split()[0]}/{theirs.split()[0]} {ratio:.2f}x{verdict}; per-round median "
              f"{rounds.per_round_ratio(ours, theirs):.2f}x; UNet forwards {rounds.forwards(ours):.0f} vs "
              f"{rounds.forwards(theirs):.0f}")
    ours, theirs = rounds.outputs["(b) ours, diffusers_compat"], rounds.outputs["(b') diffusers, its defaults"]
    mask = theirs["edit_region"][0].bool()
    factor = ours["edit_region"].shape[-1] // mask.shape[-1]
    same_mask = torch.equal(ours["edit_region"][0, ::factor, ::factor].cpu(), mask)
    difference = float((ours["edited"].float().cpu() - theirs["edited"].float().cpu()).abs().mean())
    print(f"compat mode against the pipeline: mask equal {same_mask} ({float(mask.float().mean()):.3f} of the latent "
          f"grid), image mean |difference| {difference * 255:.3f}/255 (acceptance: <= 2/255)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
