"""Text conditioning of a Stable Diffusion UNet: prompt embeddings as the diffusers pipelines compute them, and the
shapes CLIP's text tower as an SD text encoder.

SD's pipelines tokenize every prompt padded to ``tokenizer.model_max_length`` and cross-attend to the text
encoder's ``last_hidden_state`` over all those positions, padding included (CLIP's causal mask keeps the padding
from changing the words' states). Training must see exactly what the pipelines will give, so ``encode_prompts``
repeats ``StableDiffusionPipeline.encode_prompt`` (without LoRA scaling or clip-skip); a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


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


def shapes_text_encoder(clip: Any) -> tuple[Any, Any]:
    """The text tower of a ``ShapesCLIP`` as a ``CLIPTextModel`` (no projection) with its word-level tokenizer.

    ``CLIPTextModel`` is the class SD's pipelines load as ``text_encoder``; its ``last_hidden_state`` is the
    tower's final-layer-norm output, the same tensor the shapes CLIP pools its caption embedding from.

    Args:
        clip: a ``interpedit.clip.ShapesCLIP``.

    Returns:
        ``(text_encoder, tokenizer)``, both ready for ``save_pretrained``.
    """
    from transformers import CLIPTextModel

    config = clip.text_model.config
    text_encoder = CLIPTextModel(config)
    # transformers < 5 nests the transformer as ``text_model``; v5 flattens it into the model itself.
    target = getattr(text_encoder, "text_model", text_encoder)
    target.load_state_dict(clip.text_model.text_model.state_dict())
    text_encoder.config.architectures = ["CLIPTextModel"]
    return text_encoder.eval().requires_grad_(False), clip.tokenizer
