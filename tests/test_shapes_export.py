"""The benchmark exporter: read the folder back and check that masks, label maps and images are exact."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from datamodules.shapes import main
from interpedit.masks.rle import coco_rle_to_mask, pie_rle_to_mask
from interpedit.shapes import (
    EDIT_TYPE_IDS,
    EDIT_TYPES,
    Background,
    Scene,
    SceneConfig,
    ShapeObject,
    render,
    strip_brackets,
)
from interpedit.shapes.export import draw_edit, export_benchmark

PIE_BENCH_FIELDS = {
    "image_path", "original_prompt", "editing_prompt", "editing_instruction", "editing_type_id", "blended_word", "mask",
}  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmark")
    counts = export_benchmark(folder, num_scenes=24, seed=4, resolution=32)
    return folder, counts, json.loads((folder / "mapping_file.json").read_text())


def read_png(path):
    return np.array(Image.open(path))


def test_every_edit_type_is_exported_with_pie_bench_fields(exported):
    folder, counts, mapping = exported
    assert counts == {edit_type: 3 for edit_type in EDIT_TYPES}
    assert sorted(mapping) == [f"{i:012d}" for i in range(24)]
    for entry_id, entry in mapping.items():
        assert PIE_BENCH_FIELDS <= set(entry)
        assert entry["editing_type_id"] == EDIT_TYPE_IDS[entry["edit"]["type"]]
        assert isinstance(entry["editing_type_id"], str)
        assert (folder / "annotation_images" / entry["image_path"]).is_file()
        assert entry["seed_entropy"] == [3, 4, int(entry_id)] and entry["resolution"] == 32
        assert strip_brackets(entry["original_prompt"]) == entry["source_caption"]
        assert strip_brackets(entry["editing_prompt"]) == entry["target_caption"]
    assert not list(folder.rglob("*.tmp"))


def test_masks_cover_every_changed_pixel_and_equal_the_edited_footprints(exported):
    folder, _, mapping = exported
    for entry_id, entry in mapping.items():
        source = read_png(folder / "annotation_images" / entry["image_path"])
        target = read_png(folder / entry["target_image_path"])
        height, width = source.shape[:2]
        mask = pie_rle_to_mask(entry["mask"], height, width, where=f"mapping_file.json: {entry_id}.mask")
        differs = (source != target).any(axis=-1)
        assert differs.any() and not (differs & ~mask).any(), entry_id

        union = np.zeros((height, width), bool)
        for index in entry["edit"]["objects"]:
            union |= coco_rle_to_mask(entry["source_objects"][index]["footprint"])
        for index in entry["edit"]["target_indices"]:
            union |= coco_rle_to_mask(entry["target_objects"][index]["footprint"])
        np.testing.assert_array_equal(mask, union)

        # Label masks (majority rule) of the edited objects lie inside the mask.
        source_labels = read_png(folder / entry["source_labels_path"])
        target_labels = read_png(folder / entry["target_labels_path"])
        for index in entry["edit"]["objects"]:
            assert not ((source_labels == index + 1) & ~mask).any()
        for index in entry["edit"]["target_indices"]:
            assert not ((target_labels == index + 1) & ~mask).any()


def test_exported_scenes_re_render_to_the_exact_pngs(exported):
    folder, _, mapping = exported
    for entry in mapping.values():
        background = Background.from_dict(entry["background"])
        for side, image_path, labels_path in (
            ("source", "annotation_images/" + entry["image_path"], entry["source_labels_path"]),
            ("target", entry["target_image_path"], entry["target_labels_path"]),
        ):
            objects = tuple(ShapeObject.from_dict(o) for o in entry[f"{side}_objects"])
            rendered = render(Scene(background, objects), entry["resolution"], entry["supersample"])
            np.testing.assert_array_equal(rendered.image, read_png(folder / image_path))
            np.testing.assert_array_equal(rendered.labels, read_png(folder / labels_path))
            assert rendered.caption == entry[f"{side}_caption"]


def attributes_only(objects):
    return [{key: value for key, value in obj.items() if key != "footprint"} for obj in objects]


def test_exported_edits_are_exact(exported):
    _, _, mapping = exported
    for entry in mapping.values():
        edit, params = entry["edit"], entry["edit"]["params"]
        source, target = attributes_only(entry["source_objects"]), attributes_only(entry["target_objects"])
        if edit["type"] == "remove":
            assert target == source[: params["object"]] + source[params["object"] + 1 :]
        elif edit["type"] == "add":
            z = params["z_index"]
            assert target == source[:z] + [params["new_object"]] + source[z:]
        elif edit["type"] == "swap":
            first, second = params["objects"]
            for a, b in ((first, second), (second, first)):
                assert (target[a]["colour"], target[a]["shape"]) == (source[b]["colour"], source[b]["shape"])
                assert (target[a]["position"], target[a]["radius"]) == (source[a]["position"], source[a]["radius"])
        else:
            index = params["object"]
            changed = {key for key in source[index] if source[index][key] != target[index][key]}
            expected = {
                "move": {"position"}, "resize": {"radius", "size"}, "recolour": {"colour"},
                "reshape": {"shape"}, "rotate": {"rotation"},
            }[edit["type"]]  # fmt: skip
            assert changed <= expected and changed & expected
            assert source[:index] + source[index + 1 :] == target[:index] + target[index + 1 :]


def test_seed_entropy_redraws_the_entry(exported):
    _, _, mapping = exported
    for entry_id in ("000000000005", "000000000014"):
        entry = mapping[entry_id]
        rng = np.random.default_rng(np.random.SeedSequence(entry["seed_entropy"]))
        edit = draw_edit(rng, entry["edit"]["type"], SceneConfig(min_objects=2, max_objects=4), entry["resolution"])
        assert edit.params == entry["edit"]["params"] and edit.instruction == entry["editing_instruction"]


def test_exports_are_deterministic_and_seed_dependent(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        export_benchmark(tmp_path / name, num_scenes=3, seed=seed, resolution=64, edits=("move", "recolour"))
    first, second, third = (json.loads((tmp_path / n / "mapping_file.json").read_text()) for n in "abc")
    assert first == second and first != third
    png = first["000000000001"]["target_image_path"]
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert read_png(tmp_path / "a" / png).shape == (64, 64, 3)


def test_a_killed_export_leaves_no_mapping_file_and_no_half_files(tmp_path):
    def crash(line):
        if line.startswith("exported 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_benchmark(tmp_path, num_scenes=10, seed=0, progress=crash)
    assert not (tmp_path / "mapping_file.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    for png in tmp_path.rglob("*.png"):
        Image.open(png).load()  # every file there is complete


def test_command_line_exports_and_reports(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path), "--num-scenes", "2", "--seed", "0", "--edits", "remove,swap"]) == 0
    output = capsys.readouterr().out
    assert re.search(r"wrote 2 edits \(remove 1, swap 1\) at 32px to .*mapping_file\.json", output)
    mapping = json.loads((tmp_path / "mapping_file.json").read_text())
    assert [e["edit"]["type"] for e in mapping.values()] == ["remove", "swap"]


def test_command_line_backgrounds_restrict_the_scenes(tmp_path):
    arguments = ["export", "--out", str(tmp_path), "--num-scenes", "12", "--seed", "1"]
    assert main([*arguments, "--backgrounds", "solid, gradient"]) == 0
    kinds = [entry["background"]["kind"] for entry in json.loads((tmp_path / "mapping_file.json").read_text()).values()]
    assert set(kinds) == {"solid", "gradient"}  # no noise, and both kinds drawn
    assert main([*arguments, "--out", str(tmp_path / "noise"), "--backgrounds", "noise"]) == 0
    mapping = json.loads((tmp_path / "noise" / "mapping_file.json").read_text())
    assert {entry["background"]["kind"] for entry in mapping.values()} == {"noise"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--edits", "move,fly"], "edits: fly not valid; choose from move, resize, recolour, reshape, rotate, remove"),
        (["--resolution", "48"], "invalid choice: 48 (choose from 32, 64, 128, 256)"),
        (["--num-scenes", "0"], "num_scenes: must be at least 1"),
        (["--backgrounds", "solid,plaid"], "backgrounds: plaid not valid; choose from solid, gradient, noise"),
        (["--backgrounds", ","], "backgrounds: none given not valid; choose from solid, gradient, noise"),
    ],
)
def test_command_line_rejects_bad_arguments(tmp_path, capsys, arguments, message):
    base = {"--out": str(tmp_path), "--num-scenes": "2", "--seed": "0"}
    for flag, value in zip(arguments[::2], arguments[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit):
        main(["export", *[item for pair in base.items() for item in pair]])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mapping_file.json").exists()


def test_edited_objects_are_legible_in_the_target():
    # Most of each edited object's label mask is pixels it covers entirely (exactly its palette colour), so the
    # true target passes the colour and shape checks; nearly hidden objects are redrawn, not exported.
    from interpedit.shapes.edits import EDIT_TYPES
    from interpedit.shapes.scene import SceneConfig

    for index in range(40):
        rng = np.random.default_rng(np.random.SeedSequence([3, 123, index]))
        edit = draw_edit(rng, EDIT_TYPES[index % len(EDIT_TYPES)], SceneConfig(min_objects=2, max_objects=4), 32)
        for target in edit.target_indices:
            mask = edit.target.labels == target + 1
            full = edit.target.coverage[target] >= 1.0
            assert 2 * (mask & full).sum() > mask.sum(), (index, edit.edit_type)
