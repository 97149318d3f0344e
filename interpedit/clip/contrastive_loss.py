"""The symmetric InfoNCE loss of CLIP (Radford et al. 2021, Figure 3)."""

import torch
import torch.nn.functional as F


def clip_contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies; matching pairs lie on the diagonal.

    Args:
        logits_per_image: (B, B) scaled similarities, row i = image i against every caption.
    """
    targets = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, targets)
    text_to_image = F.cross_entropy(logits_per_image.t(), targets)
    return 0.5 * (image_to_text + text_to_image)
