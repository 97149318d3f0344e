"""Time and UNet forwards per image of Learnable Regions: our schedule against the released one, in one run.

    python bench/learnable_regions.py                                    # tiny random shapes components, 64 px
    python bench/learnable_regions.py --inpainting pretrained/shapes_stable_diffusion_inpainting \
        --clip pretrained/shapes_clip
    python bench/learnable_regions.py --preset sd2 --dtype float16       # SD-2-inpainting-sized weights, 512 px (GPU)

Both rows run on the same components, images and prompts, in turn (ABAB ...) after warm-up:

- (a) ours: ``LearnableRegions.edit`` with the settings of ``configs/eval/shapes/learnable_regions.yaml`` (or the
  flags): ``optimisation_steps`` REINFORCE steps of ``num_anchors`` x ``draws`` batched inpaintings, then one
  inpainting per anchor and the Eq. 7 choice;
- (a') ours with the soft-mask gradient (``gradient: soft_mask``, ``configs/eval/shapes/learnable_regions_soft_mask
  .yaml``): one inpainting per anchor and step under the expected box, the last ``backprop_steps`` tracked, so it
  also counts UNet backwards;
- (b) the released schedule: ``per_image_iteration`` (10) iterations of one inpainting per anchor (9) with the
  losses computed, then 9 final inpaintings and the ranking, every inpainting 50 steps with CFG (about 99 x 50 x 2 =
  9,900 UNet forwards per image); AnchorNet is not updated, as in the released code.

UNet forwards and backwards (batch entries) are counted with ``count_unet_calls``. The figure of merit is the ratio of forwards
(aim: <= 0.25x) and of wall time. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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

TARGET_FORWARD_RATIO = 0.25
SHAPES_SETTINGS = dict(backbone_image_size=64, num_anchors=6, half_sizes=(1, 2, 3, 4, 5), border=1,
                       optimisation_steps=4, draws=2, learning_rate=0.05, weight_decay=0.0, inpainting_steps=20,
                       guidance_scale=4.0, prompt_template=None, num_views=8)
"""configs/eval/shapes/learnable_regions.yaml's method settings."""
SOURCE = "a large red circle at the center and a small blue square at the top left"
TARGET = "a large green circle at the center and a small blue square at the top left"


