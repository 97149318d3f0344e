"""Object placement (gt/object_iou, gt/object_found, gt/centroid_error): hand-built cases, the rules about other
objects of the same colour, backgrounds near a palette colour and ambiguous rim pixels, and the true target of an
exported benchmark scoring exactly 1, 1 and 0."""

import json
import math

import pytest
import torch

from interpedit.benchmarks import EditBenchmarkDataset, collate_edit_samples, read_edit_benchmark
from interpedit.metrics import (
    GROUND_TRUTH_KEYS,
    PLACEMENT_KEYS,
    GroundTruthMetrics,
    mask_centroids,
    object_placement,
    palette_labels,
    placement_metrics,
    predicted_object_mask,
    render_backgrounds,
)
from interpedit.shapes import COLOURS, PALETTE, Background, Scene, ShapeObject, export_benchmark

SIDE = 32
GREY = (120, 120, 120)
RED = COLOURS.index("red")
SOLID = Background(kind="solid", colours=(GREY,))
# Ends 46.9 RGB units from red, within palette_labels' 49: that rule would call this background red.
NEAR_RED_GRADIENT = Background(kind="gradient", colours=(GREY, (200, 60, 60)), angle=0.0)


def scene_json(background: Background, colours: tuple[str, ...] = ("red", "red", "blue")) -> str:
    objects = tuple(
        ShapeObject(shape="square", colour=colour, radius=0.1, position=(0.2 + 0.25 * i, 0.5), rotation=0.0)
        for i, colour in enumerate(colours)
    )
    return json.dumps(Scene(background, objects).to_dict())


def background_image(background: Background) -> torch.Tensor:
    """(1, 3, SIDE, SIDE), the background alone as the metric renders it."""
    return render_backgrounds([Scene(background, ())], SIDE)


def paint(image: torch.Tensor, rows: slice, cols: slice, colour: str) -> torch.Tensor:
    painted = image.clone()
    painted[0, :, rows, cols] = torch.tensor(PALETTE[colour], dtype=torch.float32)[:, None, None] / 255
    return painted


def square(rows: slice, cols: slice) -> torch.Tensor:
    mask = torch.zeros(1, SIDE, SIDE, dtype=torch.bool)
    mask[0, rows, cols] = True
    return mask


EDITED_ROWS, EDITED_COLS = slice(10, 16), slice(10, 16)  # 6 x 6, object 0
OTHER_ROWS, OTHER_COLS = slice(20, 26), slice(2, 8)  # 6 x 6, object 1, also red
BLUE_ROWS, BLUE_COLS = slice(2, 6), slice(24, 30)  # object 2


def truth(background: Background) -> dict:
    """A hand-built true target: red object 0 (edited), red object 1, blue object 2, on ``background``."""
    image = background_image(background)
    image = paint(image, EDITED_ROWS, EDITED_COLS, "red")
    image = paint(image, OTHER_ROWS, OTHER_COLS, "red")
    image = paint(image, BLUE_ROWS, BLUE_COLS, "blue")
    labels = torch.zeros(1, SIDE, SIDE, dtype=torch.long)
    labels[0, EDITED_ROWS, EDITED_COLS] = 1
    labels[0, OTHER_ROWS, OTHER_COLS] = 2
    labels[0, BLUE_ROWS, BLUE_COLS] = 3
    return {
        "target": image,
        "colour": torch.tensor([RED]),
        "true_mask": labels == 1,
        "target_scenes": [scene_json(background)],
        "target_object_index": torch.tensor([0]),
        "target_labels": labels,
    }


def measure(edited: torch.Tensor, fields: dict, **overrides) -> dict[str, float]:
    arguments = {**fields, **overrides}
    values = placement_metrics(edited, arguments.pop("target"), **arguments)
    assert set(values) == set(PLACEMENT_KEYS)
    return {key.removeprefix("gt/"): value.item() for key, value in values.items()}


