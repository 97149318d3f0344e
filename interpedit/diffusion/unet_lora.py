"""LoRA adapters on a diffusers UNet, through diffusers' own peft integration (``UNet2DConditionModel.add_adapter``).

Adding the adapters freezes every original UNet weight; only the low-rank ``lora_A``/``lora_B`` matrices train.
The adapter's settings are read back from the UNet (:func:`unet_lora_settings`), so a saved model can record
them and rebuild the same adapted UNet before loading its weights::

    add_unet_lora(unet, rank=16)                  # attention projections of every transformer block
    settings = unet_lora_settings(unet)           # {"rank": 16, "alpha": 16.0, ...}; None without adapters
    add_unet_lora(fresh_unet, **settings)         # the same structure, ready for load_state_dict
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

# The attention projections of diffusers' transformer blocks: self-attention (attn1) and cross-attention (attn2)
# queries, keys, values and outputs; the choice of diffusers' LoRA training scripts.
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


def add_unet_lora(
    unet: nn.Module,
    rank: int = 16,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: Sequence[str] = DEFAULT_LORA_TARGETS,
) -> None:
    """Add LoRA adapters to ``unet`` in place and freeze its original weights.

    Args:
        unet: a diffusers model with ``add_adapter`` (``UNet2DConditionModel``).
        rank: LoRA rank r.
        alpha: scaling alpha (the update is scaled by alpha / r); None uses ``rank`` (scale 1).
        dropout: dropout on the adapters' input.
        target_modules: names (or name suffixes) of the linear layers that get adapters.

    Raises:
        ValueError: a rank below 1, no target, a target that matches no layer, or a UNet that already has adapters.
    """
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"add_unet_lora: rank must be at least 1, got {rank}")
    targets = list(target_modules)
    if not targets:
        raise ValueError("add_unet_lora: target_modules is empty; name the layers that get adapters, e.g. to_q, to_v")
    if not hasattr(unet, "add_adapter"):
        raise ValueError(f"add_unet_lora: {type(unet).__name__} has no add_adapter (a diffusers model is expected)")
    if getattr(unet, "peft_config", None):
        raise ValueError("add_unet_lora: the UNet already has LoRA adapters")
    names = [name for name, module in unet.named_modules() if isinstance(module, nn.Linear)]
    unmatched = [target for target in targets if not any(name == target or name.endswith("." + target) for name in names)]
    if unmatched:
        raise ValueError(f"add_unet_lora: target_modules {unmatched} match no linear layer of the UNet "
                         f"(the defaults are {', '.join(DEFAULT_LORA_TARGETS)})")
    config = LoraConfig(
        r=rank,
        lora_alpha=float(rank if alpha is None else alpha),
        lora_dropout=dropout,
        init_lora_weights="gaussian",  # A random, B zero: the adapted UNet starts as the original
        target_modules=targets,
    )
    unet.add_adapter(config)
    for name, parameter in unet.named_parameters():
        parameter.requires_grad_("lora_" in name)


def unet_lora_settings(unet: nn.Module) -> dict[str, Any] | None:
    """The ``add_unet_lora`` arguments that rebuild ``unet``'s adapter, or None when it has none."""
    configs = getattr(unet, "peft_config", None)
    if not configs:
        return None
    if len(configs) != 1:
        raise ValueError(f"unet_lora_settings: the UNet has {len(configs)} adapters ({', '.join(configs)}); one is supported")
    config = next(iter(configs.values()))
    return {
        "rank": int(config.r),
        "alpha": float(config.lora_alpha),
        "dropout": float(config.lora_dropout),
        "target_modules": sorted(config.target_modules),
    }


__all__ = ["DEFAULT_LORA_TARGETS", "add_unet_lora", "unet_lora_settings"]
