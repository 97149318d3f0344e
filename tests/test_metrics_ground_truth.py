"""Ground-truth metrics on shapes-world edits: the true target is perfect, the source fails the requested
attribute, IoU by hand, and the attribute classifiers on exact renders."""

import math

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from interpedit.metrics import PSNR_CAP_DB, GroundTruthMetrics, palette_labels, region_iou
from interpedit.shapes import COLOURS, PALETTE, SHAPES, Background, Scene, ShapeObject, recolour, reshape

RESOLUTION = 64


def scene() -> Scene:
    return Scene(
        background=Background(kind="gradient", colours=((90, 100, 110), (150, 140, 160)), angle=0.7),
        objects=(
            ShapeObject(shape="square", colour="red", radius=0.15, position=(0.35, 0.4), rotation=0.3),
            ShapeObject(shape="triangle", colour="green", radius=0.12, position=(0.6, 0.55), rotation=0.2),
        ),
    )


def as_batch(edit) -> dict:
    """The edit-benchmark batch fields of one edit (B = 1)."""
    image = lambda render: torch.from_numpy(render.image).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    index = edit.target_indices[0]
    obj = edit.target_scene.objects[index]
    return {
        "source": image(edit.source),
        "target": image(edit.target),
        "changed_mask": torch.from_numpy(edit.changed_mask)[None],
        "requested_colour": torch.tensor([COLOURS.index(obj.colour)]),
        "requested_shape": torch.tensor([SHAPES.index(obj.shape)]),
        "target_object_mask": torch.from_numpy(edit.target.masks[index])[None],
        "target_object": {
            "position": torch.tensor([obj.position], dtype=torch.float32),
            "radius": torch.tensor([obj.radius], dtype=torch.float32),
            "rotation": torch.tensor([obj.rotation], dtype=torch.float32),
        },
    }


def update(metric: GroundTruthMetrics, batch: dict, edited: torch.Tensor, **overrides) -> None:
    kwargs = {key: batch[key] for key in ("requested_colour", "requested_shape", "target_object_mask", "target_object")}
    kwargs.update(overrides)
    metric.update(edited, batch["target"], batch["changed_mask"], **kwargs)


@pytest.fixture(scope="module")
def recolour_batch() -> dict:
    return as_batch(recolour(scene(), index=1, colour="blue", resolution=RESOLUTION))


@pytest.fixture(scope="module")
def reshape_batch() -> dict:
    return as_batch(reshape(scene(), index=0, shape="hexagon", resolution=RESOLUTION))


def test_the_true_target_is_perfect(recolour_batch, reshape_batch):
    metric = GroundTruthMetrics()
    for batch in (recolour_batch, reshape_batch):
        update(metric, batch, batch["target"].clone(), edit_region=batch["changed_mask"].clone())
        values = metric.per_image
        assert values["gt/psnr_edited"].item() == PSNR_CAP_DB
        assert values["gt/psnr_unedited"].item() == PSNR_CAP_DB
        assert values["gt/ssim_edited"].item() == 1.0
        assert values["gt/ssim_unedited"].item() == 1.0
        assert values["gt/region_iou"].item() == 1.0
        assert values["gt/colour_accuracy"].item() == 1.0
        assert values["gt/shape_accuracy"].item() == 1.0
    result = metric.compute()
    assert result["gt/colour_accuracy"].item() == 1.0 and result["gt/colour_accuracy_count"].item() == 2


def test_the_source_fails_the_requested_attribute(recolour_batch, reshape_batch):
    metric = GroundTruthMetrics()
    update(metric, recolour_batch, recolour_batch["source"])
    assert metric.per_image["gt/colour_accuracy"].item() == 0.0  # still green, blue was asked
    assert metric.per_image["gt/shape_accuracy"].item() == 1.0  # the triangle kept its shape
    assert metric.per_image["gt/psnr_edited"].item() < 20.0
    assert metric.per_image["gt/psnr_unedited"].item() == PSNR_CAP_DB  # nothing outside the change differs
    update(metric, reshape_batch, reshape_batch["source"])
    assert metric.per_image["gt/shape_accuracy"].item() == 0.0  # still a square, a hexagon was asked
    assert metric.per_image["gt/colour_accuracy"].item() == 1.0


