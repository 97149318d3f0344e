"""Where a text-to-image UNet's cross-attention puts a scene's words: a diagnostic of text-to-layout binding.

For single-object scenes noised to timestep ``t``, each cross-attention layer's map of a word token (averaged over
heads) is compared inside and outside the object: the ratio of its mean attention on the object's pixels to its
mean elsewhere. Above 1, the object's pixels attend to that word. Run on the colour word and on the last word of
the position phrase ("left" of "top left", "center").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from interpedit.diffusion import NoiseSchedule
from interpedit.diffusion.unet_hooks import capture_attention
from interpedit.shapes.caption import position_phrase
from interpedit.stable_diffusion.latents import encode_images
from interpedit.stable_diffusion.text_conditioning import encode_prompts


@torch.no_grad()
def word_attention_ratios(components: Any, scenes: list[dict[str, Any]], t: int = 501,
                          seed: int = 0) -> dict[str, dict[str, float]]:
    """``{layer: {"position": ratio, "colour": ratio}}`` over single-object ``scenes`` (``held_out_scenes``)."""
    schedule = NoiseSchedule.from_scheduler(components.scheduler)
    images = torch.stack([scene["image"] for scene in scenes])
    captions = [scene["caption"] for scene in scenes]
    latents = encode_images(components.vae, images)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    noisy = schedule.add_noise(latents, noise, t)
    states = encode_prompts(components.tokenizer, components.text_encoder, captions)
    ids = components.tokenizer(captions, padding="max_length", max_length=states.shape[1], truncation=True,
                               return_tensors="pt").input_ids
    vocabulary = components.tokenizer.get_vocab()
    with capture_attention(components.unet, "*attn2", kind="cross") as maps:
        components.unet(noisy, torch.full((len(scenes),), t), encoder_hidden_states=states)
    results: dict[str, dict[str, float]] = {}
    for layer, calls in maps.items():
        attention = calls[-1].mean(1)  # (B, queries, keys)
        side = int(attention.shape[1] ** 0.5)
        ratios: dict[str, list[float]] = {"position": [], "colour": []}
        for b, scene in enumerate(scenes):
            mask = torch.from_numpy(scene["render"].masks[0]).float()[None, None]
            inside = F.interpolate(mask, size=(side, side), mode="area")[0, 0].flatten() > 0.3
            if not bool(inside.any()) or bool(inside.all()):
                continue
            obj = scene["scene"].objects[0]
            tokens = ids[b].tolist()
            for kind, word in (("position", position_phrase(obj.position).split()[-1]), ("colour", obj.colour)):
                if word in vocabulary and vocabulary[word] in tokens:
                    values = attention[b, :, tokens.index(vocabulary[word])]
                    ratios[kind].append(float(values[inside].mean() / values[~inside].mean().clamp(min=1e-12)))
        results[layer] = {kind: sum(v) / len(v) for kind, v in ratios.items() if v}
    return results
