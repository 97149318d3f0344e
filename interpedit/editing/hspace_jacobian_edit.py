"""Supervised h-space directions confined to a region by the masked Jacobian (Haas et al., FG 2024, Sec. 3.3).

The supervised edit (``HSpaceEdit``) adds one offset to h everywhere, so it may change the whole image. Here, for
each sample and each step, the top ``vectors`` right singular vectors ``V_t`` of ``d(mask * eps)/dh`` along the
sample's own inverted trajectory span the h directions that move the masked part of the output most; the
supervised direction ``d_t`` is replaced by its projection onto that span, ``V_t^T V_t d_t``, rescaled to the norm of
``d_t`` (``keep_norm``) so that the edit's strength stays that of the plain direction.

The mask is the one the user gives with the image (the benchmark's ``edit_mask`` where ``has_mask``), resized to the
UNet's output grid by area: this variant is a masked editor, like the released code's masked Jacobian. A sample
without a mask gets the plain direction (with a warning). Everything else is read as ``HSpaceEdit`` reads it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interpedit.editing.editing_method import EditOutput
from interpedit.editing.hspace_edit import HSpaceEdit
from interpedit.hspace.jacobian import jacobian_directions
from interpedit.hspace.trajectory import HTrajectory, regenerate
from interpedit.user_errors import OptionError


def project_onto_span(direction: Tensor, vectors: Tensor, keep_norm: bool = True) -> Tensor:
    """Per step, ``direction`` (T, *h) projected onto the span of ``vectors`` (k, T, *h; orthonormal per step).

    With ``keep_norm``, each step's projection is rescaled to the norm of that step's direction (a zero projection
    stays zero).
    """
    steps = direction.shape[0]
    flat = direction.reshape(steps, -1)
    basis = vectors.reshape(vectors.shape[0], steps, -1).to(flat)
    coefficients = torch.einsum("ktd,td->kt", basis, flat)
    projected = torch.einsum("kt,ktd->td", coefficients, basis)
    if keep_norm:
        norms = projected.norm(dim=1, keepdim=True)
        projected = torch.where(norms > 0, projected * flat.norm(dim=1, keepdim=True) / norms.clamp(min=1e-12),
                                projected)
    return projected.reshape(direction.shape)


class HSpaceJacobianEdit(HSpaceEdit):
    """Invert, offset h along the supervised direction projected onto the masked Jacobian's top vectors, regenerate.

    Args:
        vectors: singular vectors per step spanning the allowed directions.
        keep_norm: rescale each step's projection to the plain direction's norm.
        max_iterations: block-iteration limit per step (``block_singular_vectors``).
        tol: relative change of the singular values at which the iteration stops.
        cache_dir: where the per-sample singular vectors are cached (keyed by everything they depend on, the mask
            included); None for no cache.
        model, directions, scale, project, inversion, window, seed: as ``HSpaceEdit``.
    """

    name = "hspace_supervised_masked_jacobian"

    def __init__(self, model: str, directions: str, scale: float = 1.0, project: list[str] | None = None,
                 inversion: str = "ddim", window: tuple[int, int] | None = None, seed: int = 0, vectors: int = 8,
                 keep_norm: bool = True, max_iterations: int = 20, tol: float = 1e-3,
                 cache_dir: str | None = None) -> None:
        super().__init__(model, directions, scale, project, inversion, window, seed)
        if vectors < 1:
            raise OptionError(f"HSpaceJacobianEdit.vectors: must be at least 1, got {vectors}")
        self.name = "hspace_supervised_masked_jacobian"
        self.vectors = vectors
        self.keep_norm = keep_norm
        self.max_iterations = max_iterations
        self.tol = tol
        self.cache_dir = cache_dir

    def output_mask(self, edit_mask: Tensor, output_shape: tuple[int, ...]) -> Tensor:
        """(1, C, h, w) mask on the UNet's output grid from a (H, W) image mask (area-resized)."""
        channels, height, width = output_shape
        resized = F.interpolate(edit_mask.float()[None, None], size=(height, width), mode="area")
        return resized.expand(1, channels, height, width).contiguous()

    def confine(self, trajectory: HTrajectory, direction: Tensor, mask: Tensor) -> Tensor:
        """``direction`` (T, *h) of one sample projected onto its masked-Jacobian span."""
        model = self.model
        with torch.enable_grad():
            found = jacobian_directions(model.hspace, model.schedule, trajectory, self.vectors, mask,
                                        oversample=2, tol=self.tol, max_iterations=self.max_iterations,
                                        seed=self.seed, cache_dir=self.cache_dir)
        return project_onto_span(direction, found.vectors.to(direction), self.keep_norm)

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> EditOutput:
        images = batch["source_image"]
        model = self.model
        model.device = images.device
        x0 = model.encode(images)
        trajectory = self.invert(x0)
        offsets = torch.zeros(len(self.timesteps), images.shape[0], *trajectory.hs.shape[2:], device=images.device)
        has_mask = batch.get("has_mask")
        for b, words in enumerate(batch["blended_word"]):
            direction = self.sample_direction(words, b, offsets)
            if direction is None:
                continue
            if has_mask is None or not bool(has_mask[b]) or not bool(batch["edit_mask"][b].any()):
                warnings.warn(f"HSpaceJacobianEdit: sample {b} has no edit mask; it gets the plain direction",
                              UserWarning, stacklevel=2)
            else:
                mask = self.output_mask(batch["edit_mask"][b].to(images.device), tuple(x0.shape[1:]))
                direction = self.confine(trajectory.select([b]), direction, mask)
            offsets[:, b] = direction
        edited = regenerate(model.hspace, model.schedule, trajectory, offsets[None])[0]
        return {"edited": model.decode(edited)}
