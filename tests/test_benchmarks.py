"""Edit-benchmark readers: PIE-Bench, Learnable Regions and shapes exports read back exactly; bad entries named."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interpedit.benchmarks import (
    EDIT_TYPE_NAMES,
    BenchmarkError,
    EditBenchmarkDataset,
    collate_edit_samples,
    detect_benchmark_format,
    edit_type_name,
    read_edit_benchmark,
    resolve_edit_type,
)
from interpedit.masks.rle import coco_rle_to_mask, mask_to_coco_rle
from interpedit.shapes import (
    COLOURS,
    EDIT_TYPE_IDS,
    SHAPES,
    Background,
    Scene,
    ShapeObject,
    export_benchmark,
    render,
)


def runs_of(mask: np.ndarray) -> list[int]:
    """PIE-Bench RLE written by hand: ``[start, length, ...]`` of the runs of ones, row-major."""
    flat, rle, i = mask.reshape(-1).tolist(), [], 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j < len(flat) and flat[j]:
                j += 1
            rle += [i, j - i]
            i = j
        else:
            i += 1
    return rle


def save_rgb(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def pie_entry(image_path: str, mask: np.ndarray, type_id: str = "1") -> dict:
    return {
        "image_path": image_path,
        "original_prompt": "a [cat] sitting on a mat",
        "editing_prompt": "a [dog] sitting on a mat",
        "editing_instruction": "make the cat a dog",
        "editing_type_id": type_id,
        "blended_word": "cat dog",
        "mask": runs_of(mask),
    }


def write_pie_bench(root: Path, sizes: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, dict]:
    """A PIE-Bench folder with one noise image and a random mask per id; returns pixels and masks by id."""
    rng = np.random.default_rng(seed)
    mapping, truth = {}, {}
    for number, (entry_id, (height, width)) in enumerate(sizes.items()):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.random((height, width)) < 0.3
        relative = f"{number % 10}_type/{entry_id}.png"
        save_rgb(root / "annotation_images" / relative, pixels)
        mapping[entry_id] = pie_entry(relative, mask, type_id=str(number % 10))
        truth[entry_id] = {"pixels": pixels, "mask": mask}
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    return truth


def write_learnable_regions(root: Path, sizes: dict[str, tuple[int, int]], folder: str = "images") -> dict:
    """An images.json folder with one noise image per file name (in ``root/folder``); returns pixels by name."""
    rng = np.random.default_rng(1)
    index, pixels = {}, {}
    for name, (height, width) in sizes.items():
        pixels[name] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        save_rgb(root / folder / name, pixels[name])
        index[name] = [name.split(".")[0], f"a {name.split('.')[0]} made of gold"]
    (root / "images.json").write_text(json.dumps(index))
    return pixels


@pytest.fixture(scope="module")
def shapes_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_export")
    export_benchmark(root, num_scenes=8, seed=2, resolution=32)
    return root, json.loads((root / "mapping_file.json").read_text())


def test_edit_type_table_joins_pie_bench_and_the_shapes_ids():
    assert [EDIT_TYPE_NAMES[str(i)] for i in (0, 3, 6, 9)] == [
        "random", "delete object", "change attribute color", "change style",
    ]  # fmt: skip
    assert {EDIT_TYPE_IDS[name]: EDIT_TYPE_NAMES[EDIT_TYPE_IDS[name]] for name in ("move", "resize", "swap")} == {
        "10": "move", "11": "resize", "12": "swap",
    }  # fmt: skip
    assert resolve_edit_type("change attribute color") == resolve_edit_type(6) == resolve_edit_type("recolour") == "6"
    assert edit_type_name(resolve_edit_type("swap")) == "swap"
    with pytest.raises(ValueError, match="unknown edit type 'teleport'"):
        resolve_edit_type("teleport")


def test_pie_bench_reads_back_pixels_masks_prompts_and_types(tmp_path):
    truth = write_pie_bench(tmp_path, {"000000000000": (16, 16), "000000000001": (12, 20), "111000000002": (8, 8)})
    assert detect_benchmark_format(tmp_path) == "pie_bench"
    samples = read_edit_benchmark(tmp_path)
    assert [s.image_id for s in samples] == list(truth)  # the file's order
    dataset = EditBenchmarkDataset(samples)
    for index, (entry_id, expected) in enumerate(truth.items()):
        item = dataset[index]
        assert item["image_id"] == entry_id and int(item["index"]) == index
        assert torch.equal(item["source_image"], torch.from_numpy(expected["pixels"]).permute(2, 0, 1) / 255.0)
        assert item["edit_mask"].dtype == torch.bool and bool(item["has_mask"])
        assert torch.equal(item["edit_mask"], torch.from_numpy(expected["mask"]))
        assert item["source_prompt"] == "a cat sitting on a mat" and item["target_prompt"] == "a dog sitting on a mat"
        assert item["source_prompt_bracketed"] == "a [cat] sitting on a mat"
        assert item["blended_word"] == "cat dog" and item["instruction"] == "make the cat a dog"
        assert item["edit_type_id"] == str(index) and item["edit_type"] == EDIT_TYPE_NAMES[str(index)]
        assert not item["has_target"] and not item["target_image"].any() and int(item["requested_colour"]) == -1
        assert item["target_scene"] == "" and int(item["target_object_index"]) == -1 and int(item["supersample"]) == 0


def test_pie_bench_resolution_resizes_masks_with_nearest_pixels(tmp_path):
    truth = write_pie_bench(tmp_path, {"000000000000": (8, 8)})
    item = EditBenchmarkDataset(read_edit_benchmark(tmp_path), resolution=24)[0]
    assert item["source_image"].shape == (3, 24, 24) and item["edit_mask"].shape == (24, 24)
    np.testing.assert_array_equal(item["edit_mask"].numpy(), np.kron(truth["000000000000"]["mask"], np.ones((3, 3))))


def _break(mapping: dict, entry_id: str, key: str, value) -> dict:
    if value is _DELETE:
        del mapping[entry_id][key]
    else:
        mapping[entry_id][key] = value
    return mapping


_DELETE = object()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("image_path", "0_type/missing.png", "image file does not exist"),
        ("image_path", "../../outside.png", "points outside"),
        ("image_path", "/etc/passwd", "points outside"),
        ("mask", [60, 5], r"run 0 covers pixels 60\.\.64 but the 8x8 image has only 64"),
        ("mask", [10, 5, 12, 2], "run 1 starts at pixel 12, before the previous run ends at pixel 15"),
        ("mask", [20, 2, 3, 1], "run 1 starts at pixel 3, before the previous run ends at pixel 22"),
        ("mask", [1, 2, 3], "needs \\(start, length\\) pairs but has 3 values"),
        ("mask", [1, -2], "both must be >= 0"),
        ("editing_type_id", "42", "unknown 'editing_type_id' '42'"),
        ("editing_type_id", "lr", "unknown 'editing_type_id' 'lr'"),
        ("editing_prompt", _DELETE, "missing key 'editing_prompt'"),
        ("mask", _DELETE, "missing key 'mask'"),
        ("blended_word", 3, "'blended_word' must be str, got int"),
    ],
)
def test_bad_pie_bench_entries_name_the_file_and_the_entry(tmp_path, key, value, message):
    write_pie_bench(tmp_path, {"000000000000": (8, 8), "000000000007": (8, 8)})
    mapping = json.loads((tmp_path / "mapping_file.json").read_text())
    (tmp_path / "mapping_file.json").write_text(json.dumps(_break(mapping, "000000000007", key, value)))
    with pytest.raises(BenchmarkError, match=message) as error:
        read_edit_benchmark(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "mapping_file.json"))
    assert "entry '000000000007'" in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"000000000000": {', "malformed JSON"),
        ("", "empty benchmark file"),
        ("[1, 2]", "expected a JSON object at the top level, got list"),
        ('{"a": {}, "a": {}}', "key 'a' appears more than once"),
        ('{"000000000000": [1]}', "entry '000000000000': expected a JSON object, got list"),
    ],
)
def test_malformed_mapping_files_are_named(tmp_path, text, message):
    (tmp_path / "mapping_file.json").write_text(text)
    with pytest.raises(BenchmarkError, match=message) as error:
        read_edit_benchmark(tmp_path, "pie_bench")
    assert str(tmp_path / "mapping_file.json") in str(error.value)


def test_learnable_regions_finds_images_beside_the_index_or_in_images(tmp_path):
    for folder in ("images", "."):
        root = tmp_path / f"lr_in_{folder.strip('.') or 'root'}"
        pixels = write_learnable_regions(root, {"1.png": (10, 10), "2.png": (6, 14)}, folder=folder)
        assert detect_benchmark_format(root) == "learnable_regions"
        samples = read_edit_benchmark(root)
        assert [s.image_path for s in samples] == [root / folder / name for name in pixels]
        item = EditBenchmarkDataset(samples)[1]
        assert item["source_prompt"] == item["source_prompt_bracketed"] == "2"
        assert item["target_prompt"] == "a 2 made of gold" and item["instruction"] == item["blended_word"] == ""
        assert item["edit_type_id"] == "lr" and item["edit_type"] == "learnable regions"
        assert item["source_image"].shape == (3, 6, 14) and not item["has_mask"] and not item["edit_mask"].any()


def test_non_square_images_are_resized_by_the_shorter_side_and_centre_cropped(tmp_path):
    # Red | green | blue thirds of a 12x36 image: the centre square is the green third alone (its outer columns
    # blend with the neighbours under the antialiasing filter, which spans two source pixels per output pixel).
    pixels = np.zeros((12, 36, 3), np.uint8)
    pixels[:, :12, 0], pixels[:, 12:24, 1], pixels[:, 24:, 2] = 255, 255, 255
    save_rgb(tmp_path / "wide.png", pixels)
    (tmp_path / "images.json").write_text(json.dumps({"wide.png": ["stripes", "a green square"]}))
    image = EditBenchmarkDataset(read_edit_benchmark(tmp_path), resolution=6)[0]["source_image"]
    assert image.shape == (3, 6, 6)
    assert torch.equal(image[:, :, 1:5], torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 6, 4))
    assert image[0, :, 0].min() > 0 and image[2, :, 0].max() == 0  # red bleeds in on the left only
    assert image[2, :, 5].min() > 0 and image[0, :, 5].max() == 0  # blue on the right only


def test_bad_learnable_regions_entries_name_the_file_and_the_entry(tmp_path):
    write_learnable_regions(tmp_path, {"1.png": (8, 8), "2.png": (8, 8)})
    (tmp_path / "images" / "2.png").rename(tmp_path / "2.png")
    with pytest.raises(BenchmarkError, match="split between the root and images/"):
        read_edit_benchmark(tmp_path)
    (tmp_path / "2.png").unlink()
    with pytest.raises(BenchmarkError, match=r"images\.json: entry '2\.png': image file does not exist"):
        read_edit_benchmark(tmp_path)
    for value, message in ((["only a caption"], "expected \\[source caption, edit prompt\\]"), (["a", "b"], None)):
        (tmp_path / "images.json").write_text(json.dumps({"1.png": ["a", "b"], "../x.png": value}))
        with pytest.raises(BenchmarkError, match=message or "entry '../x.png': path '../x.png' points outside"):
            read_edit_benchmark(tmp_path)


def test_detection_refuses_ambiguous_or_empty_folders(tmp_path):
    with pytest.raises(BenchmarkError, match="no benchmark index"):
        detect_benchmark_format(tmp_path)
    write_pie_bench(tmp_path, {"000000000000": (8, 8)})
    write_learnable_regions(tmp_path, {"1.png": (8, 8)})
    with pytest.raises(BenchmarkError, match="holds both mapping_file.json .* and images.json"):
        detect_benchmark_format(tmp_path)
    assert len(read_edit_benchmark(tmp_path, "learnable_regions")) == 1
    with pytest.raises(ValueError, match="unknown benchmark format 'coco'"):
        read_edit_benchmark(tmp_path, "coco")


def read_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_shapes_ground_truth_agrees_with_the_exported_files(shapes_export):
    root, mapping = shapes_export
    assert detect_benchmark_format(root) == "shapes"
    samples = read_edit_benchmark(root)
    dataset = EditBenchmarkDataset(samples)
    assert {s.shapes.edit_name for s in samples} == set(EDIT_TYPE_IDS)  # 8 scenes, one of each edit
    for index, sample in enumerate(samples):
        entry, item = mapping[sample.image_id], dataset[index]
        source = read_png(root / "annotation_images" / entry["image_path"])
        target = read_png(root / entry["target_image_path"])
        assert torch.equal(item["target_image"], torch.from_numpy(target).permute(2, 0, 1) / 255.0)
        assert bool(item["has_target"]) and bool(item["has_mask"])
        changed = (source != target).any(-1)
        assert not (changed & ~item["edit_mask"].numpy()).any()  # the mask holds every changed pixel
        assert item["edit_type_id"] == entry["editing_type_id"] == EDIT_TYPE_IDS[sample.shapes.edit_name]

        # The target scene round-trips through its JSON and redraws the exported target pixel for pixel.
        exported_scene = Scene(
            Background.from_dict(entry["background"]),
            tuple(ShapeObject.from_dict(obj) for obj in entry["target_objects"]),
        )
        assert Scene.from_dict(json.loads(item["target_scene"])) == exported_scene
        assert int(item["supersample"]) == entry["supersample"] == sample.shapes.supersample
        np.testing.assert_array_equal(render(exported_scene, entry["resolution"], entry["supersample"]).image, target)

        objects, targets = entry["edit"]["objects"], entry["edit"]["target_indices"]
        assert int(item["target_object_index"]) == (targets[0] if targets else -1)
        source_labels = read_png(root / entry["source_labels_path"])
        target_labels = read_png(root / entry["target_labels_path"])
        assert bool(item["has_source_object"]) == bool(objects)
        assert bool(item["has_target_object"]) == bool(targets)
        expected_source = source_labels == objects[0] + 1 if objects else np.zeros_like(changed)
        np.testing.assert_array_equal(item["source_object_mask"].numpy(), expected_source)
        if not targets:  # remove
            assert not item["target_object_mask"].any() and not item["target_object_footprint"].any()
            assert int(item["requested_colour"]) == int(item["requested_shape"]) == -1
            continue
        obj = entry["target_objects"][targets[0]]
        np.testing.assert_array_equal(item["target_object_mask"].numpy(), target_labels == targets[0] + 1)
        np.testing.assert_array_equal(item["target_object_footprint"].numpy(), coco_rle_to_mask(obj["footprint"]))
        assert item["target_object_mask"].any() and not (item["target_object_mask"] & ~item["edit_mask"]).any()
        assert int(item["requested_colour"]) == COLOURS.index(obj["colour"])
        assert int(item["requested_shape"]) == SHAPES.index(obj["shape"])
        assert item["target_object"]["position"].tolist() == pytest.approx(obj["position"])
        assert float(item["target_object"]["radius"]) == pytest.approx(obj["radius"])
        assert float(item["target_object"]["rotation"]) == pytest.approx(obj["rotation"])


def test_shapes_edit_specifics(shapes_export):
    root, mapping = shapes_export
    samples = {s.shapes.edit_name: s for s in read_edit_benchmark(root)}
    dataset = EditBenchmarkDataset(list(samples.values()))
    items = {name: dataset[index] for index, name in enumerate(samples)}
    # recolour asks for the new colour; the moved object keeps its pixel count up to anti-aliasing at the edges.
    recolour = mapping[samples["recolour"].image_id]
    assert int(items["recolour"]["requested_colour"]) == COLOURS.index(recolour["edit"]["params"]["colour"])
    move = items["move"]
    assert move["source_object_mask"].any() and move["target_object_mask"].any()
    assert not torch.equal(move["source_object_mask"], move["target_object_mask"])
    assert not items["add"]["has_source_object"] and not items["add"]["source_object_mask"].any()
    assert items["remove"]["has_source_object"] and not items["remove"]["has_target_object"]


def test_shapes_masks_follow_a_resize_exactly(shapes_export):
    root, _ = shapes_export
    samples = read_edit_benchmark(root)
    native, doubled = EditBenchmarkDataset(samples)[0], EditBenchmarkDataset(samples, resolution=64)[0]
    for key in ("edit_mask", "source_object_mask", "target_object_mask", "target_object_footprint"):
        np.testing.assert_array_equal(doubled[key].numpy(), np.kron(native[key].numpy(), np.ones((2, 2))), key)
    assert doubled["target_image"].shape == (3, 64, 64)
    assert torch.equal(doubled["target_object"]["position"], native["target_object"]["position"])


def test_a_shapes_export_read_as_pie_bench_has_no_ground_truth(shapes_export):
    root, _ = shapes_export
    samples = read_edit_benchmark(root, "pie_bench")
    assert len(samples) == 8 and all(s.shapes is None for s in samples)
    item = EditBenchmarkDataset(samples)[0]
    assert not item["has_target"] and item["target_scene"] == "" and int(item["supersample"]) == 0


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda e: e["edit"].update(target_indices=[9]), "'target_indices' holds 9, not an index of the scene's"),
        (lambda e: e.update(editing_type_id="9"), "'editing_type_id' '9' disagrees with the edit type"),
        (lambda e: e.update(target_image_path="targets/none.png"), "'target_image_path': image file does not exist"),
        (lambda e: e.update(source_labels_path="../../labels.png"), "'source_labels_path': path .* points outside"),
        (lambda e: e.pop("edit"), "missing key 'edit'"),
        (lambda e: e.update(resolution=64), "'resolution' is 64 but the source image is 32x32"),
        (lambda e: e["target_objects"][0].update(colour="mauve"), r"target_objects\[0\]: object.colour: unknown"),
        (lambda e: e["target_objects"][0].pop("radius"), r"target_objects\[0\]: missing key 'radius'"),
        (lambda e: e.pop("background"), "missing key 'background'"),
        (lambda e: e["background"].update(kind="plaid"), "'background': background.kind: unknown kind 'plaid'"),
        (lambda e: e["background"].pop("colours"), "'background': missing key 'colours'"),
        (lambda e: e.update(background=[1, 2]), "'background' must be dict, got list"),
        (lambda e: e.pop("supersample"), "missing key 'supersample'"),
        (lambda e: e.update(supersample=0), "'supersample' is 0, expected a positive integer"),
        (lambda e: e.update(supersample="4"), "'supersample' must be int, got str"),
        (
            lambda e: e["source_objects"][0].update(footprint={"size": [32, 32], "counts": [1000, 25]}),
            r"source_objects\[0\]: 'footprint': COCO RLE runs sum to 1025 pixels but the 32x32 image has 1024",
        ),
        (
            lambda e: e["source_objects"][0].update(footprint=mask_to_coco_rle(np.zeros((32, 31), bool))),
            r"'footprint' size \[32, 31\] is not the image's \[32, 32\]",
        ),
    ],
)
def test_bad_shapes_entries_name_the_file_and_the_entry(shapes_export, tmp_path, damage, message):
    root, mapping = shapes_export
    for folder in ("annotation_images", "targets", "labels"):  # linked folders are followed
        (tmp_path / folder).symlink_to(root / folder)
    broken = json.loads(json.dumps(mapping))
    damage(broken["000000000003"])
    (tmp_path / "mapping_file.json").write_text(json.dumps(broken))
    with pytest.raises(BenchmarkError, match=message) as error:
        read_edit_benchmark(tmp_path, "shapes")
    assert str(error.value).startswith(str(tmp_path / "mapping_file.json"))
    assert "entry '000000000003'" in str(error.value)


def test_mixed_shapes_and_plain_entries_are_refused_by_detection(shapes_export, tmp_path):
    root, mapping = shapes_export
    (tmp_path / "annotation_images").symlink_to(root / "annotation_images")
    mixed = json.loads(json.dumps(mapping))
    del mixed["000000000005"]["target_image_path"]
    (tmp_path / "mapping_file.json").write_text(json.dumps(mixed))
    with pytest.raises(BenchmarkError, match="entry '000000000005': missing key 'target_image_path'"):
        detect_benchmark_format(tmp_path)
    assert len(read_edit_benchmark(tmp_path, "pie_bench")) == 8


def test_collating_mixed_sizes_asks_for_a_resolution_or_batch_size_one(tmp_path):
    write_pie_bench(tmp_path, {"000000000000": (8, 8), "000000000001": (8, 12)})
    dataset = EditBenchmarkDataset(read_edit_benchmark(tmp_path))
    with pytest.raises(ValueError, match="000000000000 8x8, 000000000001 8x12.*set resolution.*batch_size: 1"):
        collate_edit_samples([dataset[0], dataset[1]])
    batch = collate_edit_samples([EditBenchmarkDataset(dataset.samples, resolution=8)[i] for i in (0, 1)])
    assert batch["source_image"].shape == (2, 3, 8, 8) and batch["image_id"] == ["000000000000", "000000000001"]
