"""Direction discovery through eval.py on a tiny shapes pipeline: PCA and supervised statistics, the saved files,
sweeps; the supervised editing method through eval.py; bad directions folders."""

from __future__ import annotations

import glob
import math
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


def supervised_directions(tiny_shapes_sd_dir, tmp_path):
    """Supervised directions of the tiny pipeline, with every colour's mean set by hand (index i: all i), so that
    each edit has a direction whatever the tiny model drew."""
    out = tmp_path / "supervised"
    discover("configs/hspace/shapes_supervised.yaml", tiny_shapes_sd_dir, out, tmp_path)
    saved = SavedDirections(out)
    assert set(saved.description["attributes"]) == {"colour", "shape", "size", "position"}
    counts = saved.tensors["count.colour"]
    assert int(counts.sum()) <= 6
    for attribute, entry in saved.description["explained_variance"].items():  # attributes with two labelled classes
        assert 0 <= entry["mean_over_steps"] <= 1 and len(entry["per_step"]) == len(saved.description["timesteps"])
        assert int((saved.tensors[f"count.{attribute}"] > 0).sum()) >= 2
    means = saved.tensors["mean.colour"]
    for index in range(len(means)):
        means[index] = torch.full_like(means[index], float(index))
    counts[:] = 1
    from interpedit.hspace.directions_file import save_directions

    save_directions(out, saved.tensors, saved.description)
    return out


def recolour_bench(tmp_path, count=2):
    bench = tmp_path / "bench"
    export_benchmark(bench, count, seed=9, resolution=64, edits=("recolour",), config=SceneConfig(min_objects=1,
                                                                                               max_objects=1))
    for entry in json.loads((bench / "mapping_file.json").read_text()).values():
        assert len(entry["blended_word"].split()) == 2
    return bench


def evaluate_edit(config, tiny_shapes_sd_dir, directions, bench, logs, *extra):
    args = ["--config", str(REPO / config), "--data.init_args.root", str(bench),
            "--model.init_args.method.init_args.model", str(tiny_shapes_sd_dir),
            "--model.init_args.method.init_args.directions", str(directions),
            "--trainer.default_root_dir", str(logs), "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu", *extra]
    eval_main(args)
    (run_dir,) = glob.glob(str(logs / "lightning_logs/version_*"))
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def test_supervised_directions_then_the_editing_method_through_eval_py(tiny_shapes_sd_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    out = supervised_directions(tiny_shapes_sd_dir, tmp_path)
    colours = SavedDirections(out).values("colour")
    metrics = evaluate_edit("configs/eval/shapes/hspace_supervised.yaml", tiny_shapes_sd_dir, out,
                            recolour_bench(tmp_path), tmp_path / "eval")
    assert metrics["cost/unet_forwards"] == 2 * 3  # per image: the inversion and the regeneration, 3 steps each
    from interpedit.editing import HSpaceEdit

    edit = HSpaceEdit(str(tiny_shapes_sd_dir), str(out))
    assert edit.attribute_change(f"{colours[0]} {colours[1]}") == ("colour", colours[0], colours[1])
    assert edit.attribute_change("circle nonsense") is None
    direction = SavedDirections(out).difference("colour", colours[0], colours[2])
    torch.testing.assert_close(direction, torch.full_like(direction, 2.0))


def test_supervised_directions_from_inverted_labelled_renders(tiny_shapes_sd_dir, tmp_path, monkeypatch):
    """The second source of labels: renders are DDIM-inverted and labelled by their scenes' exact attributes, so
    every single-object render counts and the class means are the inverted h averaged by true value."""
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    out = tmp_path / "inverted"
    eval_main(["--config", str(REPO / "configs/hspace/shapes_supervised_inverted.yaml"),
               "--model.init_args.model", str(tiny_shapes_sd_dir), "--model.init_args.out", str(out),
               "--model.init_args.num_inference_steps", "3", "--data.init_args.test_scenes", "6",
               "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(tmp_path / "logs"),
               "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"])
    saved = SavedDirections(out)
    assert saved.description["trajectories"] == "DDIM inversions of labelled images"
    for attribute in ("colour", "shape", "size", "position"):
        assert int(saved.tensors[f"count.{attribute}"].sum()) == 6  # every render is labelled

    from datamodules.shapes import ShapesDataModule
    from interpedit.hspace.diffusion_model import HSpaceModel
    from interpedit.hspace.shapes_labels import scene_attribute_labels
    from interpedit.hspace.trajectory import ddim_inversion

    data = ShapesDataModule(resolution=64, min_objects=1, max_objects=1, backgrounds=("solid", "gradient"),
                            train_scenes=0, val_scenes=0, test_scenes=6, batch_size=6, seed=8080)
    batch = next(iter(data.test_dataloader()))
    labels = scene_attribute_labels(batch)
    colours = batch["attributes"]["colour"][:, 0]
    assert torch.equal(labels["colour"], colours)
    model = HSpaceModel(str(tiny_shapes_sd_dir), "after")
    hs = ddim_inversion(model.hspace, model.schedule, model.encode(batch["image"]), saved.description["timesteps"]).hs
    value = int(colours[0])
    expected = hs[:, colours == value].mean(1)
    torch.testing.assert_close(saved.tensors["mean.colour"][value], expected, rtol=1e-4, atol=1e-5)


def test_scene_labels_leave_multi_object_scenes_unlabelled():
    from interpedit.hspace.shapes_labels import scene_attribute_labels

    batch = {"region_valid": torch.tensor([[True, False], [True, True]]),
             "attributes": {"colour": torch.tensor([[2, -1], [1, 3]]), "shape": torch.tensor([[0, -1], [4, 1]]),
                            "size": torch.tensor([[1, -1], [0, 2]])},
             "position": torch.tensor([[[0.9, 0.1], [0.0, 0.0]], [[0.5, 0.5], [0.1, 0.1]]])}
    labels = scene_attribute_labels(batch)
    assert labels["colour"].tolist() == [2, -1] and labels["shape"].tolist() == [0, -1]
    assert labels["size"].tolist() == [1, -1] and labels["position"].tolist() == [2, -1]  # (x 0.9, y 0.1): top right


def test_projection_onto_a_span_per_step():
    from interpedit.editing.hspace_jacobian_edit import project_onto_span

    direction = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])  # (T=2, h=3)
    vectors = torch.zeros(1, 2, 3)  # k=1: step 0 spans x, step 1 spans z
    vectors[0, 0, 0] = 1.0
    vectors[0, 1, 2] = 1.0
    torch.testing.assert_close(project_onto_span(direction, vectors, keep_norm=False),
                               torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(project_onto_span(direction, vectors),
                               torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 3.0**0.5]]))
    orthogonal = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    assert bool((project_onto_span(orthogonal, vectors) == 0).all())  # nothing in the span stays nothing


