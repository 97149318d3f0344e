"""CLIP's image preprocessing as tensor operations that a gradient flows through.

The metrics feed CLIP the way torchmetrics' ``CLIPScore`` does: 8-bit images through the processor (PIL resizing
for a transformers CLIP), which cuts any gradient. A loss that must backpropagate into the image (Learnable
Regions' soft-mask estimator) needs the same preprocessing on float tensors:

- a ``ShapesCLIPProcessor``: bilinear (antialiased) resize to the model's side, values in [0, 1], as its own
  ``_pixel_values`` does;
- a transformers ``CLIPProcessor`` / ``CLIPImageProcessor``: resize of the shortest edge to ``size`` (bicubic,
  antialiased, the processor's PIL bicubic up to interpolation details), centre crop to ``crop_size``, and
  normalisation with ``image_mean`` / ``image_std``.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from interpedit.metrics.metric_inputs import evaluation_mode, float32_arithmetic


def _side(value: Any, name: str) -> tuple[int, int] | int:
    if isinstance(value, int):
        return value

    def field(key: str) -> Any:  # a dict, or transformers 5's SizeDict (attributes, None where unset)
        return value.get(key) if isinstance(value, dict) else getattr(value, key, None)

    if field("shortest_edge") is not None:
        return int(field("shortest_edge"))
    if field("height") is not None and field("width") is not None:
        return int(field("height")), int(field("width"))
    raise ValueError(f"clip_pixel_values: the image processor's {name} {value!r} is not a side or a height/width")


def clip_pixel_values(processor: Any, images: Tensor) -> Tensor:
    """(B, 3, H, W) images in [0, 1] -> the (B, 3, S, S) ``pixel_values`` CLIP reads, differentiably."""
    from interpedit.clip.shapes_clip_processor import ShapesCLIPProcessor

    images = images.float()
    if isinstance(processor, ShapesCLIPProcessor):
        size = (processor.image_size, processor.image_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                                   antialias=processor.antialias)
        return images.clamp(0.0, 1.0)
    image_processor = getattr(processor, "image_processor", processor)
    if not hasattr(image_processor, "image_mean"):
        raise TypeError(f"clip_pixel_values: {type(processor).__name__} is neither a ShapesCLIPProcessor nor a "
                        "transformers CLIP image processor")
    height, width = images.shape[-2:]
    if getattr(image_processor, "do_resize", True):
        side = _side(image_processor.size, "size")
        if isinstance(side, int):  # the shortest edge to `side`, the other in proportion (as transformers rounds)
            short, long = min(height, width), max(height, width)
            new_long = int(side * long / short)
            size = (side, new_long) if height <= width else (new_long, side)
        else:
            size = side
        if size != (height, width):
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)
    if getattr(image_processor, "do_center_crop", True):
        crop = _side(image_processor.crop_size, "crop_size")
        crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
        height, width = images.shape[-2:]
        top, left = (height - crop_h) // 2, (width - crop_w) // 2  # transformers' centre crop
        images = images[..., max(top, 0):max(top, 0) + crop_h, max(left, 0):max(left, 0) + crop_w]
    images = images.clamp(0.0, 1.0)
    if getattr(image_processor, "do_normalize", True):
        mean = images.new_tensor(image_processor.image_mean)[:, None, None]
        std = images.new_tensor(image_processor.image_std)[:, None, None]
        images = (images - mean) / std
    return images


def clip_image_features(model: nn.Module, processor: Any, images: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, D) float32 image features (not normalised), with the gradient kept."""
    pixel_values = clip_pixel_values(processor, images)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    with float32_arithmetic(pixel_values.device), evaluation_mode(model):
        output = model.get_image_features(pixel_values)
    pooled = output if isinstance(output, Tensor) else getattr(output, "pooler_output", None)
    if not isinstance(pooled, Tensor):
        raise TypeError(f"get_image_features returned {type(output).__name__}; expected a tensor or a pooler_output")
    return pooled.float()