def write_sd2_sized(folder: Path) -> tuple[Path, Path]:
    """Random weights at SD-2-inpainting's sizes (9-channel UNet 866M, VAE 84M, OpenCLIP-H text tower 354M) and a
    tiny random shapes CLIP for the losses and anchors; returns (pipeline folder, clip folder)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from interpedit.backbones import tiny_presets
    from interpedit.backbones.stable_diffusion import StableDiffusionComponents
    from interpedit.stable_diffusion.pipeline_folder import save_pipeline_folder
    from tests.tiny_components import write_tiny_shapes_sd

    torch.manual_seed(0)
    unet = UNet2DConditionModel(in_channels=9, out_channels=4, cross_attention_dim=1024, sample_size=64,
                                attention_head_dim=[5, 10, 20, 20], use_linear_projection=True)
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512, scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                                num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu"))
    components = StableDiffusionComponents(vae=vae, text_encoder=text_encoder, unet=unet,
                                           tokenizer=tiny_presets.tiny_clip_tokenizer(model_max_length=77),
                                           scheduler=tiny_presets.sd_ddim_scheduler())
    pipeline = save_pipeline_folder(components, folder / "sd2")
    write_tiny_shapes_sd(folder / "shapes", inpainting=True)
    return pipeline, folder / "shapes" / "clip"


def released_schedule(method, images, prompts, sources, iterations: int, anchors: int, steps: int, guidance: float):
    """The released code's work per image: ``iterations`` x ``anchors`` inpaintings scored by the losses, AnchorNet
    untouched, then ``anchors`` final inpaintings and the ranking; every inpainting ``steps`` steps with CFG."""
    from interpedit.learnable_regions.ranking import rank_candidates

    saved = method.inpainting_steps, method.guidance_scale, method.num_anchors, method.draws
    method.inpainting_steps, method.guidance_scale, method.num_anchors = steps, guidance, anchors
    try:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            proposals = method.propose(images)
            edit_text = method.reward.text_embeddings(prompts)
            source_text = method.reward.text_embeddings(sources)
            for iteration in range(iterations + 1):
                boxes = method.final_candidates(proposals, generator)  # one draw per anchor (final_sizes "sample")
                candidates, _ = method.inpaint_boxes(images, boxes, prompts, proposals.grid, seed=iteration)
                if iteration < iterations:
                    method.rewards(images, candidates, edit_text, source_text, generator)
            embeddings = method.reward.image_embeddings(candidates)
            rank_candidates(embeddings, method.reward.image_embeddings(images), edit_text)
    finally:
        method.inpainting_steps, method.guidance_scale, method.num_anchors, method.draws = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["tiny", "sd2"], default="tiny",
                        help="tiny random shapes components, or SD-2-inpainting-sized random weights (GPU)")
    parser.add_argument("--inpainting", default=None, help="an inpainting pipeline folder instead of the preset")
    parser.add_argument("--clip", default=None, help="its shapes CLIP folder (anchors, losses and ranking)")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default 64; sd2 512)")
    parser.add_argument("--batch-size", type=int, default=1, help="images edited together by (a)")
    parser.add_argument("--released-steps", type=int, default=50, help="inpainting steps of the released schedule")
    parser.add_argument("--released-iterations", type=int, default=10, help="per_image_iteration of the release")
    parser.add_argument("--released-anchors", type=int, default=9, help="point_number of the release")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    add_run_arguments(parser, iterations=2, big_preset="sd2")
    args = parser.parse_args(argv)

    from interpedit.learnable_regions.learnable_regions import LearnableRegions
    from tests.tiny_components import write_tiny_shapes_sd

    device = run_device(args)
    if refuses_big_preset_on_cpu(args, device, args.preset == "sd2" and not args.inpainting,
                                 "the sd2 preset (an image takes hours on a CPU)"):
        return 2

    with tempfile.TemporaryDirectory() as scratch:
        if args.inpainting:
            folder, clip, description = args.inpainting, args.clip, args.inpainting
            if clip is None:
                parser.error("--inpainting needs --clip (the shapes CLIP of the anchors, losses and ranking)")
        elif args.preset == "sd2":
            folder, clip = write_sd2_sized(Path(scratch))
            description = "random weights at SD-2-inpainting's sizes"
        else:
            folder = write_tiny_shapes_sd(Path(scratch), inpainting=True)
            clip, description = folder.parent / "clip", "tiny random shapes components"
        dtype = None if args.dtype == "float32" else args.dtype
        method = LearnableRegions(str(folder), backbone=str(clip), clip=str(clip), torch_dtype=dtype,
                                  **SHAPES_SETTINGS).to(device)
        side = args.resolution or (512 if args.preset == "sd2" and not args.inpainting else 64)
        images = torch.rand(args.batch_size, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
        prompts, sources = [TARGET] * args.batch_size, [SOURCE] * args.batch_size
        method.final_sizes = "sample"  # the released boxes: one draw per anchor from the untrained AnchorNet
        def ours(gradient: str):
            method.final_sizes, method.gradient = "mode", gradient
            return method.edit(images, sources, prompts)

        rows = {
            "(a) ours": lambda: ours("reinforce"),
            "(a') ours, soft mask": lambda: ours("soft_mask"),
            "(b) released schedule": lambda: (setattr(method, "final_sizes", "sample"), released_schedule(
                method, images, prompts, sources, args.released_iterations, args.released_anchors,
                args.released_steps, 7.5)),
        }
        rounds = interleaved_rounds(rows, method.unet, device, warmup=args.warmup, iterations=args.iterations,
                                    per=args.batch_size)

    print("Learnable Regions: our schedule against the released one, per image, on the same components")
    print(f"  {description}, {side}x{side} px, {args.dtype}, {device_note(device)}, batch {args.batch_size}")
    s = SHAPES_SETTINGS
    print(f"  (a) {s['optimisation_steps']} steps x {s['num_anchors']} anchors x {s['draws']} draws + "
          f"{s['num_anchors']} final, {s['inpainting_steps']} inpainting steps, CFG {s['guidance_scale']}")
    print(f"  (a') {s['optimisation_steps']} steps x {s['num_anchors']} anchors (soft masks, the last "
          f"{method.backprop_steps} step tracked) + {s['num_anchors']} final")
    print(f"  (b) {args.released_iterations} iterations x {args.released_anchors} anchors + {args.released_anchors} "
          f"final, {args.released_steps} inpainting steps, CFG 7.5; {args.warmup} warm-up + {args.iterations} "
          "timed rounds, interleaved")
    print()
    print(f"{'schedule':<26} {'median s/image':>15} {'UNet fwd/image':>15} {'UNet bwd/image':>15}")
    for name in rows:
        print(f"{name:<26} {rounds.median(name):>15.2f} {rounds.forwards(name):>15.0f} "
              f"{rounds.backwards(name):>15.0f}")
    released = "(b) released schedule"
    for name in ("(a) ours", "(a') ours, soft mask"):
        ratio = rounds.forwards(name) / rounds.forwards(released)
        verdict = "met" if ratio <= TARGET_FORWARD_RATIO else "not met"
        print(f"forwards {name.split()[0]}/(b) {ratio:.3f}x (aim <= {TARGET_FORWARD_RATIO}x: {verdict}); "
              f"time {name.split()[0]}/(b) {rounds.time_ratio(name, released):.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