def test_the_classifiers_name_every_shape_rendered_in_place():
    metric = GroundTruthMetrics()
    base = scene()
    for shape in SHAPES:
        if shape == "square":
            continue
        batch = as_batch(reshape(base, index=0, shape=shape, resolution=RESOLUTION))
        for candidate in SHAPES:
            update(metric, batch, batch["target"], requested_shape=torch.tensor([SHAPES.index(candidate)]))
            assert metric.per_image["gt/shape_accuracy"].item() == float(candidate == shape), (shape, candidate)


def test_not_applicable_attributes_and_missing_regions_are_nan(recolour_batch):
    metric = GroundTruthMetrics()
    update(metric, recolour_batch, recolour_batch["target"], requested_colour=torch.tensor([-1]),
           requested_shape=torch.tensor([-1]))
    for key in ("gt/colour_accuracy", "gt/shape_accuracy", "gt/region_iou"):
        assert math.isnan(metric.per_image[key].item()), key
    result = metric.compute()
    assert math.isnan(result["gt/region_iou"].item()) and result["gt/region_iou_count"].item() == 0


def test_region_iou_by_hand():
    changed = torch.zeros(3, 4, 4, dtype=torch.bool)
    region = torch.zeros(3, 4, 4, dtype=torch.bool)
    changed[0, :2, :2] = True  # 4 pixels
    region[0, 1:3, 1:3] = True  # 4 pixels, 1 shared: IoU 1 / 7
    changed[1, 0, :] = True
    region[1, :, :] = True  # 4 of 16
    got = region_iou(region, changed)
    assert got[:2].tolist() == pytest.approx([1 / 7, 4 / 16])
    assert math.isnan(got[2].item())  # both empty


def test_palette_labels_accept_palette_colours_and_reject_backgrounds():
    colours = [PALETTE[name] for name in COLOURS] + [(128, 128, 128), (165, 180, 160)]
    pixels = torch.tensor(colours, dtype=torch.float32).T[None, :, None, :] / 255  # (1, 3, 1, N)
    labels = palette_labels(pixels)[0, 0].tolist()
    assert labels == list(range(len(COLOURS))) + [-1, -1]
    shifted = (torch.tensor(PALETTE["red"], dtype=torch.float32) + torch.tensor([40.0, 0, 0])) / 255
    assert palette_labels(shifted.clamp(max=1)[None, :, None, None])[0, 0, 0].item() == COLOURS.index("red")


def test_states_are_sums_and_halves_merge_into_the_whole(recolour_batch, reshape_batch):
    edited = torch.cat([recolour_batch["source"], reshape_batch["target"]])
    both = {
        key: torch.cat([recolour_batch[key], reshape_batch[key]])
        for key in ("target", "changed_mask", "requested_colour", "requested_shape", "target_object_mask")
    }
    both["target_object"] = {
        key: torch.cat([recolour_batch["target_object"][key], reshape_batch["target_object"][key]])
        for key in ("position", "radius", "rotation")
    }
    whole = GroundTruthMetrics()
    update(whole, both, edited)
    first, second = GroundTruthMetrics(), GroundTruthMetrics()
    update(first, recolour_batch, recolour_batch["source"])
    update(second, reshape_batch, reshape_batch["target"])
    first.merge_state(second)
    assert all(fn is dim_zero_sum for fn in whole._reductions.values())
    merged = first.compute()
    for key, value in whole.compute().items():
        torch.testing.assert_close(merged[key], value, equal_nan=True)


def test_bf16_autocast_gives_float32_results(recolour_batch):
    noisy = (recolour_batch["target"] + 0.05 * torch.randn(1, 3, RESOLUTION, RESOLUTION)).clamp(0, 1)
    plain, autocast = GroundTruthMetrics(), GroundTruthMetrics()
    update(plain, recolour_batch, noisy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        update(autocast, recolour_batch, noisy)
    for key, value in plain.per_image.items():
        torch.testing.assert_close(autocast.per_image[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


def test_bad_inputs_fail_with_clear_messages(recolour_batch):
    metric = GroundTruthMetrics()
    with pytest.raises(ValueError, match="target_object_mask"):
        update(metric, recolour_batch, recolour_batch["target"], target_object_mask=None)
    with pytest.raises(ValueError, match="ids outside"):
        update(metric, recolour_batch, recolour_batch["target"], requested_colour=torch.tensor([len(COLOURS)]))
    with pytest.raises(ValueError, match="target_object"):
        update(metric, recolour_batch, recolour_batch["target"], target_object=None)
