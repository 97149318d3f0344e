"""Command line of the shapes Stable Diffusion (run as ``python -m lightning_modules.stable_diffusion``).

    components --vae DIR [--clip pretrained/shapes_clip] --out DIR    the frozen parts a UNet trains against
    export --ckpt CKPT --out DIR                                      a checkpoint -> a diffusers pipeline folder
    grid --model DIR --out PNG                                        samples through the pipeline's own __call__
    evaluate --model DIR --num-prompts N --seed S                     measured quality (a table and JSON)
    word-gap --model DIR                                              which caption words the UNet uses
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from interpedit.user_errors import OptionError

DEFAULT_CLIP = "pretrained/shapes_clip"


def write_components(vae: str, clip: str, out: str, text_layers: int | None = 0) -> Path:
    """The components folder of the shapes pipeline: a trained VAE, the shapes CLIP's text tower (its first
    ``text_layers`` transformer layers; None for all) and word-level tokenizer, and DDIM with SD's training schedule
    (epsilon prediction). Prints ``word_sensitivity`` of the text encoder it writes."""
    from diffusers import AutoencoderKL

    from interpedit.backbones import load_diffusers_model, sd_ddim_scheduler
    from interpedit.clip import ShapesCLIP
    from interpedit.stable_diffusion.pipeline_folder import save_components_folder
    from interpedit.stable_diffusion.text_conditioning import shapes_text_encoder, word_sensitivity

    vae_model = load_diffusers_model(AutoencoderKL, vae)
    text_encoder, tokenizer = shapes_text_encoder(ShapesCLIP.load(clip), num_layers=text_layers)
    sensitivity = word_sensitivity(tokenizer, text_encoder)
    print("text encoder word sensitivity: " + ", ".join(f"{key} {value:.3f}" for key, value in sensitivity.items()))
    scheduler = sd_ddim_scheduler(prediction_type="epsilon")
    return save_components_folder(out, vae=vae_model, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def write_sample_grid(
    model: str, out: str, *, num_prompts: int = 8, samples_per_prompt: int = 4, seed: int = 0,
    guidance_scale: float = 6.0, steps: int = 25,
) -> Path:
    """A PNG grid: one row per held-out caption (test split, 1-3 objects), its real render, then samples made by the
    diffusers pipeline's own ``__call__``."""
    import torch

    from interpedit.backbones.stable_diffusion import load_stable_diffusion
    from interpedit.evaluation.labelled_grid import save_labelled_grid
    from interpedit.stable_diffusion.quality import held_out_scenes

    pipeline = load_stable_diffusion(model, inpainting=False).pipeline()
    pipeline.set_progress_bar_config(disable=True)
    scenes = held_out_scenes(num_prompts, seed, min_objects=1, max_objects=3, resolution=pipeline.unet.config.sample_size * pipeline.vae_scale_factor)
    captions = [scene["caption"] for scene in scenes]
    columns = {"real": torch.stack([scene["image"] for scene in scenes])}
    for index in range(samples_per_prompt):
        generator = torch.Generator().manual_seed(seed * 1000 + index)
        images = pipeline(captions, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                          output_type="pt").images
        columns[f"sample {index + 1}"] = images.float().cpu()
    print("\n".join(f"row {i + 1}: {caption}" for i, caption in enumerate(captions)))
    return save_labelled_grid(columns, out)


