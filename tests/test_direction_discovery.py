"""Direction discovery through eval.py on a tiny shapes pipeline: PCA and supervised statistics, the saved files,
sweeps; the supervised editing method through eval.py; bad directions folders."""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pytest
import torch

from eval import cli_main as eval_main
from interpedit.hspace.directions_file import SavedDirections
from interpedit.shapes import SceneConfig, export_benchmark
from tests.tiny_components import tiny_shapes_sd_dir, tiny_unet2d_dir  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[1]


def discover(config, model, out, tmp_path, **extra):
    args = ["--config", str(REPO / config), "--model.init_args.model", str(model), "--model.init_args.out", str(out),
            "--model.init_args.num_inference_steps", "3", "--data.init_args.num_samples", "6",
            "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(tmp_path / "logs"),
            "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    for key, value in extra.items():
        args += [f"--model.init_args.{key}", value]
    eval_main(args)


@pytest.mark.parametrize("fixture", ["tiny_shapes_sd_dir", "tiny_unet2d_dir"])
def test_pca_directions_are_saved_with_their_description_and_swept(fixture, request, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    model = request.getfixturevalue(fixture)
    out = tmp_path / "pca"
    discover("configs/hspace/shapes_pca.yaml", model, out, tmp_path, components="2", sweep_directions="2",
             sweep_samples="2")
    description = json.loads((out / "directions.json").read_text())
    assert description["method"] == "pca" and description["samples"] == 6 and len(description["timesteps"]) == 3
    assert description["kind"] == ("latent" if "shapes" in fixture else "pixel")
    saved = SavedDirections(out)
    assert saved.tensors["directions"].shape[:2] == (2, 3) and saved.tensors["std"].shape == (2, 3)
    assert (out / "sweep.png").is_file()


def test_supervised_directions_then_the_editing_method_through_eval_py(tiny_shapes_sd_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    out = tmp_path / "supervised"
    discover("configs/hspace/shapes_supervised.yaml", tiny_shapes_sd_dir, out, tmp_path)
    saved = SavedDirections(out)
    assert set(saved.description["attributes"]) == {"colour", "shape", "size", "position"}
    counts = saved.tensors["count.colour"]
    assert int(counts.sum()) <= 6
    # Give every colour a mean by hand, so each edit has a direction whatever the tiny model drew.
    means = saved.tensors["mean.colour"]
    for index in range(len(means)):
        means[index] = torch.full_like(means[index], float(index))
    counts[:] = 1
    from interpedit.hspace.directions_file import save_directions

    save_directions(out, saved.tensors, saved.description)
    colours = saved.values("colour")
    bench = tmp_path / "bench"
    export_benchmark(bench, 2, seed=9, resolution=64, edits=("recolour",), config=SceneConfig(min_objects=1,
                                                                                           max_objects=1))
    for entry in json.loads((bench / "mapping_file.json").read_text()).values():
        assert len(entry["blended_word"].split()) == 2
    args = ["--config", str(REPO / "configs/eval/shapes/hspace_supervised.yaml"), "--data.init_args.root", str(bench),
            "--model.init_args.method.init_args.model", str(tiny_shapes_sd_dir),
            "--model.init_args.method.init_args.directions", str(out),
            "--trainer.default_root_dir", str(tmp_path / "eval"), "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu"]
    eval_main(args)
    (run_dir,) = glob.glob(str(tmp_path / "eval/lightning_logs/version_*"))
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    assert metrics["cost/unet_forwards"] == 2 * 3  # per image: the inversion and the regeneration, 3 steps each
    from interpedit.editing import HSpaceEdit

    edit = HSpaceEdit(str(tiny_shapes_sd_dir), str(out))
    assert edit.attribute_change(f"{colours[0]} {colours[1]}") == ("colour", colours[0], colours[1])
    assert edit.attribute_change("circle nonsense") is None
    direction = SavedDirections(out).difference("colour", colours[0], colours[2])
    torch.testing.assert_close(direction, torch.full_like(direction, 2.0))


def test_the_labeller_reads_renders_exactly():
    from interpedit.hspace.shapes_labels import labeller_accuracy

    accuracy = labeller_accuracy(40, seed=5)
    assert accuracy["colour"] == 1.0 and accuracy["size"] == 1.0 and accuracy["position"] >= 0.95
    assert accuracy["shape"] >= 0.9


def test_bad_directions_folders_are_refused(tiny_shapes_sd_dir, tmp_path):
    from interpedit.editing import HSpaceEdit
    from interpedit.hspace.directions_file import save_directions

    with pytest.raises(FileNotFoundError, match="no directions.safetensors"):
        HSpaceEdit(str(tiny_shapes_sd_dir), str(tmp_path / "missing"))
    save_directions(tmp_path / "pca", {"directions": torch.zeros(1, 2, 3)},
                    {"method": "pca", "timesteps": [1, 2], "place": "after"})
    with pytest.raises(ValueError, match="holds 'pca' directions; it needs supervised ones"):
        HSpaceEdit(str(tiny_shapes_sd_dir), str(tmp_path / "pca"))
    save_directions(tmp_path / "broken", {"x": torch.zeros(1)}, {"method": "supervised"})
    with pytest.raises(ValueError, match="directions.json: the field 'timesteps' is missing"):
        HSpaceEdit(str(tiny_shapes_sd_dir), str(tmp_path / "broken"))


def test_masked_jacobian_directions_per_sample_are_saved_and_cached(tiny_shapes_sd_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    out = tmp_path / "jacobian"
    discover("configs/hspace/shapes_jacobian.yaml", tiny_shapes_sd_dir, out, tmp_path, jacobian_vectors="2",
             jacobian_steps="[0, 2]")
    saved = SavedDirections(out)
    assert saved.description["method"] == "jacobian" and saved.description["mask_box"] == [0.0, 0.0, 0.5, 1.0]
    vectors, values = saved.tensors["vectors"], saved.tensors["values"]
    assert vectors.shape[:3] == (6, 2, 3) and values.shape == (6, 2, 3)
    assert bool((values[:, :, [0, 2]] > 0).all()) and bool((values[:, :, 1] == 0).all())  # only the chosen steps
    norms = vectors[:, :, [0, 2]].flatten(3).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    cache = sorted((tmp_path / "jacobian-cache").glob("*.safetensors"))
    assert len(cache) == 6  # one entry per sample
    discover("configs/hspace/shapes_jacobian.yaml", tiny_shapes_sd_dir, out, tmp_path, jacobian_vectors="2",
             jacobian_steps="[0, 2]", mask_box="[0.5, 0.0, 1.0, 1.0]")
    assert len(sorted((tmp_path / "jacobian-cache").glob("*.safetensors"))) == 12  # another mask: new entries