def test_masked_jacobian_edit_confines_the_direction_and_runs_through_eval_py(tiny_shapes_sd_dir, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    from interpedit.editing import HSpaceJacobianEdit
    from interpedit.hspace.jacobian import jacobian_directions

    out = supervised_directions(tiny_shapes_sd_dir, tmp_path)
    colours = SavedDirections(out).values("colour")
    edit = HSpaceJacobianEdit(str(tiny_shapes_sd_dir), str(out), vectors=2, max_iterations=5,
                              cache_dir=str(tmp_path / "direct-cache"))
    model = edit.model
    image = torch.rand(1, 3, 64, 64)
    trajectory = edit.invert(model.encode(image))
    plain = edit.sample_direction(f"{colours[0]} {colours[3]}", 0, trajectory.hs)
    mask_image = torch.zeros(64, 64)
    mask_image[8:40, 16:48] = 1.0
    mask = edit.output_mask(mask_image, tuple(trajectory.x0.shape[1:]))
    assert mask.shape == (1, *trajectory.x0.shape[1:]) and 0 < float(mask.mean()) < 1
    confined = edit.confine(trajectory, plain, mask)
    with torch.enable_grad():
        found = jacobian_directions(model.hspace, model.schedule, trajectory, 2, mask, oversample=2, tol=1e-3,
                                    max_iterations=5, seed=0, cache_dir=tmp_path / "direct-cache")
    assert found.passes == 0  # the edit's own vectors, from the cache
    basis = found.vectors.flatten(2)  # (k, T, dim)
    for step in range(len(edit.timesteps)):
        vector = confined[step].flatten()
        in_span = basis[:, step].T @ (basis[:, step] @ vector)
        torch.testing.assert_close(in_span, vector, atol=1e-4, rtol=1e-4)  # the offset lies in the Jacobian's span
        torch.testing.assert_close(vector.norm(), plain[step].flatten().norm(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(confined, plain)

    metrics = evaluate_edit("configs/eval/shapes/hspace_supervised_masked_jacobian.yaml", tiny_shapes_sd_dir, out,
                            recolour_bench(tmp_path), tmp_path / "eval",
                            "--model.init_args.method.init_args.vectors", "2",
                            "--model.init_args.method.init_args.max_iterations", "3",
                            "--model.init_args.method.init_args.cache_dir", str(tmp_path / "cache"))
    assert metrics["cost/unet_forwards"] > 2 * 3  # the Jacobian's passes come on top of inversion and regeneration
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # one entry per image (its own mask)


def test_the_labeller_reads_renders_exactly():
    from interpedit.hspace.shapes_labels import labeller_accuracy

    accuracy = labeller_accuracy(40, seed=5)
    assert accuracy["colour"] == 1.0 and accuracy["size"] == 1.0 and accuracy["position"] >= 0.95
    assert accuracy["shape"] >= 0.9


def test_objects_are_counted_and_multi_object_samples_get_no_labels():
    from interpedit.hspace.shapes_labels import count_objects, shapes_attribute_labels
    from interpedit.metrics.attribute_accuracy import palette_labels
    from interpedit.shapes import Background, Scene, ShapeObject, render

    background = Background("solid", ((120, 120, 125),))
    red = ShapeObject("circle", "red", 0.12, (0.25, 0.25))
    scenes = {
        "one": (red,),
        "two apart": (red, ShapeObject("square", "blue", 0.12, (0.75, 0.75))),
        "two touching": (red, ShapeObject("square", "blue", 0.12, (0.45, 0.25))),  # overlapping, other colour
        "two of one colour": (red, ShapeObject("star", "red", 0.12, (0.75, 0.7))),
    }
    images = torch.stack([torch.from_numpy(render(Scene(background, objects), 64).image).permute(2, 0, 1).float()
                          / 255.0 for objects in scenes.values()])
    assert count_objects(palette_labels(images)).tolist() == [1, 2, 2, 2]
    labels = shapes_attribute_labels(images)
    assert all(int(ids[0]) >= 0 and (ids[1:] == -1).all() for ids in labels.values())
    unfiltered = shapes_attribute_labels(images, single_object=False)
    assert (unfiltered["colour"] >= 0).all()
    specks = torch.full((1, 8, 8), -1)
    specks[0, 0, 0] = specks[0, 7, 7] = 3  # two stray pixels (not neighbours: no wrap-around) are no objects
    assert count_objects(specks).tolist() == [0]
    assert count_objects(specks, min_pixels=1).tolist() == [2]


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


def test_sweep_effects_read_the_object_and_its_changes():
    """The sweep read-outs on hand-made renders: a shift to the right, a recolour, a bigger object, a new
    background, and the change inside and outside a mask."""
    from interpedit.hspace.sweep_effects import attribute_shifts, masked_change, object_box_mask, object_readout
    from interpedit.shapes.attributes import COLOURS, PALETTE

    def render(colour, x0, size, background):
        image = torch.full((3, 32, 32), background / 255.0)
        image[:, 10 : 10 + size, x0 : x0 + size] = torch.tensor(PALETTE[colour]).view(3, 1, 1) / 255.0
        return image

    low = torch.stack([render("red", 4, 6, 120), render("red", 4, 6, 120), render("red", 4, 6, 120)])
    high = torch.stack([render("red", 20, 6, 120), render("blue", 4, 6, 120), render("red", 4, 12, 150)])
    readout = object_readout(low)
    assert readout["colour"].tolist() == [COLOURS.index("red")] * 3
    torch.testing.assert_close(readout["x"], torch.full((3,), 7 / 32))  # columns 4-9: (6.5 + 0.5) / 32
    shifts = attribute_shifts(low, high)
    assert shifts["found"] == 1.0
    assert shifts["x_signed"] == pytest.approx((16 + 3) / 32 / 3)  # the growth moves the centre too and shifts["y_signed"] == pytest.approx(3 / 32 / 3)
    assert shifts["colour"] == pytest.approx(1 / 3)
    assert shifts["size_signed"] == pytest.approx(math.log(4) / 3, rel=1e-5)
    assert shifts["background"] == pytest.approx(30 / 3, rel=1e-4)
    box = object_box_mask(readout["mask"][:1], grow=1)
    assert int(box.sum()) == 8 * 8
    inside, outside = masked_change(low[:1], high[1:2], readout["mask"][:1])
    assert inside > 100 and outside == 0.0


def test_pca_sweep_effects_command_on_a_tiny_pipeline(tiny_shapes_sd_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    monkeypatch.chdir(REPO)
    out = tmp_path / "pca"
    discover("configs/hspace/shapes_pca.yaml", tiny_shapes_sd_dir, out, tmp_path, components="2",
             sweep_directions="1", sweep_samples="1")
    from interpedit.hspace.sweep_effects import main

    main(["pca", "--directions", str(out), "--num-samples", "3", "--components", "2", "--out",
          str(tmp_path / "effects.json")])
    rows = json.loads((tmp_path / "effects.json").read_text())
    assert [row["component"] for row in rows] == ["pc0", "pc1", "random"]
    assert all(0 <= row["background"] for row in rows)
    assert "| pc1 |" in capsys.readouterr().out
    with pytest.raises(Exception, match="components"):
        main(["pca", "--directions", str(out), "--num-samples", "1", "--components", "9"])
