"""Two independently augmented views of one segmented image, for unpaired training.

Each view is one call of a ``torchvision.transforms.v2`` pipeline (random resized crop, horizontal flip,
small rotation) on the image (``tv_tensors.Image``), its region masks (``tv_tensors.Mask``) and their boxes
(``tv_tensors.BoundingBoxes``) together, so the same random parameters move all three: masks cannot drift
away from the pixels they label, which is the bug of transforming them in separate calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from interpedit.data.regions import boxes_from_masks

VIEW_KEYS = ("image", "masks", "region_valid", "boxes")


class _AlignedRandomResizedCrop(v2.RandomResizedCrop):
    """``RandomResizedCrop`` that keeps its last crop and resizes masks with ``nearest-exact``.

    torchvision resizes masks with ``nearest``, which samples source pixel ``floor(i * s)`` while bilinear
    image resizing is centred at ``(i + 0.5) * s - 0.5``: when downscaling by ``s`` the mask lands up to
    ``(s - 1) / 2`` source pixels up and left of the image. ``nearest-exact`` samples the source pixel that
    contains the output pixel's centre, the same convention as the image.
    """

    last_crop: tuple[int, int] | None = None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params = super().make_params(flat_inputs)
        self.last_crop = (params["height"], params["width"])
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            cropped = F.crop_mask(inpt.as_subclass(torch.Tensor), params["top"], params["left"],
                                  params["height"], params["width"])
            resized = F.resize_mask(cropped, list(self.size), interpolation=v2.InterpolationMode.NEAREST_EXACT)
            return tv_tensors.wrap(resized, like=inpt)
        return super().transform(inpt, params)


class PairedViews:
    """Make a source and a target view of the same image under independent random augmentations.

    Args:
        size: output ``(height, width)``, or one int for a square.
        scale: range of the crop's area as a fraction of the image (``RandomResizedCrop``).
        ratio: range of the crop's aspect ratio, width / height.
        flip_probability: probability of a horizontal flip.
        degrees: rotations are drawn uniformly from ``[-degrees, degrees]``; 0 turns rotation off.
        min_region_pixels: a region with fewer visible pixels in a view is marked absent there.
        min_region_fraction: a region is also marked absent when less than this fraction of it stays
            visible (its visible area over its area scaled to the view, i.e. times output area / crop area).
        fill: image value for pixels a rotation brings in from outside (masks get False there).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        *,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_probability: float = 0.5,
        degrees: float = 0.0,
        min_region_pixels: int = 1,
        min_region_fraction: float = 0.0,
        fill: float = 0.0,
    ) -> None:
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(self.size) <= 0:
            raise ValueError(f"PairedViews: size must be positive, got {size}")
        if not (0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"PairedViews: scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not (0.0 < ratio[0] <= ratio[1]):
            raise ValueError(f"PairedViews: ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0.0 <= flip_probability <= 1.0:
            raise ValueError(f"PairedViews: flip_probability must be in [0, 1], got {flip_probability}")
        if degrees < 0:
            raise ValueError(f"PairedViews: degrees must be >= 0, got {degrees}")
        if min_region_pixels < 1:
            raise ValueError(f"PairedViews: min_region_pixels must be >= 1, got {min_region_pixels}")
        if not 0.0 <= min_region_fraction <= 1.0:
            raise ValueError(f"PairedViews: min_region_fraction must be in [0, 1], got {min_region_fraction}")
        self.min_region_pixels = min_region_pixels
        self.min_region_fraction = min_region_fraction
        self.crop = _AlignedRandomResizedCrop(self.size, scale=tuple(scale), ratio=tuple(ratio), antialias=True)
        steps: list[v2.Transform] = [self.crop, v2.RandomHorizontalFlip(flip_probability)]
        if degrees > 0:
            steps.append(
                v2.RandomRotation(
                    degrees,
                    interpolation=v2.InterpolationMode.BILINEAR,
                    fill={tv_tensors.Image: fill, tv_tensors.Mask: 0},
                )
            )
        self.transform = v2.Compose(steps)

    def view(
        self, image: torch.Tensor, masks: torch.Tensor, region_valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One augmented view, drawn from torch's global RNG.

        Args:
            image: (3, H, W) uint8 or float.
            masks: (K, H, W) bool.
            region_valid: (K,) bool.

        Returns:
            ``image`` (3, h, w) of the input dtype, ``masks`` (K, h, w) bool, ``region_valid`` (K,) bool and
            ``boxes`` (K, 4) float32 (``x0, y0, x1, y1``, exclusive end, zeros where absent).
        """
        height, width = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(
            boxes_from_masks(masks), format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
        )
        out_image, out_masks, _ = self.transform(
            tv_tensors.Image(image), tv_tensors.Mask(masks.to(torch.uint8)), boxes
        )
        out_masks = out_masks.as_subclass(torch.Tensor).bool()
        visible = out_masks.flatten(1).sum(dim=1)
        valid = region_valid.bool() & (visible >= self.min_region_pixels)
        if self.min_region_fraction > 0:
            crop_height, crop_width = self.crop.last_crop
            scale = (self.size[0] * self.size[1]) / (crop_height * crop_width)
            expected = masks.flatten(1).sum(dim=1).double() * scale
            valid &= visible.double() >= self.min_region_fraction * expected.clamp_min(1e-12)
        out_masks &= valid[:, None, None]
        # Boxes come from the transformed masks rather than the transformed BoundingBoxes: a rotated box
        # becomes the loose envelope of its rotated corners, and a cropped one keeps the cut-off extent,
        # whereas the mask's own extent is exact by construction.
        return {
            "image": out_image.as_subclass(torch.Tensor),
            "masks": out_masks,
            "region_valid": valid,
            "boxes": boxes_from_masks(out_masks),
        }

    def __call__(
        self,
        image: torch.Tensor,
        masks: torch.Tensor,
        region_valid: torch.Tensor | None = None,
        *,
        generator: torch.Generator | int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw a source and a target view.

        Args:
            image: (3, H, W) uint8 or float.
            masks: (K, H, W) bool; slot ``k`` is the same region in both views.
            region_valid: (K,) bool, False for padding slots (they stay absent); default all True.
            generator: a ``torch.Generator`` or an int seed for reproducible views; None draws from torch's
                global RNG. With a generator, the global RNG state is left untouched.

        Returns:
            ``source_image``, ``source_masks``, ``source_region_valid``, ``source_boxes`` and the four
            ``target_*`` keys, shaped as in ``view``.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"PairedViews: image must be (3, H, W), got shape {tuple(image.shape)}")
        if masks.ndim != 3 or masks.shape[1:] != image.shape[1:]:
            raise ValueError(
                f"PairedViews: masks must be (K, H, W) with the image's H, W {tuple(image.shape[1:])}, "
                f"got shape {tuple(masks.shape)}"
            )
        if region_valid is None:
            region_valid = torch.ones(masks.shape[0], dtype=torch.bool)
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        # v2 transforms draw from torch's global RNG; seeding a forked copy of it from the caller's
        # generator makes views reproducible without disturbing anyone else's random stream.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            source = self.view(image, masks, region_valid)
            target = self.view(image, masks, region_valid)
        result = {f"source_{key}": source[key] for key in VIEW_KEYS}
        result.update({f"target_{key}": target[key] for key in VIEW_KEYS})
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, transform={self.transform})"

