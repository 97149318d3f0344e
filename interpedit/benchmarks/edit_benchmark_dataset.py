"""Edit-benchmark samples as tensors, optionally resized to one square size, and their collation.

An item (``H x W`` the image's size, or ``resolution x resolution``) holds:

- ``image_id``: str, the entry's key; ``index``: () long, the item's position in the dataset.
- ``source_image``: (3, H, W) float32 in [0, 1].
- ``source_prompt``, ``target_prompt``: str without brackets; ``source_prompt_bracketed``,
  ``target_prompt_bracketed``: as written in the benchmark; ``instruction``, ``blended_word``: str (``""`` when
  the benchmark has none).
- ``edit_type_id``, ``edit_type``: str (``"6"``, ``"change attribute color"``; see ``edit_types``).
- ``edit_mask``: (H, W) bool region to edit, all False without one; ``has_mask``: () bool.
- ``target_image``: (3, H, W) float32 exact edited image, zeros without one; ``has_target``: () bool.

Shapes ground truth (zeros, False or -1 unless ``has_target``), about the *primary* edited object, the first of the
edit's objects (a swap's second object mirrors it):

- ``source_object_mask``, ``target_object_mask``: (H, W) bool label-map masks (``labels == index + 1``) of the
  object in the source and in the target; ``source_object_footprint``, ``target_object_footprint``: (H, W) bool
  footprints (every pixel it touches, a superset of the label mask); ``has_source_object`` (False for add),
  ``has_target_object`` (False for remove): () bool.
- ``requested_colour``, ``requested_shape``: () long, class ids (``COLOURS``, ``SHAPES``) of the object in the
  target; -1 when there is none (remove).
- ``target_object``: dict with ``position`` (2,) float32 normalised ``x, y``, ``radius`` () float32, ``rotation``
  () float32 radians clockwise, ``shape``, ``colour``, ``size`` () long class ids (-1 and zeros when absent).
- ``target_scene``: str, the whole true target scene as JSON (``json.dumps(Scene.to_dict())``, background and
  every object in drawing order; ``Scene.from_dict(json.loads(...))`` reads it back), ``""`` without ground truth;
  ``target_object_index``: () long, the primary edited object's index in it, -1 when there is none (remove);
  ``supersample``: () long, the renderer's samples per pixel side of the export, 0 without ground truth.
  ``render(scene, side, supersample)`` redraws the target image, which is how shape accuracy judges shapes.
- ``source_scene``: str, the source scene as JSON, like ``target_scene``; ``edit``: str, the exact edit as JSON
  (``type``, ``params``, ``objects``, ``target_indices``, as in the export; see ``interpedit.shapes.edits``), which
  is how methods that take structured requests (the region autoencoder) read what to do; ``""`` without ground
  truth.
- ``source_labels``, ``target_labels``: (H, W) int64 instance label maps of the whole source and target scenes
  (0 = background, ``i + 1`` = object ``i`` of that scene, the renderer's majority rule), resized like the masks
  (nearest-exact); all -1 without ground truth.

Resizing (``resolution`` an int): the shorter side is scaled to ``resolution`` (images bilinear with
antialiasing, masks nearest-exact, so both sample the same pixel centres), then the centre
``resolution x resolution`` square is cut. PIE-Bench and shapes images are square, so this is a plain resize;
non-square images (Learnable Regions) lose the ends of their longer side. Normalised positions in
``target_object`` and ``target_scene`` describe the uncropped square image and are not changed; a scene rendered
at the new side is close to, but not pixel-identical with, the resized target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from interpedit.benchmarks.edit_sample import BenchmarkError, EditSample, ShapesGroundTruth
from interpedit.benchmarks.pie_bench import decode_mask
from interpedit.benchmarks.shapes_benchmark import decode_footprint, read_label_map
from interpedit.data.image_io import ImageLoadError, load_image
from interpedit.data.segmented_folder import nearest_exact_indices, resize_image, shorter_side_size
from interpedit.shapes.attributes import COLOURS, SHAPES, SIZES
from interpedit.user_errors import OptionError

OBJECT_MASK_KEYS: tuple[str, ...] = (
    "source_object_mask",
    "source_object_footprint",
    "target_object_mask",
    "target_object_footprint",
)
"""(H, W) bool masks of the primary edited object."""


class EditBenchmarkDataset(Dataset):
    """Loads the pixels of indexed benchmark samples (see the module docstring for an item's keys).

    Args:
        samples: the benchmark's entries (``read_edit_benchmark``).
        resolution: square side to resize and centre-crop to; None keeps each image's own size.
    """

    def __init__(self, samples: Sequence[EditSample], resolution: int | None = None) -> None:
        if resolution is not None and resolution < 1:
            raise OptionError(f"EditBenchmarkDataset.resolution: must be positive or None, got {resolution}")
        self.samples = list(samples)
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        sample = self.samples[index]
        size = (sample.height, sample.width)
        source_image = self._load_image(sample, sample.image_path)
        if tuple(source_image.shape[-2:]) != size:
            raise BenchmarkError(
                sample.benchmark_file,
                f"entry {sample.image_id!r}: {sample.image_path} now decodes to "
                f"{source_image.shape[-2]}x{source_image.shape[-1]}, not the {size[0]}x{size[1]} its header said",
            )
        has_mask = sample.mask_rle is not None
        edit_mask = torch.from_numpy(decode_mask(sample)) if has_mask else torch.zeros(size, dtype=torch.bool)
        item: dict[str, Any] = {
            "image_id": sample.image_id,
            "index": torch.tensor(index, dtype=torch.long),
            "source_image": self._fit_image(source_image),
            "source_prompt": sample.source_prompt,
            "target_prompt": sample.target_prompt,
            "source_prompt_bracketed": sample.source_prompt_bracketed,
            "target_prompt_bracketed": sample.target_prompt_bracketed,
            "instruction": sample.instruction,
            "blended_word": sample.blended_word,
            "edit_type_id": sample.edit_type_id,
            "edit_type": sample.edit_type,
            "edit_mask": self._fit_mask(edit_mask),
            "has_mask": torch.tensor(has_mask),
        }
        item.update(self._shapes_ground_truth(sample, item["source_image"].shape[-2:]))
        return item

    def _shapes_ground_truth(self, sample: EditSample, out_size: torch.Size) -> dict[str, Any]:
        truth = sample.shapes
        empty = torch.zeros(out_size, dtype=torch.bool)
        fields: dict[str, Any] = {
            "target_image": torch.zeros(3, *out_size),
            "has_target": torch.tensor(truth is not None),
            **{key: empty.clone() for key in OBJECT_MASK_KEYS},
            "has_source_object": torch.tensor(False),
            "has_target_object": torch.tensor(False),
            "requested_colour": torch.tensor(-1),
            "requested_shape": torch.tensor(-1),
            "target_object": {
                "position": torch.zeros(2),
                "radius": torch.tensor(0.0),
                "rotation": torch.tensor(0.0),
                "shape": torch.tensor(-1),
                "colour": torch.tensor(-1),
                "size": torch.tensor(-1),
            },
            "target_scene": "",
            "source_scene": "",
            "edit": "",
            "target_object_index": torch.tensor(-1),
            "supersample": torch.tensor(0),
            "source_labels": torch.full(tuple(out_size), -1, dtype=torch.long),
            "target_labels": torch.full(tuple(out_size), -1, dtype=torch.long),
        }
        if truth is None:
            return fields
        fields["target_image"] = self._fit_image(self._load_image(sample, truth.target_image))
        fields["target_scene"] = json.dumps(truth.target_scene.to_dict())
        fields["source_scene"] = json.dumps(truth.source_scene.to_dict())
        fields["edit"] = json.dumps(truth.edit)
        fields["supersample"] = torch.tensor(truth.supersample)
        where = f"entry {sample.image_id!r}"
        source_labels = read_label_map(
            truth.source_labels, source=sample.benchmark_file, where=f"{where}: source labels"
        )
        target_labels = read_label_map(
            truth.target_labels, source=sample.benchmark_file, where=f"{where}: target labels"
        )
        fields["source_labels"] = self._fit_mask(torch.from_numpy(source_labels))
        fields["target_labels"] = self._fit_mask(torch.from_numpy(target_labels))
        if truth.source_index is not None:
            fields["source_object_mask"] = self._fit_mask(torch.from_numpy(source_labels == truth.source_index + 1))
            fields["source_object_footprint"] = self._footprint(sample, truth, "source", truth.source_index)
            fields["has_source_object"] = torch.tensor(True)
        if truth.target_index is not None:
            fields["target_object_mask"] = self._fit_mask(torch.from_numpy(target_labels == truth.target_index + 1))
            fields["target_object_footprint"] = self._footprint(sample, truth, "target", truth.target_index)
            fields["has_target_object"] = torch.tensor(True)
            fields["target_object_index"] = torch.tensor(truth.target_index)
            obj = truth.target_objects[truth.target_index]
            colour, shape = COLOURS.index(obj.colour), SHAPES.index(obj.shape)
            fields["requested_colour"], fields["requested_shape"] = torch.tensor(colour), torch.tensor(shape)
            fields["target_object"] = {
                "position": torch.tensor(obj.position, dtype=torch.float32),
                "radius": torch.tensor(obj.radius, dtype=torch.float32),
                "rotation": torch.tensor(obj.rotation, dtype=torch.float32),
                "shape": torch.tensor(shape),
                "colour": torch.tensor(colour),
                "size": torch.tensor(SIZES.index(obj.size)),
            }
        return fields

    def _footprint(self, sample: EditSample, truth: ShapesGroundTruth, scene: str, index: int) -> torch.Tensor:
        footprints = truth.source_footprints if scene == "source" else truth.target_footprints
        where = f"entry {sample.image_id!r}: {scene}_objects[{index}]: 'footprint'"
        mask = decode_footprint(footprints[index], source=sample.benchmark_file, where=where)
        return self._fit_mask(torch.from_numpy(mask))

    def _load_image(self, sample: EditSample, path: Any) -> torch.Tensor:
        try:
            return load_image(path).float() / 255.0
        except ImageLoadError as exc:
            raise BenchmarkError(sample.benchmark_file, f"entry {sample.image_id!r}: {exc}") from exc

    def _fit_image(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) float -> (3, R, R) with ``resolution`` R (see the module docstring); unchanged without one."""
        if self.resolution is None:
            return image
        resized = resize_image(image, shorter_side_size(image.shape[-2], image.shape[-1], self.resolution))
        return self._centre_crop(resized)

    def _fit_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(H, W) bool or label map -> (R, R), nearest-exact, the same pixels ``_fit_image`` keeps."""
        if self.resolution is None:
            return mask
        height, width = mask.shape
        new_height, new_width = shorter_side_size(height, width, self.resolution)
        rows = torch.from_numpy(nearest_exact_indices(height, new_height))
        cols = torch.from_numpy(nearest_exact_indices(width, new_width))
        return self._centre_crop(mask[rows][:, cols])

    def _centre_crop(self, tensor: torch.Tensor) -> torch.Tensor:
        side = int(self.resolution or 0)
        height, width = tensor.shape[-2:]
        top, left = (height - side) // 2, (width - side) // 2
        return tensor[..., top : top + side, left : left + side].contiguous()


def collate_edit_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch: tensors gain a leading B, strings become lists, ``target_object`` stays a dict.

    Raises:
        ValueError: the items' images differ in size (native sizes with a batch size above one).
    """
    sizes = {tuple(item["source_image"].shape[-2:]) for item in items}
    if len(sizes) > 1:
        found = ", ".join(
            f"{item['image_id']} {item['source_image'].shape[-2]}x{item['source_image'].shape[-1]}" for item in items
        )
        raise ValueError(
            f"a batch mixes image sizes ({found}); set resolution to resize every image to one square size, "
            "or use batch_size: 1"
        )
    return default_collate(items)

