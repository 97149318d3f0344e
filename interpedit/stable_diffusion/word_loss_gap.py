"""Which caption words a text-to-image UNet uses: the rise of its denoising loss when one word is changed.

For single-object scenes, the latent is noised at timestep ``t`` with fixed noise, and the UNet predicts the noise
from the true caption, from the caption with one attribute changed (colour, shape, size or position, each to another
value drawn at random), and from the empty caption. A word the UNet uses makes the changed caption's loss higher than
the true one's; a word it ignores leaves the two equal. The empty caption's loss is the unconditional reference.
Layout is decided at high noise, so the gap of the position words is worth reading at large ``t`` (900-980).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from interpedit.diffusion import NoiseSchedule
from interpedit.shapes import COLOURS, SHAPES, SIZES
from interpedit.shapes.attributes import POSITION_WORDS, position_phrase, size_of_radius
from interpedit.stable_diffusion.latents import encode_images
from interpedit.stable_diffusion.text_conditioning import encode_prompts

WORD_KINDS = ("colour", "shape", "size", "position")
"""The attributes whose words are changed, one at a time."""

DEFAULT_TIMESTEPS = (980, 900, 800, 650, 500, 300)


def object_words(obj: Any) -> dict[str, str]:
    """``{"size", "colour", "shape", "position"}`` words of a ``ShapeObject``."""
    return {"size": size_of_radius(obj.radius), "colour": obj.colour, "shape": obj.shape,
            "position": position_phrase(obj.position)}


def phrase(words: dict[str, str]) -> str:
    """The caption of one object with these words (``interpedit.shapes.caption``'s wording)."""
    return f"a {words['size']} {words['colour']} {words['shape']} at the {words['position']}"


def changed_captions(scenes: Sequence[dict[str, Any]], kind: str, rng: np.random.Generator) -> list[str]:
    """The scenes' single-object captions with the ``kind`` word replaced by another value of that attribute."""
    choices = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "position": POSITION_WORDS}[kind]
    captions = []
    for scene in scenes:
        words = object_words(scene["scene"].objects[0])
        words[kind] = str(rng.choice([value for value in choices if value != words[kind]]))
        captions.append(phrase(words))
    return captions


@torch.no_grad()
def word_loss_gaps(components: Any, scenes: Sequence[dict[str, Any]], *,
                   timesteps: Sequence[int] = DEFAULT_TIMESTEPS, seed: int = 0,
                   batch_size: int = 16) -> dict[int, dict[str, float]]:
    """``{t: {"true": mse, "colour": mse, "shape": mse, "size": mse, "position": mse, "empty": mse}}``.

    Args:
        components: anything with ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler`` and ``unet`` (a loaded
            pipeline or ``load_stable_diffusion``'s result).
        scenes: single-object scenes (``held_out_scenes(..., min_objects=1, max_objects=1)``).
        timesteps: the training timesteps at which to measure.
        seed: seed of the noise and of the replacement words; the same noise serves every caption.
        batch_size: scenes per UNet call.
    """
    if any(len(scene["scene"].objects) != 1 for scene in scenes):
        raise ValueError("word_loss_gaps: every scene must hold exactly one object (held_out_scenes(max_objects=1))")
    rng = np.random.default_rng(seed)
    captions = {"true": [scene["caption"] for scene in scenes]}
    captions.update({kind: changed_captions(scenes, kind, rng) for kind in WORD_KINDS})
    captions["empty"] = [""] * len(scenes)
    return caption_losses(components, scenes, captions, timesteps=timesteps, seed=seed, batch_size=batch_size)


def swapped_colour_captions(scenes: Sequence[dict[str, Any]]) -> list[str]:
    """Two-object captions with the objects' colours exchanged: the same words, bound the other way round."""
    captions = []
    for scene in scenes:
        objects = scene["scene"].objects
        if len(objects) != 2 or objects[0].colour == objects[1].colour:
            raise ValueError("swapped_colour_captions: every scene must hold two objects of different colours "
                             "(quality.two_object_scenes)")
        first, second = (object_words(obj) for obj in objects)
        first["colour"], second["colour"] = second["colour"], first["colour"]
        captions.append(f"{phrase(first)} and {phrase(second)}")
    return captions


@torch.no_grad()
def binding_loss_gaps(components: Any, scenes: Sequence[dict[str, Any]], *,
                      timesteps: Sequence[int] = DEFAULT_TIMESTEPS, seed: int = 0,
                      batch_size: int = 16) -> dict[int, dict[str, float]]:
    """``{t: {"true": mse, "swapped": mse, "empty": mse}}`` on two-object scenes of different colours.

    ``swapped`` names the same colours, shapes, sizes and positions as the true caption, with the two colours
    exchanged between the objects, so only a UNet that binds each colour to its own clause tells the two apart: a
    ratio swapped / true of 1 means no binding at all.
    """
    captions = {"true": [scene["caption"] for scene in scenes], "swapped": swapped_colour_captions(scenes),
                "empty": [""] * len(scenes)}
    return caption_losses(components, scenes, captions, timesteps=timesteps, seed=seed, batch_size=batch_size)


@torch.no_grad()
def caption_losses(components: Any, scenes: Sequence[dict[str, Any]], captions: dict[str, Sequence[str]], *,
                   timesteps: Sequence[int], seed: int, batch_size: int) -> dict[int, dict[str, float]]:
    """``{t: {name: mse}}``: the UNet's noise-prediction loss on the scenes' latents noised at each ``t`` with one
    fixed noise, conditioned on each list of ``captions`` (one caption per scene)."""
    schedule = NoiseSchedule.from_scheduler(components.scheduler)
    images = torch.stack([scene["image"] for scene in scenes])
    unet = components.unet
    parameter = next(unet.parameters())
    latents = encode_images(components.vae, images.to(parameter.device)).float()
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    results: dict[int, dict[str, float]] = {}
    for t in timesteps:
        steps = torch.full((len(scenes),), int(t), device=latents.device)
        noisy = schedule.add_noise(latents, noise, steps)
        results[int(t)] = {}
        for name, texts in captions.items():
            total = 0.0
            for start in range(0, len(scenes), batch_size):
                end = start + batch_size
                states = encode_prompts(components.tokenizer, components.text_encoder, list(texts[start:end]))
                prediction = unet(noisy[start:end].to(parameter.dtype), steps[start:end],
                                  encoder_hidden_states=states.to(parameter.device, parameter.dtype)).sample
                total += float(((prediction.float() - noise[start:end]) ** 2).mean(dim=(1, 2, 3)).sum())
            results[int(t)][name] = total / len(scenes)
    return results


def loss_gap_table(results: dict[int, dict[str, float]]) -> str:
    """Markdown: per timestep, the true caption's loss and each changed caption's loss relative to it."""
    names = [name for name in next(iter(results.values())) if name != "true"]
    lines = ["| t | true caption MSE | " + " | ".join(f"{name} / true" for name in names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for t, losses in results.items():
        ratios = " | ".join(f"{losses[name] / losses['true']:.4f}" for name in names)
        lines.append(f"| {t} | {losses['true']:.5f} | {ratios} |")
    return "\n".join(lines)
