"""The region autoencoder as an editing method: token edits from benchmark requests, and eval.py end to end."""

from __future__ import annotations

import csv
import glob
import json
import sys
from pathlib import Path

import pytest
import torch

from eval import cli_main as eval_main
from interpedit.editing import RegionAutoencoderEdit
from interpedit.editing.region_autoencoder_edit import apply_shapes_edit, label_map_regions
from interpedit.region.pretrained import save_region_autoencoder
from interpedit.region.token_edits import RegionTokenSet
from interpedit.shapes import export_benchmark
from tests.test_region_pretrained import ENCODER_SPEC, tiny_model

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/eval/shapes/region_autoencoder.yaml")
SCENE = {
    "background": {"kind": "solid", "colour": [10, 20, 30]},
    "objects": [
        {"shape": "circle", "colour": "red", "radius": 0.1, "position": [0.3, 0.3], "rotation": 0.0},
        {"shape": "square", "colour": "blue", "radius": 0.2, "position": [0.6, 0.7], "rotation": 0.0},
    ],
}


def tokens() -> RegionTokenSet:
    appearance = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 3, 4)
    positions = torch.tensor([[[0.32, 0.31, 0.2], [0.6, 0.7, 0.35], [0.5, 0.5, 0.9]]])
    return RegionTokenSet(appearance, positions, torch.tensor([[True, True, True]]))


def test_label_maps_become_object_regions_then_the_background():
    labels = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [1, 1]]])
    masks, valid = label_map_regions(labels)
    assert masks.shape == (2, 3, 2, 2)
    assert masks[0, 0].tolist() == [[False, True], [False, False]]
    assert masks[0, 2].tolist() == [[True, False], [False, False]]  # background last
    assert valid.tolist() == [[True, True, True], [True, False, True]]
    assert label_map_regions(labels, num_objects=4)[0].shape[1] == 5


def test_move_shifts_the_visible_centroid_by_the_requested_displacement():
    edited = apply_shapes_edit(tokens(), {"type": "move", "params": {"object": 0, "position": [0.8, 0.1]}}, SCENE)
    torch.testing.assert_close(edited.positions[0, 0], torch.tensor([0.82, 0.11, 0.2]))
    torch.testing.assert_close(edited.positions[0, 1:], tokens().positions[0, 1:])
    torch.testing.assert_close(edited.appearance, tokens().appearance)
    # Displacements past the border stop at it.
    far = apply_shapes_edit(tokens(), {"type": "move", "params": {"object": 1, "position": [1.0, 1.0]}}, SCENE)
    torch.testing.assert_close(far.positions[0, 1, :2], torch.tensor([1.0, 1.0]))


def test_resize_scales_the_size_by_the_radius_ratio_and_remove_and_swap_act_on_tokens():
    resized = apply_shapes_edit(tokens(), {"type": "resize", "params": {"object": 1, "radius": 0.3}}, SCENE)
    assert resized.positions[0, 1, 2].item() == pytest.approx(0.35 * 1.5)
    removed = apply_shapes_edit(tokens(), {"type": "remove", "params": {"object": 0}}, SCENE)
    assert removed.valid.tolist() == [[False, True, True]]
    swapped = apply_shapes_edit(tokens(), {"type": "swap", "params": {"objects": [0, 1]}}, SCENE)
    torch.testing.assert_close(swapped.appearance[0, 0], tokens().appearance[0, 1])
    torch.testing.assert_close(swapped.appearance[0, 1], tokens().appearance[0, 0])
    torch.testing.assert_close(swapped.positions, tokens().positions)


def test_an_edit_it_cannot_do_says_which_it_can_and_how_to_export_them():
    with pytest.raises(ValueError, match=r"entry '7'.*not 'recolour'.*--edits move,resize,remove,swap"):
        apply_shapes_edit(tokens(), {"type": "recolour", "params": {"object": 0, "colour": "red"}}, SCENE,
                          where="entry '7'")


def test_a_batch_without_label_maps_is_refused():
    method = RegionAutoencoderEdit(tiny_model(), steps=1)
    batch = {"source_image": torch.rand(1, 3, 32, 32), "source_labels": torch.full((1, 32, 32), -1)}
    with pytest.raises(ValueError, match="no instance label maps"):
        method(batch)


def test_eval_py_measures_edits_and_reconstructions_of_a_saved_model(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    folder = save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    export_benchmark(tmp_path / "bench", 8, seed=3, edits=("move", "resize", "remove", "swap"))
    eval_main(["--config", CONFIG, "--data.init_args.root", str(tmp_path / "bench"),
               "--model.init_args.method.init_args.model", str(folder),
               "--model.init_args.method.init_args.steps", "2",
               "--trainer.default_root_dir", str(tmp_path / "out"), "--trainer.enable_progress_bar", "false"])
    (run_dir,) = glob.glob(str(tmp_path / "out/lightning_logs/version_*"))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert metrics["method"] == "region_autoencoder" and metrics["num_images"] == 8
    for key in ("reconstruction/psnr", "gt/psnr_edited", "gt/psnr_unedited", "gt/object_iou", "gt/centroid_error"):
        assert key in metrics, key
    with open(Path(run_dir) / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(row["reconstruction/psnr"] != "" for row in rows) == 8
    # Every edit but the two removes has its object in the target.
    assert sum(row["gt/object_iou"] != "" for row in rows) == 6
    table = (Path(run_dir) / "metrics.md").read_text()
    assert "| move | 2 |" in table and "| delete object | 2 |" in table


def test_same_seed_gives_the_same_edit_and_reconstruction_noise():
    model = tiny_model()
    method = RegionAutoencoderEdit(model, steps=2, cfg_scale=1.0, seed=4)
    images = torch.rand(2, 3, 32, 32)
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, 4:12, 4:12] = 1
    labels[:, 20:28, 18:30] = 2
    edit = json.dumps({"type": "swap", "params": {"objects": [0, 1]}})
    batch = {"source_image": images, "source_labels": labels, "edit": [edit, edit],
             "source_scene": [json.dumps(SCENE)] * 2, "image_id": ["a", "b"]}
    first, second = method(batch), method(batch)
    torch.testing.assert_close(first["edited"], second["edited"])
    torch.testing.assert_close(first["reconstruction"], second["reconstruction"])
    assert first["edited"].shape == first["reconstruction"].shape == (2, 3, 32, 32)