@pytest.mark.parametrize("background", [SOLID, NEAR_RED_GRADIENT], ids=["solid", "gradient-near-red"])
def test_the_exact_target_scores_iou_1_and_centroid_error_0(background):
    fields = truth(background)
    got = measure(fields["target"], fields)
    assert got == {"object_iou": 1.0, "object_found": 1.0, "centroid_error": 0.0}


def test_a_copy_shifted_by_3_pixels():
    fields = truth(SOLID)
    edited = paint(background_image(SOLID), EDITED_ROWS, slice(13, 19), "red")  # 3 px right
    edited = paint(edited, OTHER_ROWS, OTHER_COLS, "red")
    edited = paint(edited, BLUE_ROWS, BLUE_COLS, "blue")
    got = measure(edited, fields)
    # 6 x 3 shared of 6 x 9: IoU 18 / 54; the centroid moves from x = 12.5 to 15.5.
    assert got["object_iou"] == pytest.approx(1 / 3)
    assert got["object_found"] == 1.0
    assert got["centroid_error"] == 3.0


def test_an_absent_object_is_not_found():
    fields = truth(SOLID)
    edited = paint(background_image(SOLID), OTHER_ROWS, OTHER_COLS, "red")
    got = measure(edited, fields)
    assert got["object_found"] == 0.0 and got["object_iou"] == 0.0 and math.isnan(got["centroid_error"])


def test_another_object_of_the_same_colour_is_not_counted():
    fields = truth(SOLID)
    assert measure(fields["target"], fields)["object_iou"] == 1.0
    # Without the label map nothing is left out: the other red square counts too (36 of 72 pixels).
    assert measure(fields["target"], fields, target_labels=None)["object_iou"] == 0.5
    # Only the edited object drawn where the other red one belongs: that is the other object's place, not found.
    moved = paint(background_image(SOLID), OTHER_ROWS, OTHER_COLS, "red")
    assert measure(moved, fields)["object_found"] == 0.0


def test_gradient_background_pixels_near_a_palette_colour_are_not_counted():
    fields = truth(NEAR_RED_GRADIENT)
    empty = background_image(NEAR_RED_GRADIENT)
    assert (palette_labels(empty) == RED).any()  # the 49-unit palette rule would see red background
    predicted = predicted_object_mask(empty, empty, torch.tensor([RED]))
    assert not predicted.any()
    got = measure(empty, fields)
    assert got["object_found"] == 0.0 and got["object_iou"] == 0.0


def test_ambiguous_rim_pixels_of_the_truth_are_left_out_of_both_masks():
    fields = truth(SOLID)
    target = fields["target"].clone()
    grey, red = torch.tensor(GREY) / 255, torch.tensor(PALETTE["red"]) / 255
    # An anti-aliased rim column: half red, half background. It is labelled object 1 in one row, background in
    # the other: neither way can a colour rule tell, so whatever a method draws there does not count.
    target[0, :, 10:16, 16] = ((grey + red) / 2)[:, None]
    fields["target"] = target
    fields["true_mask"] = fields["true_mask"].clone()
    fields["true_mask"][0, 10, 16] = True
    fields["target_labels"][0, 10, 16] = 1
    for rim in (grey, red):
        edited = target.clone()
        edited[0, :, 10:16, 16] = rim[:, None]
        assert measure(edited, fields) == {"object_iou": 1.0, "object_found": 1.0, "centroid_error": 0.0}


def test_not_applicable_images_are_nan():
    fields = truth(SOLID)
    for overrides in ({"target_object_index": torch.tensor([-1])}, {"colour": torch.tensor([-1])},
                      {"true_mask": torch.zeros(1, SIDE, SIDE, dtype=torch.bool)}):  # fmt: skip
        got = measure(fields["target"], fields, **overrides)
        assert all(math.isnan(value) for value in got.values()), overrides


