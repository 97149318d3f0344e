"""Region proposals for unlabeled images: SAM's automatic mask generation and the SA-1B JSON cache it fills."""

from interpedit.segmentation.mask_cache import is_done, mask_json_path, read_mask_json, sa1b_record, write_mask_json
from interpedit.segmentation.sam_mask_generator import (
    GeneratedMask,
    SamAutomaticMaskGenerator,
    point_grid,
    stability_scores,
)


__all__ = [
    "GeneratedMask",
    "SamAutomaticMaskGenerator",
    "is_done",
    "mask_json_path",
    "point_grid",
    "read_mask_json",
    "sa1b_record",
    "stability_scores",
    "write_mask_json",
]