def main(argv: Sequence[str] | None = None, *, export: Callable[..., Path] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.stable_diffusion", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    components = sub.add_parser("components", help="vae + shapes CLIP text tower + DDIM -> a components folder")
    components.add_argument("--vae", required=True, help="an AutoencoderKL folder (lightning_modules.autoencoder_kl export)")
    components.add_argument("--clip", default=DEFAULT_CLIP, help=f"a saved ShapesCLIP (default {DEFAULT_CLIP})")
    components.add_argument(
        "--text-layers", type=int, default=0,
        help="transformer layers of the CLIP text tower to keep (default 0: its embeddings and final layer norm, "
        "because its layers discard shape and position words; -1 keeps all)",
    )
    components.add_argument("--out", required=True, help="destination folder")
    exporter = sub.add_parser("export", help="training checkpoint -> diffusers pipeline folder")
    exporter.add_argument("--ckpt", required=True, help="the .ckpt to export")
    exporter.add_argument("--out", required=True, help="destination folder")
    exporter.add_argument("--no-ema", action="store_true", help="save the training weights, not the EMA")
    grid = sub.add_parser("grid", help="PNG of samples for held-out captions, through the pipeline's __call__")
    grid.add_argument("--model", required=True, help="a text-to-image pipeline folder or hub id")
    grid.add_argument("--out", required=True, help="PNG file to write")
    grid.add_argument("--num-prompts", type=int, default=8, help="rows")
    grid.add_argument("--samples-per-prompt", type=int, default=4, help="columns of samples")
    grid.add_argument("--seed", type=int, default=0, help="caption and noise seed")
    grid.add_argument("--guidance-scale", type=float, default=6.0,
                      help="classifier-free guidance scale (default 6, the shapes pipeline's recommended one)")
    grid.add_argument("--steps", type=int, default=25, help="DDIM steps")
    from interpedit.stable_diffusion.quality import add_evaluate_arguments, run_evaluate

    add_evaluate_arguments(sub.add_parser("evaluate", help="caption fidelity, inversion and inpainting against ground truth"))
    gap = sub.add_parser("word-gap", help="the UNet's loss with each kind of caption word changed, per timestep")
    gap.add_argument("--model", required=True, help="a text-to-image pipeline folder or hub id")
    gap.add_argument("--num-scenes", type=int, default=48, help="held-out single-object scenes")
    gap.add_argument("--seed", type=int, default=0, help="scene, noise and replacement-word seed")
    gap.add_argument("--timesteps", default="980,900,800,650,500,300", help="comma-separated training timesteps")
    gap.add_argument("--binding", action="store_true",
                     help="two-object scenes instead: the loss with the two colours swapped between the objects")
    gap.add_argument("--out", help="also write the losses as JSON here")
    args = parser.parse_args(argv)
    if args.command == "components":
        layers = None if args.text_layers == -1 else args.text_layers
        print(f"wrote {write_components(args.vae, args.clip, args.out, layers)}")
    elif args.command == "export":
        if export is None:
            parser.error("export needs the Lightning systems: run python -m lightning_modules.stable_diffusion export")
        print(f"wrote {export(args.ckpt, args.out, use_ema=not args.no_ema)}")
    elif args.command == "grid":
        path = write_sample_grid(args.model, args.out, num_prompts=args.num_prompts,
                                 samples_per_prompt=args.samples_per_prompt, seed=args.seed,
                                 guidance_scale=args.guidance_scale, steps=args.steps)
        print(f"wrote {path}")
    elif args.command == "word-gap":
        write_word_gaps(args.model, num_scenes=args.num_scenes, seed=args.seed,
                        timesteps=_integers(args.timesteps, "--timesteps"), out=args.out, binding=args.binding)
    else:
        run_evaluate(args)


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OptionError(f"{option}: {text!r} is not a comma-separated list of integers") from None


def write_word_gaps(model: str, *, num_scenes: int, seed: int, timesteps: Sequence[int],
                    out: str | None = None, binding: bool = False) -> dict[int, dict[str, float]]:
    """Print (and optionally save as JSON) ``word_loss_gaps`` of a pipeline on held-out single-object scenes, or
    with ``binding`` its ``binding_loss_gaps`` on held-out two-object scenes."""
    from interpedit.backbones.stable_diffusion import load_stable_diffusion
    from interpedit.stable_diffusion.quality import held_out_scenes, two_object_scenes
    from interpedit.stable_diffusion.word_loss_gap import binding_loss_gaps, loss_gap_table, word_loss_gaps

    if any(not 0 <= t < 1000 for t in timesteps) or not timesteps:
        raise OptionError(f"--timesteps: {list(timesteps)} must be one or more training timesteps in [0, 1000)")
    components = load_stable_diffusion(model, inpainting=False)
    if binding:
        scenes = two_object_scenes(num_scenes, seed=seed + 7)
        results = binding_loss_gaps(components, scenes, timesteps=timesteps, seed=seed)
        print(f"{model}: denoising loss with the two objects' colours swapped, relative to the true caption "
              f"({len(scenes)} two-object scenes; above 1: the UNet binds each colour to its own object)")
    else:
        scenes = held_out_scenes(num_scenes, seed=seed, min_objects=1, max_objects=1, namespace=7)
        results = word_loss_gaps(components, scenes, timesteps=timesteps, seed=seed)
        print(f"{model}: denoising loss with one caption word changed, relative to the true caption "
              f"({num_scenes} single-object scenes; above 1: the UNet uses that word)")
    print(loss_gap_table(results))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({str(t): losses for t, losses in results.items()}, indent=2) + "\n")
        print(f"wrote {out}")
    return results