def test_pure_functions_by_hand():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 1, 1] = masks[0, 1, 3] = True  # centroid x 2, y 1
    masks[1] = True  # centroid 1.5, 1.5
    centroids = mask_centroids(masks)
    assert centroids[:2].tolist() == [[2.0, 1.0], [1.5, 1.5]] and centroids[2].isnan().all()
    values = object_placement(masks, masks[[1, 1, 1]])
    assert values["gt/object_iou"].tolist() == [2 / 16, 1.0, 0.0]
    assert values["gt/object_found"].tolist() == [1.0, 1.0, 0.0]
    assert values["gt/centroid_error"][:2].tolist() == pytest.approx([math.hypot(0.5, 0.5), 0.0])
    assert values["gt/centroid_error"][2].isnan()


def test_ground_truth_metrics_report_the_placement_keys():
    fields = truth(SOLID)
    assert set(PLACEMENT_KEYS) <= set(GROUND_TRUTH_KEYS)
    metric = GroundTruthMetrics()
    changed = torch.zeros(1, SIDE, SIDE, dtype=torch.bool)
    metric.update(fields["target"], fields["target"], changed, requested_colour=fields["colour"],
                  target_object_mask=fields["true_mask"], target_scene=fields["target_scenes"],
                  target_object_index=fields["target_object_index"], target_labels=fields["target_labels"])  # fmt: skip
    result = metric.compute()
    assert result["gt/object_iou"].item() == 1.0 and result["gt/object_iou_count"].item() == 1
    assert result["gt/centroid_error"].item() == 0.0 and result["gt/object_found_count"].item() == 1
    without_index = GroundTruthMetrics()
    without_index.update(fields["target"], fields["target"], changed)
    assert without_index.compute()["gt/object_iou_count"].item() == 0
    with pytest.raises(ValueError, match="object placement .* needs target_scene"):
        GroundTruthMetrics().update(fields["target"], fields["target"], changed, requested_colour=fields["colour"],
                                    target_object_mask=fields["true_mask"],
                                    target_object_index=fields["target_object_index"])  # fmt: skip


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("placement_benchmark")
    export_benchmark(root, num_scenes=24, seed=11, resolution=32)
    dataset = EditBenchmarkDataset(read_edit_benchmark(root))
    return collate_edit_samples([dataset[index] for index in range(len(dataset))])


def benchmark_update(metric: GroundTruthMetrics, batch: dict, edited: torch.Tensor) -> None:
    metric.update(edited, batch["target_image"], batch["edit_mask"], requested_colour=batch["requested_colour"],
                  target_object_mask=batch["target_object_mask"], target_scene=batch["target_scene"],
                  target_object_index=batch["target_object_index"], target_labels=batch["target_labels"])  # fmt: skip


def test_the_true_target_of_an_export_is_perfect_and_removals_are_nan(benchmark):
    metric = GroundTruthMetrics()
    benchmark_update(metric, benchmark, benchmark["target_image"])
    present = benchmark["target_object_index"] >= 0
    assert int(present.sum()) >= 20 and not bool(present.all())  # removals have no target object
    values = metric.per_image
    assert values["gt/object_iou"][present].tolist() == [1.0] * int(present.sum())
    assert values["gt/object_found"][present].tolist() == [1.0] * int(present.sum())
    assert values["gt/centroid_error"][present].tolist() == [0.0] * int(present.sum())
    for key in PLACEMENT_KEYS:
        assert values[key][~present].isnan().all(), key


def test_the_source_of_an_export_places_moved_objects_elsewhere(benchmark):
    metric = GroundTruthMetrics()
    benchmark_update(metric, benchmark, benchmark["source_image"])
    moved = [i for i, name in enumerate(benchmark["edit_type"]) if name == "move"]
    assert len(moved) >= 2
    values = metric.per_image
    assert (values["gt/object_found"][moved] == 1.0).all()  # still there, at the old place
    assert (values["gt/object_iou"][moved] < 1.0).all() and (values["gt/centroid_error"][moved] > 0.5).all()
