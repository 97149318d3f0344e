"""Text conditioning of a Stable Diffusion UNet: prompt embeddings as the diffusers pipelines compute them, and the
shapes CLIP's text tower as an SD text encoder.

SD's pipelines tokenize every prompt padded to ``tokenizer.model_max_length`` and cross-attend to the text
encoder's ``last_hidden_state`` over all those positions, padding included (CLIP's causal mask keeps the padding
from changing the words' states). Training must see exactly what the pipelines will give, so ``encode_prompts``
repeats ``StableDiffusionPipeline.encode_prompt`` (without LoRA scaling or clip-skip); a test checks the two agree.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from interpedit.user_errors import OptionError


def encode_prompts(tokenizer: Any, text_encoder: torch.nn.Module, prompts: Sequence[str]) -> Tensor:
    """Prompt embeddings (B, L, D) for the UNet's cross-attention, ``L = tokenizer.model_max_length``.

    Args:
        tokenizer: the pipeline's tokenizer.
        text_encoder: the pipeline's ``CLIPTextModel``.
        prompts: B prompts; ``""`` is the unconditional prompt of classifier-free guidance.
    """
    tokens = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    attention_mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        attention_mask = tokens.attention_mask.to(device)
    return text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]


def shapes_text_encoder(clip: Any, num_layers: int | None = None) -> tuple[Any, Any]:
    """The text tower of a ``ShapesCLIP`` as a ``CLIPTextModel`` (no projection) with its word-level tokenizer.

    ``CLIPTextModel`` is the class SD's pipelines load as ``text_encoder``; its ``last_hidden_state`` is the
    tower's final-layer-norm output. With ``num_layers`` the tower keeps only its first layers (its embeddings and
    final layer norm always stay), the way SD 2 ships OpenCLIP's text tower without its last layer so that the
    pipelines' ``last_hidden_state`` is the penultimate one. ``word_sensitivity`` measures why the shapes
    pipeline needs this: the shapes CLIP's transformer layers keep colour and size but discard shape and position
    words, which its contrastive objective never needed.

    Args:
        clip: a ``interpedit.clip.ShapesCLIP``.
        num_layers: transformer layers to keep, from 0 to the tower's depth; None keeps them all.

    Returns:
        ``(text_encoder, tokenizer)``, both ready for ``save_pretrained``.
    """
    from transformers import CLIPTextModel

    config = copy.deepcopy(clip.text_model.config)
    depth = int(config.num_hidden_layers)
    if num_layers is not None:
        if not 0 <= num_layers <= depth:
            raise OptionError(f"shapes_text_encoder.num_layers: {num_layers} is outside [0, {depth}], the tower's depth")
        config.num_hidden_layers = num_layers
    text_encoder = CLIPTextModel(config)
    # transformers < 5 nests the transformer as ``text_model``; v5 flattens it into the model itself.
    target = getattr(text_encoder, "text_model", text_encoder)
    source = clip.text_model.text_model.state_dict()
    kept = {key: value for key, value in source.items() if key in target.state_dict()}
    target.load_state_dict(kept)
    text_encoder.config.architectures = ["CLIPTextModel"]
    return text_encoder.eval().requires_grad_(False), clip.tokenizer


@torch.no_grad()
def word_sensitivity(tokenizer: Any, text_encoder: torch.nn.Module) -> dict[str, float]:
    """How much the prompt embeddings change when one attribute word of a shapes prompt changes.

    For each attribute (``colour``, ``shape``, ``size``, ``position``), ``"a medium yellow circle at the center"``
    with that attribute set to each of its values is encoded (``encode_prompts``); the result
    is their mean pairwise distance divided by their mean norm. Near 0, the UNet's cross-attention cannot tell the
    values apart, so no amount of training makes samples follow those words.
    """
    from interpedit.shapes.attributes import COLOURS, POSITION_WORDS, SHAPES, SIZES

    base = {"size": "medium", "colour": "yellow", "shape": "circle", "position": "center"}
    values = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES), "position": list(POSITION_WORDS)}
    result = {}
    for attribute, options in values.items():
        prompts = []
        for option in options:
            words = {**base, attribute: option}
            prompts.append(f"a {words['size']} {words['colour']} {words['shape']} at the {words['position']}")
        flat = encode_prompts(tokenizer, text_encoder, prompts).flatten(1).float()
        pairs = len(prompts) * (len(prompts) - 1)
        result[attribute] = float(torch.cdist(flat, flat).sum() / pairs / flat.norm(dim=1).mean())
    return result
