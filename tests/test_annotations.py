"""Annotation readers: each format decodes to the masks that were written; bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from interpedit.data.annotations import (
    AnnotationError,
    LabelMapRegions,
    read_coco_instances,
    read_coco_panoptic,
    read_sa1b_json,
    rle_run_lengths,
)
from tests.segmented_folder_builders import (
    coco_rle,
    panoptic_png,
    rectangle_masks,
    sa1b_record,
    uncompressed_rle,
    write_json,
    write_label_map,
)

SIZE = (24, 32)


def decode(regions, size=SIZE, **kwargs):
    return regions.decode(size, image_name="images/x.png", **kwargs).numpy()


def test_rle_run_lengths_match_the_mask(tmp_path):
    rng = np.random.default_rng(0)
    for density in (0.02, 0.5, 0.98):
        mask = rng.random((37, 53)) < density
        expected = uncompressed_rle(mask)["counts"]
        np.testing.assert_array_equal(rle_run_lengths(coco_rle(mask)["counts"]), expected)


def test_rle_run_lengths_reject_truncated_and_out_of_range_strings():
    counts = coco_rle(rectangle_masks(20, 20, [(3, 3, 15, 9)])[0])["counts"]
    with pytest.raises(ValueError, match="truncated"):
        rle_run_lengths(counts + "`")  # 0x60 - 48 = 48: the "more digits" bit with nothing after it
    with pytest.raises(ValueError, match="outside"):
        rle_run_lengths(counts + " ")


def test_sa1b_round_trip(tmp_path):
    masks = rectangle_masks(*SIZE, [(0, 0, 10, 10), (5, 8, 30, 20), (31, 23, 32, 24)])
    path = write_json(tmp_path / "x.json", sa1b_record("sub/x.png", masks))
    annotation = read_sa1b_json(path)
    assert annotation.file_name == "sub/x.png" and annotation.size == SIZE
    np.testing.assert_array_equal(decode(annotation.regions), masks)


def test_sa1b_accepts_polygons_and_uncompressed_rle(tmp_path):
    masks = rectangle_masks(*SIZE, [(4, 2, 12, 9), (20, 10, 27, 22)])
    record = sa1b_record("x.png", masks)
    # A polygon along pixel edges covers exactly the pixels inside it (pycocotools' rasterisation).
    record["annotations"][0]["segmentation"] = [[4, 2, 12, 2, 12, 9, 4, 9]]
    record["annotations"][1]["segmentation"] = uncompressed_rle(masks[1])
    np.testing.assert_array_equal(decode(read_sa1b_json(write_json(tmp_path / "x.json", record)).regions), masks)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty annotation file"),
        ("  \n", "empty annotation file"),
        ('{"image": {', "malformed annotation file: invalid JSON"),
        ('{"image": {"file_name": "x.png", "width": 32, "height": 24}}', 'missing key "annotations"'),
        ('{"annotations": []}', 'missing key "image"'),
        ('{"image": {"file_name": "x.png", "height": 24}, "annotations": []}', 'missing key "width"'),
        ('{"image": {"file_name": "x.png", "width": 32, "height": 24}, "annotations": [{"id": 1}]}',
         'mask 0: missing key "segmentation"'),
        ('{"image": {"file_name": "x.png", "width": 32, "height": 24}, "annotations": [{"segmentation": 7}]}',
         "mask 0: segmentation must be"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_sa1b_bad_files_name_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError) as caught:
        read_sa1b_json(path)
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize("file_name", ["../escape.png", "sub/../../escape.png", "/etc/passwd", "C:/x.png"])
def test_sa1b_file_name_outside_root_is_refused(tmp_path, file_name):
    path = write_json(tmp_path / "x.json", sa1b_record(file_name, rectangle_masks(*SIZE, [(0, 0, 2, 2)])))
    with pytest.raises(AnnotationError, match=r'"image": file_name .* points outside the dataset root') as caught:
        read_sa1b_json(path)
    assert caught.value.path == path


def test_file_name_that_normalises_inside_the_root_is_accepted(tmp_path):
    path = write_json(tmp_path / "x.json", sa1b_record("sub/../x.png", rectangle_masks(*SIZE, [(0, 0, 2, 2)])))
    assert read_sa1b_json(path).file_name == "x.png"


def test_mask_size_differing_from_the_image_names_both_sizes(tmp_path):
    masks = rectangle_masks(24, 32, [(0, 0, 4, 4)])
    regions = read_sa1b_json(write_json(tmp_path / "m.json", sa1b_record("x.png", masks))).regions
    with pytest.raises(AnnotationError, match=r"the \"image\" entry is 24x32 but the image images/x.png is 30x32"):
        regions.check_size((30, 32), image_name="images/x.png")
    # Same check on each decoded mask: a record whose "image" entry matches but whose RLE does not.
    record = sa1b_record("x.png", masks)
    record["image"].update(height=30)
    regions = read_sa1b_json(write_json(tmp_path / "n.json", record)).regions
    with pytest.raises(AnnotationError, match=r"mask 0 is 24x32 but the image images/x.png is 30x32") as caught:
        regions.decode((30, 32), image_name="images/x.png")
    assert caught.value.path == tmp_path / "n.json"


def test_mask_matching_the_unrotated_image_mentions_exif(tmp_path):
    record = sa1b_record("x.png", rectangle_masks(24, 32, [(0, 0, 4, 4)]))
    regions = read_sa1b_json(write_json(tmp_path / "m.json", record)).regions
    with pytest.raises(AnnotationError, match="before its EXIF orientation"):
        regions.check_size((32, 24), image_name="images/x.png", stored_size=(24, 32))
    with pytest.raises(AnnotationError) as caught:
        regions.check_size((32, 24), image_name="images/x.png", stored_size=(32, 24))
    assert "EXIF" not in caught.value.reason


def test_rle_whose_counts_do_not_fill_its_size_is_refused_before_decoding(tmp_path):
    record = sa1b_record("x.png", rectangle_masks(*SIZE, [(0, 0, 4, 4)]))
    too_long = coco_rle(np.ones((40, 40), bool))["counts"]
    record["annotations"][0]["segmentation"] = {"size": list(SIZE), "counts": too_long}
    regions = read_sa1b_json(write_json(tmp_path / "x.json", record)).regions
    with pytest.raises(AnnotationError, match=r"mask 0: RLE counts cover 1600 pixels but its size 24x32 has 768"):
        decode(regions)


def test_polygon_outside_the_image_is_refused(tmp_path):
    record = sa1b_record("x.png", rectangle_masks(*SIZE, [(0, 0, 4, 4)]))
    record["annotations"][0]["segmentation"] = [[0, 0, 60, 0, 60, 10, 0, 10]]
    regions = read_sa1b_json(write_json(tmp_path / "x.json", record)).regions
    with pytest.raises(AnnotationError, match="mask 0: polygon spans x 0..60"):
        decode(regions)


def coco_document(masks_per_image, crowd=()):
    images, annotations = [], []
    for image_id, (name, masks) in enumerate(masks_per_image.items(), start=1):
        images.append({"id": image_id, "file_name": name, "height": masks.shape[1], "width": masks.shape[2]})
        for mask in masks:
            annotation_id = len(annotations) + 1
            annotations.append({"id": annotation_id, "image_id": image_id, "category_id": 1,
                                "segmentation": coco_rle(mask), "iscrowd": int(annotation_id in crowd)})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


def test_coco_instances_per_image_with_crowd_handling(tmp_path):
    a = rectangle_masks(*SIZE, [(0, 0, 5, 5), (10, 10, 20, 20)])
    b = rectangle_masks(16, 16, [(1, 1, 3, 3)])
    document = coco_document({"a.png": a, "dir/b.png": b}, crowd={2})
    document["annotations"][0]["segmentation"] = [[0, 0, 5, 0, 5, 5, 0, 5]]  # polygons work too
    path = write_json(tmp_path / "annotations.json", document)
    result = read_coco_instances(path)
    assert set(result.regions) == {"a.png", "dir/b.png"} and not result.problems
    np.testing.assert_array_equal(decode(result.regions["a.png"]), a[:1])  # crowd annotation 2 left out
    np.testing.assert_array_equal(decode(read_coco_instances(path, include_crowd=True).regions["a.png"]), a)
    np.testing.assert_array_equal(decode(result.regions["dir/b.png"], (16, 16)), b)


def test_coco_entry_problems_are_collected_per_entry(tmp_path):
    a = rectangle_masks(*SIZE, [(0, 0, 5, 5)])
    document = coco_document({"a.png": a, "b.png": a, "c.png": a})
    document["images"][1]["file_name"] = "../../b.png"
    document["annotations"].append({"id": 99, "image_id": 42, "segmentation": coco_rle(a[0])})
    document["annotations"][2]["segmentation"] = {"size": [24]}
    result = read_coco_instances(write_json(tmp_path / "annotations.json", document))
    reasons = [p.reason for p in result.problems]
    assert any('images[1] (id 2): file_name "../../b.png" points outside the dataset root' in r for r in reasons)
    assert any("annotations[3] (id 99)" in r and "image_id 42" in r for r in reasons)
    assert set(result.regions) == {"a.png", "c.png"}
    assert "c.png" in result.image_problems and "annotations[2]" in result.image_problems["c.png"][0].reason


def test_coco_file_level_errors(tmp_path):
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(AnnotationError, match="empty annotation file"):
        read_coco_instances(tmp_path / "empty.json")
    with pytest.raises(AnnotationError, match='missing key "images"'):
        read_coco_instances(write_json(tmp_path / "keys.json", {"annotations": []}))


def test_panoptic_ids_and_segments(tmp_path):
    # Ids above 255 and 65535 exercise the G and B channels of the encoding.
    ids = np.zeros(SIZE, dtype=np.int64)
    ids[0:10, 0:10] = 300
    ids[12:20, 5:30] = 70000
    ids[20:24, 0:4] = 5
    png_dir = tmp_path / "panoptic"
    png_dir.mkdir()
    Image.fromarray(panoptic_png(ids)).save(png_dir / "x.png")
    document = {
        "images": [{"id": 7, "file_name": "x.jpg", "height": SIZE[0], "width": SIZE[1]}],
        "annotations": [{"image_id": 7, "file_name": "x.png", "segments_info": [
            {"id": 300, "category_id": 1},
            {"id": 70000, "category_id": 2},
            {"id": 5, "category_id": 3, "iscrowd": 1},
        ]}],
    }
    path = write_json(tmp_path / "panoptic.json", document)
    regions = read_coco_panoptic(path, png_dir).regions["x.jpg"]
    np.testing.assert_array_equal(decode(regions), np.stack([ids == 300, ids == 70000]))
    with_crowd = read_coco_panoptic(path, png_dir, include_crowd=True).regions["x.jpg"]
    assert decode(with_crowd).shape[0] == 3

    document["annotations"][0]["segments_info"].pop(1)
    unlisted = read_coco_panoptic(write_json(tmp_path / "p2.json", document), png_dir).regions["x.jpg"]
    with pytest.raises(AnnotationError, match=r"segment ids \[70000\] are in the PNG but not in p2.json"):
        decode(unlisted)


def test_panoptic_png_outside_its_folder_is_refused(tmp_path):
    document = {"images": [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 4}],
                "annotations": [{"image_id": 1, "file_name": "../x.png", "segments_info": []}]}
    result = read_coco_panoptic(write_json(tmp_path / "panoptic.json", document), tmp_path / "panoptic")
    assert "x.jpg" not in result.regions
    assert "points outside the dataset root" in result.problems[0].reason


@pytest.mark.parametrize("bits", [8, 16])
def test_label_maps_8_and_16_bit(tmp_path, bits):
    labels = np.zeros(SIZE, dtype=np.int64)
    high = 3 if bits == 8 else 1000
    labels[2:8, 2:8] = high
    labels[10:20, 0:32] = 1
    path = write_label_map(tmp_path / "x.png", labels)
    assert Image.open(path).mode == ("L" if bits == 8 else "I;16")
    regions = LabelMapRegions(path)
    np.testing.assert_array_equal(decode(regions), np.stack([labels == 1, labels == high]))


def test_label_map_must_be_single_channel_and_exist(tmp_path):
    Image.new("RGB", (SIZE[1], SIZE[0])).save(tmp_path / "rgb.png")
    with pytest.raises(AnnotationError, match="single-channel 8- or 16-bit image, got mode RGB"):
        LabelMapRegions(tmp_path / "rgb.png").check_size(SIZE, image_name="x")
    with pytest.raises(AnnotationError, match="mask file does not exist"):
        LabelMapRegions(tmp_path / "none.png").check_size(SIZE, image_name="x")
