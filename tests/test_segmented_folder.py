"""SegmentedImageFolder and SegmentedFolderDataModule: formats, alignment, budget, reproducibility, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datamodules.segmented_folder import SegmentedFolderDataModule
from interpedit.data.image_io import DataFileError
from interpedit.data.paired_views import PairedViews
from interpedit.data.regions import boxes_from_masks
from interpedit.data.segmented_folder import EpochIndexSampler, SegmentedImageFolder
from interpedit.masks.filtering import MaskFilter
from tests.segmented_folder_builders import (
    REGION_COLOURS,
    add_sa1b_image,
    build_sa1b_folder,
    coco_rle,
    erode,
    paint_regions,
    panoptic_png,
    rectangle_masks,
    sa1b_record,
    write_image,
    write_json,
    write_label_map,
)


def assert_masks_on_their_colours(image, masks, valid, region_colours, margin: int = 1):
    """Every pixel of an eroded mask has its region's colour (resampling blends ``margin`` pixels at edges)."""
    inside = erode(masks, margin)
    for k in range(masks.shape[0]):
        if valid[k] and inside[k].any():
            colour = region_colours[k][:, None]
            assert (image[:, inside[k]] - colour).abs().max() < 1e-3, k


def test_sa1b_folder_samples_have_the_batch_convention_and_stay_aligned(tmp_path):
    folder = build_sa1b_folder(tmp_path)
    dataset = SegmentedImageFolder(tmp_path, resolution=32, region_budget=6, mask_filter=MaskFilter(max_coverage=1.0))
    assert dataset.mask_format == "sa1b"
    assert dataset.paths == ["a.png", "c.png", "sub/b.png"]
    for index, name in enumerate(dataset.paths):
        sample = dataset[index]
        assert sample["path"] == name
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
        assert sample["masks"].shape == (6, 32, 32) and sample["masks"].dtype == torch.bool
        assert sample["region_valid"].shape == (6,) and sample["boxes"].shape == (6, 4)
        assert torch.equal(sample["boxes"], boxes_from_masks(sample["masks"]))
        assert torch.equal(sample["region_valid"], sample["masks"].flatten(1).any(dim=1))
        # Budget 6 > regions: every region is present once, in the original order.
        n = folder[name].shape[0]
        assert sample["region_valid"][n:].sum() == 0
        colours = torch.from_numpy(REGION_COLOURS[:n]).float() / 255
        assert_masks_on_their_colours(sample["image"], sample["masks"][:n], sample["region_valid"][:n], colours)


def test_resize_and_crop_geometry_matches_a_direct_computation(tmp_path):
    masks = rectangle_masks(40, 80, [(10, 0, 50, 20), (70, 10, 80, 30), (30, 20, 50, 40)])
    add_sa1b_image(tmp_path, "wide.png", masks)
    sample = SegmentedImageFolder(tmp_path, resolution=20, region_budget=3)[0]
    # 40x80 -> 20x40 (shorter side 20, factor 2), then columns 10..30 are the centre crop. Region 0 covers
    # resized columns 5..25 and rows 0..10; region 1 (columns 35..40) is cut away; region 2 covers
    # columns 15..25, rows 10..20.
    assert sample["region_valid"].tolist() == [True, False, True]
    assert sample["boxes"].tolist() == [[0.0, 0.0, 15.0, 10.0], [0.0, 0.0, 0.0, 0.0], [5.0, 10.0, 15.0, 20.0]]
    assert sample["masks"][0].sum() == 150 and sample["masks"][2].sum() == 100 and not sample["masks"][1].any()


def test_region_budget_samples_by_area_reproducibly_and_changes_with_epoch(tmp_path):
    boxes = [(x, 0, x + 4, 4 + 2 * k) for k, x in enumerate(range(0, 40, 5))]  # 8 regions of growing area
    add_sa1b_image(tmp_path, "many.png", rectangle_masks(40, 40, boxes))
    dataset = SegmentedImageFolder(tmp_path, resolution=40, region_budget=3, seed=7)
    first = dataset[(0, 0)]
    assert first["region_valid"].all()
    assert torch.equal(first["masks"], dataset[(0, 0)]["masks"])
    chosen_per_epoch = set()
    for epoch in range(12):
        masks = dataset[(0, epoch)]["masks"]
        chosen_per_epoch.add(tuple(int(m.nonzero()[:, 1].min()) for m in masks))  # left edge names the region
    assert len(chosen_per_epoch) > 1
    dataset.set_epoch(3)
    assert torch.equal(dataset[0]["masks"], dataset[(0, 3)]["masks"])
    other_seed = SegmentedImageFolder(tmp_path, resolution=40, region_budget=3, seed=8)
    assert any(not torch.equal(other_seed[(0, e)]["masks"], dataset[(0, e)]["masks"]) for e in range(5))


