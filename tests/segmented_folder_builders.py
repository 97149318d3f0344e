"""Small builders for segmented-image folders in tests: images, SA-1B JSON, COCO, panoptic, label maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from pycocotools import mask as coco_mask

# Distinct flat colours, one per region, far apart so blending at edges is easy to tell from the inside.
REGION_COLOURS = np.array(
    [[230, 25, 25], [25, 200, 40], [30, 60, 230], [240, 220, 20], [200, 30, 220], [20, 220, 220]], dtype=np.uint8
)
BACKGROUND_COLOUR = np.array([0, 0, 0], dtype=np.uint8)


def rectangle_masks(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Boolean masks (N, H, W) of ``x0, y0, x1, y1`` rectangles (exclusive ends)."""
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    return masks


def paint_regions(masks: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image: region ``k`` in ``REGION_COLOURS[k]``, the rest black (later masks on top)."""
    image = np.broadcast_to(BACKGROUND_COLOUR, (*masks.shape[1:], 3)).copy()
    for k, mask in enumerate(masks):
        image[mask] = REGION_COLOURS[k % len(REGION_COLOURS)]
    return image


def write_image(path: Path, pixels: np.ndarray | Image.Image, *, exif_orientation: int | None = None) -> Path:
    """Save an image (format from the suffix), optionally with an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    kwargs: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    if path.suffix.lower() in (".jpg", ".jpeg"):
        kwargs["quality"] = 95
    image.save(path, **kwargs)
    return path


def coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of an (H, W) bool mask, JSON-ready (``counts`` as str)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (list of run lengths, column-major, starting with background)."""
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def sa1b_record(file_name: str, masks: np.ndarray, height: int | None = None, width: int | None = None) -> dict:
    """An SA-1B per-image record for ``masks`` (N, H, W), with the extra keys SAM writes."""
    height = masks.shape[1] if height is None else height
    width = masks.shape[2] if width is None else width
    annotations = []
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        bbox = [0, 0, 0, 0]
        if xs.size:
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        annotations.append({
            "id": k,
            "segmentation": coco_rle(mask),
            "area": int(mask.sum()),
            "bbox": bbox,
            "predicted_iou": 0.9,
            "stability_score": 0.95,
            "point_coords": [[float(bbox[0]), float(bbox[1])]],
            "crop_box": [0, 0, width, height],
        })
    return {"image": {"image_id": 0, "file_name": file_name, "width": width, "height": height},
            "annotations": annotations}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def add_sa1b_image(
    root: Path, name: str, masks: np.ndarray, pixels: np.ndarray | None = None, **image_kwargs: Any
) -> Path:
    """Write ``root/images/<name>`` (painted regions unless ``pixels``) and ``root/masks/<stem>.json``."""
    pixels = paint_regions(masks) if pixels is None else pixels
    image_path = write_image(root / "images" / name, pixels, **image_kwargs)
    stem = str(Path(name).with_suffix(""))
    write_json(root / "masks" / f"{stem}.json", sa1b_record(name, masks))
    return image_path


def build_sa1b_folder(root: Path) -> dict[str, np.ndarray]:
    """A clean SA-1B folder of three PNGs (one nested, one not square); returns name -> masks (N, H, W)."""
    folder = {
        "a.png": rectangle_masks(48, 64, [(2, 3, 20, 30), (30, 10, 60, 40), (22, 35, 28, 45)]),
        "sub/b.png": rectangle_masks(40, 40, [(0, 0, 40, 12), (5, 20, 35, 38)]),
        "c.png": rectangle_masks(64, 32, [(4, 4, 28, 20), (4, 30, 28, 60), (10, 22, 20, 28), (0, 0, 2, 2)]),
    }
    for name, masks in folder.items():
        add_sa1b_image(root, name, masks)
    return folder


def write_label_map(path: Path, labels: np.ndarray) -> Path:
    """Save an instance label map PNG: 8-bit when labels fit, 16-bit otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = labels.astype(np.uint8) if labels.max() < 256 else labels.astype(np.uint16)
    Image.fromarray(array).save(path)
    return path


def panoptic_png(ids: np.ndarray) -> np.ndarray:
    """RGB pixels encoding segment ids as ``R + 256 * G + 256**2 * B``."""
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def erode(masks: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Binary erosion by a (2p+1)-square, counting outside the view as outside the mask (a rotation blends
    the image with its fill there)."""
    outside = nnf.pad((~masks)[:, None].float(), (pixels,) * 4, value=1.0)
    return ~nnf.max_pool2d(outside, 2 * pixels + 1, stride=1)[:, 0].bool()
