"""The shapes Stable Diffusion's evaluation: exact read-outs on real renders, retrieval, and the evaluate command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from interpedit.shapes import COLOURS, SIZES, Background, Scene, ShapeObject, render
from interpedit.stable_diffusion.quality import (
    colour_binding,
    held_out_scenes,
    results_table,
    retrieval_accuracy,
    single_object_accuracy,
    single_object_readout,
    two_object_scenes,
)
from lightning_modules.stable_diffusion import main as sd_main
from tests.tiny_components import tiny_shapes_inpainting_dir, tiny_shapes_sd_dir  # noqa: F401


def image_of(obj: ShapeObject, side: int = 64) -> torch.Tensor:
    rendered = render(Scene(Background("solid", ((120, 120, 125),)), (obj,)), side)
    return torch.from_numpy(rendered.image).permute(2, 0, 1).float()[None] / 255.0


def test_readout_of_a_known_object():
    obj = ShapeObject("square", "orange", 0.16, (0.8, 0.15), 0.3)  # large, top right
    readout = single_object_readout(image_of(obj))
    assert COLOURS[int(readout["colour"])] == "orange" and SIZES[int(readout["size"])] == "large"
    assert (int(readout["row"]), int(readout["column"])) == (0, 2)
    empty = torch.full((1, 3, 64, 64), 0.5)
    assert int(single_object_readout(empty)["colour"]) == -1


def test_real_renders_pass_the_exact_checks():
    scenes = held_out_scenes(64, seed=123, min_objects=1, max_objects=1)
    accuracy = single_object_accuracy(torch.stack([s["image"] for s in scenes]), scenes)
    assert accuracy["colour_accuracy"] == 1.0 and accuracy["size_accuracy"] == 1.0
    assert accuracy["position_accuracy"] >= 0.95  # a visible-pixel centroid on a cell boundary can fall next door


def test_colour_binding_holds_on_real_renders_and_fails_with_the_colours_swapped():
    scenes = two_object_scenes(32, seed=7)
    assert all(len(s["scene"].objects) == 2 for s in scenes)
    real = colour_binding(torch.stack([s["image"] for s in scenes]), scenes)
    assert real["binding"] >= 0.9 and real["both_colours"] == 1.0
    swapped = []
    for scene in scenes:
        first, second = scene["scene"].objects
        objects = (replace(first, colour=second.colour), replace(second, colour=first.colour))
        swapped.append(torch.from_numpy(render(replace(scene["scene"], objects=objects), 64).image).permute(2, 0, 1))
    wrong = colour_binding(torch.stack(swapped).float() / 255.0, scenes)
    assert wrong["both_colours"] == 1.0 and wrong["binding"] <= 0.1


def test_committed_shapes_clip_retrieves_real_renders():
    from interpedit.clip import ShapesCLIP

    scenes = held_out_scenes(64, seed=5, min_objects=1, max_objects=3)
    clip = ShapesCLIP.load("pretrained/shapes_clip").eval()
    assert retrieval_accuracy(clip, torch.stack([s["image"] for s in scenes]), [s["caption"] for s in scenes]) >= 0.85
    shuffled = [scenes[(i + 1) % 64]["caption"] for i in range(64)]
    assert retrieval_accuracy(clip, torch.stack([s["image"] for s in scenes]), shuffled) < 0.2


def test_held_out_scenes_are_a_function_of_the_seed():
    first, again, other = (held_out_scenes(4, seed) for seed in (1, 1, 2))
    assert [s["caption"] for s in first] == [s["caption"] for s in again]
    assert [s["caption"] for s in first] != [s["caption"] for s in other]


def test_evaluate_command_writes_every_figure(tmp_path, tiny_shapes_sd_dir, tiny_shapes_inpainting_dir, capsys):
    out = tmp_path / "quality.json"
    sd_main(["evaluate", "--model", str(tiny_shapes_sd_dir), "--inpainting", str(tiny_shapes_inpainting_dir),
             "--num-prompts", "16", "--seed", "3", "--steps", "2", "--inversion-steps", "2", "--batch-size", "16",
             "--clip", "pretrained/shapes_clip", "--out", str(out)])
    results = json.loads(out.read_text())
    for key in ("vae/psnr_solid", "vae/psnr_gradient", "vae/psnr_noise", "vae/psnr_solid_gradient",
                "caption/retrieval_top1_of16", "caption/retrieval_top1_of16_real", "caption/colour_accuracy",
                "caption/position_accuracy", "caption/size_accuracy", "caption/colour_accuracy_real",
                "caption/two_object_binding", "caption/two_object_both_colours", "caption/two_object_binding_real",
                "inversion/psnr", "inversion/vae_psnr", "inpainting/colour_accuracy", "inpainting/psnr_outside_mask"):
        assert isinstance(results[key], float), key
    assert results["caption/colour_accuracy_real"] == 1.0
    printed = capsys.readouterr().out
    assert "| caption/retrieval_top1_of16 |" in printed and f"wrote {out}" in printed
    assert "| vae/psnr_solid_gradient |" in results_table(results)


def test_evaluate_refuses_too_few_prompts(tiny_shapes_sd_dir):
    with pytest.raises(SystemExit, match="--num-prompts: retrieval needs at least one group of 16"):
        sd_main(["evaluate", "--model", str(tiny_shapes_sd_dir), "--num-prompts", "8", "--seed", "0"])


def test_grid_command_draws_real_renders_and_pipeline_samples(tmp_path, tiny_shapes_sd_dir):
    from PIL import Image

    out = tmp_path / "grid.png"
    sd_main(["grid", "--model", str(tiny_shapes_sd_dir), "--out", str(out), "--num-prompts", "2",
             "--samples-per-prompt", "2", "--steps", "2"])
    width, height = Image.open(out).size
    assert width > height > 0  # two rows, three columns (real, sample 1, sample 2)


def test_components_command_names_a_missing_vae(tmp_path):
    from interpedit.backbones import PretrainedWeightsNotFoundError

    with pytest.raises(PretrainedWeightsNotFoundError, match="no such file or directory"):
        sd_main(["components", "--vae", str(tmp_path / "no_vae"), "--out", str(tmp_path / "components")])
    assert not (tmp_path / "components").exists()


def test_word_attention_ratios_cover_every_cross_attention_layer(tiny_shapes_sd_dir):
    from interpedit.backbones.stable_diffusion import load_stable_diffusion
    from interpedit.diffusion.unet_hooks import select_layers
    from interpedit.stable_diffusion.quality import held_out_scenes
    from interpedit.stable_diffusion.word_attention import word_attention_ratios

    sd = load_stable_diffusion(tiny_shapes_sd_dir, inpainting=False)
    ratios = word_attention_ratios(sd, held_out_scenes(4, seed=2, min_objects=1, max_objects=1))
    assert set(ratios) == set(select_layers(sd.unet, "*attn2", "cross"))
    for values in ratios.values():
        assert set(values) == {"position", "colour"} and all(v > 0 for v in values.values())


def test_changed_captions_change_one_word_of_the_kind_asked():
    import numpy as np

    from interpedit.stable_diffusion.word_loss_gap import WORD_KINDS, changed_captions

    scenes = held_out_scenes(8, seed=3, min_objects=1, max_objects=1)
    for kind in WORD_KINDS:
        for scene, changed in zip(scenes, changed_captions(scenes, kind, np.random.default_rng(0))):
            true_words, new_words = scene["caption"].split(), changed.split()
            differing = [i for i, (a, b) in enumerate(zip(true_words, new_words)) if a != b]
            assert changed != scene["caption"] and len(differing) >= 1
            if kind != "position":  # a position phrase may have one word or two ("left", "top left")
                assert len(true_words) == len(new_words) and len(differing) == 1


def test_word_loss_gaps_are_one_for_a_unet_that_ignores_the_caption(tiny_shapes_sd_dir):
    from interpedit.backbones.stable_diffusion import load_stable_diffusion
    from interpedit.stable_diffusion.word_loss_gap import word_loss_gaps

    sd = load_stable_diffusion(tiny_shapes_sd_dir, inpainting=False)
    scenes = held_out_scenes(6, seed=4, min_objects=1, max_objects=1)
    with_text = word_loss_gaps(sd, scenes, timesteps=(900,), batch_size=4)
    assert set(with_text) == {900}
    assert set(with_text[900]) == {"true", "colour", "shape", "size", "position", "empty"}
    assert with_text[900]["colour"] != with_text[900]["true"]  # a random UNet still reads its text

    unet = sd.unet

    class Blind(torch.nn.Module):  # the same UNet, always given the empty caption's states
        def __init__(self):
            super().__init__()
            self.inner = unet

        def forward(self, sample, t, encoder_hidden_states):
            from interpedit.stable_diffusion.text_conditioning import encode_prompts

            states = encode_prompts(sd.tokenizer, sd.text_encoder, [""] * sample.shape[0])
            return self.inner(sample, t, encoder_hidden_states=states)

    sd.unet = Blind()
    blind = word_loss_gaps(sd, scenes, timesteps=(900,), batch_size=4)
    assert all(abs(loss / blind[900]["true"] - 1.0) < 1e-5 for loss in blind[900].values())


def test_word_gap_command_prints_a_table_and_rejects_bad_timesteps(tiny_shapes_sd_dir, tmp_path, capsys):
    from interpedit.user_errors import OptionError

    out = tmp_path / "gaps.json"
    sd_main(["word-gap", "--model", str(tiny_shapes_sd_dir), "--num-scenes", "4", "--timesteps", "900,500",
             "--out", str(out)])
    assert "position / true" in capsys.readouterr().out
    assert set(json.loads(out.read_text())) == {"900", "500"}
    with pytest.raises(OptionError, match="--timesteps"):
        sd_main(["word-gap", "--model", str(tiny_shapes_sd_dir), "--timesteps", "900,1000"])
    with pytest.raises(OptionError, match="--timesteps"):
        sd_main(["word-gap", "--model", str(tiny_shapes_sd_dir), "--timesteps", "nine"])


def test_swapped_colour_captions_exchange_only_the_colours():
    from interpedit.stable_diffusion.word_loss_gap import swapped_colour_captions

    scenes = two_object_scenes(6, seed=5)
    for scene, swapped in zip(scenes, swapped_colour_captions(scenes)):
        first, second = scene["scene"].objects
        true_words, new_words = scene["caption"].split(), swapped.split()
        assert len(true_words) == len(new_words)
        differing = sorted((a, b) for a, b in zip(true_words, new_words) if a != b)
        assert differing == sorted([(first.colour, second.colour), (second.colour, first.colour)])
    with pytest.raises(ValueError, match="two objects of different colours"):
        swapped_colour_captions(held_out_scenes(2, seed=1, min_objects=1, max_objects=1))


def test_binding_gap_command_compares_the_swapped_caption(tiny_shapes_sd_dir, tmp_path, capsys):
    out = tmp_path / "binding.json"
    sd_main(["word-gap", "--model", str(tiny_shapes_sd_dir), "--binding", "--num-scenes", "4", "--timesteps", "900",
             "--out", str(out)])
    assert "swapped / true" in capsys.readouterr().out
    losses = json.loads(out.read_text())["900"]
    assert set(losses) == {"true", "swapped", "empty"} and losses["swapped"] != losses["true"]