def test_filtering_happens_at_the_training_resolution(tmp_path):
    masks = rectangle_masks(64, 64, [(0, 0, 64, 64), (0, 0, 8, 8), (20, 20, 60, 60)])
    add_sa1b_image(tmp_path, "x.png", masks)
    dataset = SegmentedImageFolder(tmp_path, resolution=16, region_budget=4, mask_filter=MaskFilter(min_area=5))
    sample = dataset[0]
    # Whole-image mask: coverage 1.0 > 0.9, dropped. 8x8 becomes 2x2 = 4 pixels < 5, dropped.
    assert sample["region_valid"].tolist() == [True, False, False, False]
    assert sample["masks"][0].sum() == 100  # 40x40 -> 10x10


def test_coco_panoptic_and_png_formats_decode_the_same_regions(tmp_path):
    masks = rectangle_masks(30, 40, [(2, 2, 12, 20), (20, 5, 38, 25)])
    pixels = paint_regions(masks)
    roots = {fmt: tmp_path / fmt for fmt in ("coco", "coco_panoptic", "png")}
    for root in roots.values():
        write_image(root / "images" / "x.png", pixels)
    write_json(roots["coco"] / "annotations.json", {
        "images": [{"id": 1, "file_name": "x.png", "height": 30, "width": 40}],
        "annotations": [{"id": k + 1, "image_id": 1, "segmentation": coco_rle(m), "iscrowd": 0}
                        for k, m in enumerate(masks)]})
    ids = np.zeros((30, 40), dtype=np.int64)
    ids[masks[0]] = 1000
    ids[masks[1]] = 2
    (roots["coco_panoptic"] / "panoptic").mkdir()
    Image.fromarray(panoptic_png(ids)).save(roots["coco_panoptic"] / "panoptic" / "x.png")
    write_json(roots["coco_panoptic"] / "panoptic.json", {
        "images": [{"id": 1, "file_name": "x.png", "height": 30, "width": 40}],
        "annotations": [{"image_id": 1, "file_name": "x.png", "segments_info": [{"id": 1000}, {"id": 2}]}]})
    labels = np.zeros((30, 40), dtype=np.int64)
    labels[masks[0]] = 1
    labels[masks[1]] = 2
    write_label_map(roots["png"] / "masks" / "x.png", labels)
    for fmt, root in roots.items():
        dataset = SegmentedImageFolder(
            root, resolution=None, region_budget=2, mask_filter=MaskFilter(max_coverage=1.0)
        )
        assert dataset.mask_format == fmt  # detected by "auto"
        image, decoded = dataset.load(0)
        np.testing.assert_array_equal(decoded.numpy(), masks, err_msg=fmt)
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), pixels)
        assert torch.equal(dataset[0]["masks"], torch.from_numpy(masks))


def test_exif_rotated_image_uses_masks_of_the_displayed_orientation(tmp_path):
    displayed_masks = rectangle_masks(40, 24, [(2, 2, 20, 10), (4, 20, 22, 38)])
    displayed = paint_regions(displayed_masks)
    stored = np.rot90(displayed, k=1).copy()  # orientation 6 turns it back clockwise when displayed
    write_image(tmp_path / "images" / "r.png", stored, exif_orientation=6)
    write_json(tmp_path / "masks" / "r.json", sa1b_record("r.png", displayed_masks))
    dataset = SegmentedImageFolder(tmp_path, resolution=None, region_budget=2)
    image, masks = dataset.load(0)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), displayed)
    np.testing.assert_array_equal(masks.numpy(), displayed_masks)

    write_json(tmp_path / "masks" / "r.json", sa1b_record("r.png", np.rot90(displayed_masks, k=1, axes=(1, 2))))
    with pytest.raises(DataFileError, match=r"masks/r\.json: .*24x40 but the image images/r.png is 40x24.*EXIF"):
        SegmentedImageFolder(tmp_path, resolution=None)


def test_errors_raise_at_index_time_naming_the_file(tmp_path):
    build_sa1b_folder(tmp_path)
    record = sa1b_record("a.png", rectangle_masks(50, 64, [(0, 0, 4, 4)]))
    write_json(tmp_path / "masks" / "a.json", record)
    expected = r"masks/a\.json: the \"image\" entry is 50x64 but the image images/a.png is 48x64"
    with pytest.raises(DataFileError, match=expected):
        SegmentedImageFolder(tmp_path)


