"""Zero-shot caption retrieval among a small group of candidates."""

from collections.abc import Sequence

import torch


def caption_retrieval_hits(
    logits_per_image: torch.Tensor, captions: Sequence[str], group_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether each image picks its own caption among the captions of its group, and vice versa.

    The batch is split into consecutive groups of ``group_size``; within a group every image is scored
    against every caption. A pick counts as right when its text equals the true caption, so two scenes
    that happen to share a caption are not counted as errors. A trailing group shorter than
    ``group_size`` is left out, so that every decision is made among exactly ``group_size`` candidates.

    Args:
        logits_per_image: (B, B) similarities of every image to every caption of the batch.
        captions: the B true captions, in batch order.
        group_size: number of candidates per decision.

    Returns:
        ``(image_to_text, text_to_image)``: two (G * group_size,) bool tensors.
    """
    num_groups = len(captions) // group_size
    image_hits, text_hits = [], []
    for g in range(num_groups):
        lo, hi = g * group_size, (g + 1) * group_size
        block = logits_per_image[lo:hi, lo:hi]
        group = list(captions[lo:hi])
        picked_caption = block.argmax(dim=1).tolist()
        picked_image = block.argmax(dim=0).tolist()
        image_hits += [group[j] == group[i] for i, j in enumerate(picked_caption)]
        text_hits += [group[j] == group[i] for i, j in enumerate(picked_image)]
    return torch.tensor(image_hits, dtype=torch.bool), torch.tensor(text_hits, dtype=torch.bool)
