"""Region tokens as the UNet's cross-attention sequence, in place of text tokens, with classifier-free guidance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from interpedit.user_errors import OptionError


@dataclass
class RegionConditioningOutput:
    """A cross-attention sequence for ``UNet2DConditionModel`` (``S = K``, plus one with the global slot).

    Attributes:
        encoder_hidden_states: (B, S, C) with ``C`` the UNet's ``cross_attention_dim``.
        encoder_attention_mask: (B, S) bool, True on slots holding a region and on the global slot. Pass it as
            the UNet's ``encoder_attention_mask`` to make it ignore null slots, or leave it out to let the UNet
            attend to the null tokens (the original code attended to its zero padding).
    """

    encoder_hidden_states: torch.Tensor
    encoder_attention_mask: torch.Tensor


class RegionConditioning(nn.Module):
    """Projects region tokens to the UNet's cross-attention width and fills empty slots with a learned null token.

    The unconditional sequence for classifier-free guidance is every slot null. With ``global_token``, a learned
    slot is prepended to every sequence, conditional and unconditional alike, like the start token of a CLIP
    prompt: Stable Diffusion's cross-attention parks much of its attention on that first token, and a fixed slot
    gives it that place without forcing the mass onto region slots. It also gives a sample without any region a
    non-null slot.

    Args:
        token_dim: width of the region tokens.
        cross_attention_dim: the UNet's ``cross_attention_dim`` (768 for SD 1.x, 1024 for SD 2.x).
        global_token: prepend a learned global slot.
    """

    def __init__(self, token_dim: int, cross_attention_dim: int, global_token: bool = True) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(token_dim, cross_attention_dim), nn.LayerNorm(cross_attention_dim))
        # Unit-scale initialisation, like the LayerNorm'd region tokens they stand next to.
        self.null_token = nn.Parameter(torch.randn(cross_attention_dim))
        self.global_token = nn.Parameter(torch.randn(cross_attention_dim)) if global_token else None

    @property
    def num_extra_slots(self) -> int:
        """Slots in front of the region slots (1 with the global slot, else 0)."""
        return int(self.global_token is not None)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> RegionConditioningOutput:
        """Build the conditional sequence.

        Args:
            tokens: (B, K, token_dim) region tokens.
            valid: (B, K) bool; invalid slots get the null token.

        Returns:
            ``RegionConditioningOutput`` with (B, K + num_extra_slots, C) states.
        """
        if valid.shape != tokens.shape[:2]:
            raise ValueError(
                f"RegionConditioning: valid {tuple(valid.shape)} does not match tokens {tuple(tokens.shape)}"
            )
        projected = self.projection(tokens)
        null = self.null_token.to(projected.dtype).expand_as(projected)
        states = torch.where(valid[..., None], projected, null)
        return self._with_global_slot(states, valid.bool())

    def unconditional(self, batch_size: int, num_slots: int) -> RegionConditioningOutput:
        """The all-null sequence, (B, num_slots + num_extra_slots, C), for classifier-free guidance."""
        states = self.null_token.expand(batch_size, num_slots, -1)
        valid = torch.zeros(batch_size, num_slots, dtype=torch.bool, device=states.device)
        return self._with_global_slot(states, valid)

    def cfg_dropout(
        self,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        p: float,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Drop whole samples' conditioning with probability ``p``, for classifier-free guidance training.

        A dropped sample has every slot invalid and its tokens zeroed, so ``forward`` gives it exactly the
        unconditional sequence (the original recipe used p = 0.12).

        Args:
            tokens: (B, K, D) region tokens.
            valid: (B, K) bool.
            p: drop probability per sample, in [0, 1].
            generator: source of randomness (on the CPU or on the tokens' device).

        Returns:
            ``(tokens, valid, dropped)``: new (B, K, D) tokens, (B, K) validity and (B,) bool, True where the
            sample's conditioning was dropped (useful to loss terms that depend on the regions).
        """
        if not 0.0 <= p <= 1.0:
            raise OptionError(f"RegionConditioning.cfg_dropout: p must be in [0, 1], got {p}")
        batch = tokens.shape[0]
        device = generator.device if generator is not None else tokens.device
        dropped = (torch.rand(batch, generator=generator, device=device) < p).to(tokens.device)
        keep = ~dropped[:, None]
        return torch.where(keep[..., None], tokens, torch.zeros_like(tokens)), valid & keep, dropped

    def _with_global_slot(self, states: torch.Tensor, valid: torch.Tensor) -> RegionConditioningOutput:
        if self.global_token is None:
            return RegionConditioningOutput(states, valid)
        batch = states.shape[0]
        first = self.global_token.to(states.dtype).expand(batch, 1, -1)
        attend_first = torch.ones(batch, 1, dtype=torch.bool, device=valid.device)
        return RegionConditioningOutput(torch.cat([first, states], dim=1), torch.cat([attend_first, valid], dim=1))