def test_skip_leaves_bad_images_out_counts_and_logs_them(tmp_path, caplog):
    build_sa1b_folder(tmp_path)
    (tmp_path / "masks" / "a.json").write_text("")
    (tmp_path / "images" / "sub" / "b.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        dataset = SegmentedImageFolder(tmp_path, on_error="skip", resolution=16)
    assert dataset.paths == ["c.png"]
    assert set(dataset.skipped) == {"a.png", "sub/b.png"}
    assert dataset.skipped["a.png"] == "masks/a.json: empty annotation file"
    assert dataset.skipped["sub/b.png"].startswith("images/sub/b.png: corrupt image")
    assert "skipped 2 of 3 images" in caplog.text


def test_skip_replaces_an_image_that_fails_only_when_decoded(tmp_path, caplog):
    build_sa1b_folder(tmp_path)
    path = tmp_path / "images" / "a.png"
    rng = np.random.default_rng(0)
    add_sa1b_image(tmp_path, "a.png", rectangle_masks(48, 64, [(2, 3, 20, 30)]),
                   pixels=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    dataset = SegmentedImageFolder(tmp_path, on_error="skip", resolution=16)
    assert dataset.paths[0] == "a.png"  # the index cannot see truncation cheaply
    with caplog.at_level(logging.WARNING):
        sample = dataset[0]
    assert sample["path"] == "c.png"
    assert "truncated image" in dataset.skipped["a.png"]
    strict = SegmentedImageFolder(tmp_path, resolution=16)
    with pytest.raises(DataFileError, match=r"a\.png: truncated image"):
        strict[0]


def test_mask_file_must_name_its_own_image(tmp_path):
    build_sa1b_folder(tmp_path)
    write_json(tmp_path / "masks" / "c.json", sa1b_record("a.png", rectangle_masks(64, 32, [(0, 0, 4, 4)])))
    expected = r'masks/c\.json: "image"\."file_name" is "a.png" but this mask file belongs to images/c.png'
    with pytest.raises(DataFileError, match=expected):
        SegmentedImageFolder(tmp_path)


def test_paired_views_share_slots_with_the_sample(tmp_path):
    folder = build_sa1b_folder(tmp_path)
    views = PairedViews(24, scale=(0.6, 1.0), degrees=5.0)
    dataset = SegmentedImageFolder(tmp_path, resolution=24, region_budget=5, paired_views=views)
    n = folder["a.png"].shape[0]
    colours = torch.from_numpy(REGION_COLOURS[:n]).float() / 255
    # Three resamplings (to the training size, the view's crop, its rotation) each blend about a pixel.
    for epoch in range(4):
        sample = dataset[(0, epoch)]
        assert sample["path"] == "a.png"
        for view in ("source", "target"):
            assert sample[f"{view}_image"].shape == (3, 24, 24)
            assert sample[f"{view}_masks"].shape == (5, 24, 24)
            assert not sample[f"{view}_region_valid"][n:].any()  # padding slots stay padding
            assert_masks_on_their_colours(sample[f"{view}_image"], sample[f"{view}_masks"][:n],
                                          sample[f"{view}_region_valid"][:n], colours, margin=3)
    again = dataset[(0, 3)]
    assert all(torch.equal(sample[k], again[k]) for k in sample if k != "path")


def test_epoch_index_sampler_tags_indices_with_the_epoch(tmp_path):
    build_sa1b_folder(tmp_path)
    dataset = SegmentedImageFolder(tmp_path, resolution=16, region_budget=4)
    sampler = EpochIndexSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(5)
    keys = list(sampler)
    assert sorted(i for i, _ in keys) == [0, 1, 2] and {e for _, e in keys} == {5}
    batch = next(iter(DataLoader(dataset, batch_size=3, sampler=sampler)))
    assert batch["masks"].shape == (3, 4, 16, 16) and len(batch["path"]) == 3


def test_datamodule_batches_and_split(tmp_path):
    build_sa1b_folder(tmp_path)
    for k in range(3):
        add_sa1b_image(tmp_path, f"extra/{k}.png", rectangle_masks(30, 30, [(k, k, 20, 20), (22, 0, 30, 10)]))
    module = SegmentedFolderDataModule(
        root=str(tmp_path), resolution=16, region_budget=3, batch_size=2, num_workers=0, val_fraction=0.2,
        paired_views=True, rotation_degrees=5.0, min_mask_area=1,
    )
    module.setup("fit")
    assert len(module.train_set) == 5 and len(module.val_set) == 1
    assert not set(module.train_set.paths) & set(module.val_set.paths)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["masks"].shape == (2, 3, 16, 16) and batch["masks"].dtype == torch.bool
    assert batch["region_valid"].shape == (2, 3) and batch["boxes"].shape == (2, 3, 4)
    assert batch["source_masks"].shape == (2, 3, 16, 16) and batch["target_boxes"].dtype == torch.float32
    assert isinstance(batch["path"], list) and all(isinstance(p, str) for p in batch["path"])
    val_batch = next(iter(module.val_dataloader()))
    assert val_batch["path"] == module.val_set.paths


def test_datamodule_arguments_are_documented_for_lightning_cli():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(SegmentedFolderDataModule, "data")
    actions = {a.dest: a for a in parser._actions if a.dest.startswith("data.")}
    for name in ("root", "mask_format", "resolution", "region_budget", "min_mask_area", "max_mask_coverage",
                 "paired_views", "crop_scale", "flip_probability", "rotation_degrees", "batch_size",
                 "num_workers", "val_fraction", "val_root", "on_error", "seed"):
        action = actions[f"data.{name}"]
        assert action.help and action.help != "==SUPPRESS==", name
    defaults = parser.get_defaults()
    assert defaults["data.mask_format"] == "auto" and defaults["data.on_error"] == "raise"
