"""A folder of SA-1B per-image mask JSONs, written atomically so that an interrupted run can resume.

Layout: the masks of ``<images>/<sub/dir/img.jpg>`` go to ``<out>/<sub/dir/img>.json``, in SA-1B's per-image
form (the one ``interpedit.data.annotations.read_sa1b_json`` reads)::

    {"image": {"image_id": 0, "file_name": "sub/dir/img.jpg", "width": 640, "height": 480},
     "annotations": [{"id": 0, "segmentation": {"size": [480, 640], "counts": "<COCO RLE>"}, "area": 1234,
                      "bbox": [x, y, w, h], "predicted_iou": 0.93, "stability_score": 0.97,
                      "point_coords": [[x, y]], "crop_box": [0, 0, 640, 480]}]}

A JSON is written to a hidden temporary file next to its target, flushed to disk, then renamed over the target
(``os.replace`` is atomic), so a JSON that exists is always complete: a run killed at any point leaves either
no file or a whole one, and the next run skips exactly the images that are done. A run killed mid-write may
leave a hidden ``.<name>.json.<random>.tmp`` file behind; it is never read and can be deleted.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from interpedit.data.image_io import DataFileError
from interpedit.segmentation.sam_mask_generator import GeneratedMask


def mask_json_path(out_dir: str | Path, file_name: str) -> Path:
    """Where the masks of the image ``file_name`` (relative to the images folder, ``/``-separated) go."""
    relative = PurePosixPath(file_name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"image file name {file_name!r} must be relative to the images folder, without '..'")
    return Path(out_dir).joinpath(*relative.with_suffix(".json").parts)


def sa1b_record(
    image_id: int, file_name: str, height: int, width: int, masks: Sequence[GeneratedMask]
) -> dict[str, Any]:
    """The SA-1B per-image JSON object for one image's masks.

    Args:
        image_id: index of the image in the sorted folder listing.
        file_name: image path relative to the images folder, ``/``-separated.
        height, width: the image's size (after EXIF orientation), which every mask must have.
        masks: the masks, in the order to store them (their ``id`` is their position).

    Raises:
        ValueError: a mask's size differs from the image's.
    """
    annotations = []
    for index, mask in enumerate(masks):
        if list(mask.rle["size"]) != [height, width]:
            raise ValueError(
                f"{file_name}: mask {index} is {mask.rle['size'][0]}x{mask.rle['size'][1]} but the image is "
                f"{height}x{width}"
            )
        annotations.append(
            {
                "id": index,
                "segmentation": {"size": [height, width], "counts": mask.rle["counts"]},
                "area": int(mask.area),
                "bbox": [float(v) for v in mask.bbox],
                "predicted_iou": float(mask.predicted_iou),
                "stability_score": float(mask.stability_score),
                "point_coords": [[float(mask.point_coords[0]), float(mask.point_coords[1])]],
                "crop_box": [int(v) for v in mask.crop_box],
            }
        )
    return {
        "image": {"image_id": int(image_id), "file_name": file_name, "width": int(width), "height": int(height)},
        "annotations": annotations,
    }


def write_mask_json(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            json.dump(record, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates the file readable by its owner only; give it the usual permissions.
        os.chmod(handle.name, 0o666 & ~_current_umask())
        os.replace(handle.name, path)
    except BaseException:
        # Whatever stopped the write (an error, Ctrl-C), the half-written temporary file must not stay behind.
        Path(handle.name).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def read_mask_json(path: str | Path) -> dict[str, Any]:
    """Read one mask JSON, checking the fields this module writes.

    Raises:
        ValueError: invalid JSON or a missing/mis-sized field, with the file and the field in the message.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFileError(path, f"not valid JSON ({error})") from error
    image = record.get("image") if isinstance(record, dict) else None
    if not isinstance(image, dict) or not all(key in image for key in ("file_name", "width", "height")):
        raise ValueError(f'{path}: missing "image" entry with file_name, width and height')
    annotations = record.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(f'{path}: missing "annotations" list')
    for index, annotation in enumerate(annotations):
        size = annotation.get("segmentation", {}).get("size") if isinstance(annotation, dict) else None
        if size != [image["height"], image["width"]]:
            raise ValueError(
                f"{path}: mask {index} has size {size} but the image is {image['height']}x{image['width']}"
            )
    return record


def is_done(out_dir: str | Path, file_name: str) -> bool:
    """Whether the masks of ``file_name`` are already written (a JSON that exists is always complete)."""
    return mask_json_path(out_dir, file_name).is_file()
