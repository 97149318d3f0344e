"""The clause text encoder (colour binding): its identity start, its per-token targets, its training through
train.py, the components folder it exports, and the inpainting loss's known-region weight."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from interpedit.backbones.stable_diffusion import load_stable_diffusion
from interpedit.shapes.attributes import COLOURS, POSITION_WORDS, SHAPES, SIZES
from interpedit.stable_diffusion.clause_binding import IGNORE, clause_binding_encoder, clause_targets
from interpedit.stable_diffusion.text_conditioning import encode_prompts
from lightning_modules.clause_text_encoder import ClauseTextEncoderModule, export_components
from tests.tiny_components import tiny_shapes_sd_dir  # noqa: F401  (a pytest fixture)
from train import cli_main as train_main

REPO = Path(__file__).resolve().parents[1]
CAPTION = "a small red circle at the top left and a large blue square at the bottom"


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(REPO)


def test_targets_give_each_token_the_clause_words_it_has_seen():
    targets = clause_targets([CAPTION], 20)
    # Tokens: 0 <bos>, 1 a, 2 small, 3 red, 4 circle, 5 at, 6 the, 7 top, 8 left, 9 and, 10 a, 11 large, 12 blue,
    # 13 square, 14 at, 15 the, 16 bottom, 17 <eos>.
    size, colour, shape, position = (targets[name][0].tolist() for name in ("size", "colour", "shape", "position"))
    small, large = SIZES.index("small"), SIZES.index("large")
    assert size[:10] == [IGNORE, IGNORE] + [small] * 8 and size[10:18] == [IGNORE] + [large] * 7
    assert colour[3:10] == [COLOURS.index("red")] * 7 and colour[12:18] == [COLOURS.index("blue")] * 6
    assert colour[2] == IGNORE and colour[11] == IGNORE  # before the colour word of the clause
    assert shape[8] == SHAPES.index("circle") and shape[16] == SHAPES.index("square")
    # The position is only known after its last word: at "and" and at <eos>, not at "top".
    assert [i for i, v in enumerate(position) if v != IGNORE] == [9, 17]
    assert position[9] == POSITION_WORDS.index("top left") and position[17] == POSITION_WORDS.index("bottom")
    assert all(v == IGNORE for v in size[18:])  # padding
    empty = clause_targets(["", "an empty background"], 8)
    assert all((value == IGNORE).all() for value in empty.values())


def test_a_caption_longer_than_the_encoder_is_refused():
    with pytest.raises(ValueError, match="has 16 words; 10 fit"):
        clause_targets([CAPTION], 12)


def test_new_layers_start_as_the_identity_on_a_layer_free_encoder(tiny_shapes_sd_dir):
    loaded = load_stable_diffusion(tiny_shapes_sd_dir, components=("text_encoder", "tokenizer"))
    assert loaded.text_encoder.config.num_hidden_layers == 0
    bound = clause_binding_encoder(loaded.text_encoder, 2)
    prompts = [CAPTION, "", "a medium green star at the center"]
    before = encode_prompts(loaded.tokenizer, loaded.text_encoder, prompts)
    after = encode_prompts(loaded.tokenizer, bound, prompts)
    assert bound.config.num_hidden_layers == 2
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at least 1 new layer"):
        clause_binding_encoder(loaded.text_encoder, 0)


def test_training_makes_tokens_carry_their_clause_and_exports_a_loadable_pipeline_part(tmp_path, tiny_shapes_sd_dir):
    components = str(tiny_shapes_sd_dir)
    module = ClauseTextEncoderModule(components=components, num_layers=1)
    captions = [CAPTION, "a large green star at the center and a small purple hexagon at the bottom right"]
    untrained = module.losses(captions)["clause"].item()
    root = tmp_path / "run"
    train_main(["fit", "--config", str(REPO / "configs/shapes/clause_text_encoder.yaml"),
                "--trainer.default_root_dir", str(root), "--model.init_args.components", components,
                "--model.init_args.num_layers", "1", "--model.init_args.learning_rate", "0.01",
                "--trainer.max_steps", "60", "--trainer.val_check_interval", "60", "--trainer.limit_val_batches", "1",
                "--data.init_args.batch_size", "16", "--data.init_args.val_scenes", "16",
                "--data.init_args.num_workers", "0", "--model.init_args.warmup_steps", "5",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    checkpoint = root / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    trained = ClauseTextEncoderModule(**{k: v for k, v in state["hyper_parameters"].items() if not k.startswith("_")})
    trained.load_state_dict(state["state_dict"])
    assert trained.losses(captions)["clause"].item() < 0.8 * untrained
    # Only the new layers (and the heads) trained: the embeddings are the pipeline's.
    torch.testing.assert_close(trained.text_encoder.get_input_embeddings().weight,
                               module.text_encoder.get_input_embeddings().weight, rtol=0, atol=0)
    folder = export_components(checkpoint, tmp_path / "components")
    exported = load_stable_diffusion(folder, components=("vae", "text_encoder", "tokenizer", "scheduler"))
    assert exported.text_encoder.config.num_hidden_layers == 1
    torch.testing.assert_close(encode_prompts(exported.tokenizer, exported.text_encoder, captions),
                               encode_prompts(trained.tokenizer, trained.text_encoder, captions))
    # With a UNet added, the folder is a pipeline plain diffusers loads.
    unet = load_stable_diffusion(components, components=("unet",)).unet
    unet.save_pretrained(folder / "unet")
    (folder / "model_index.json").write_text((Path(components) / "model_index.json").read_text())
    StableDiffusionPipeline.from_pretrained(folder)


def test_bad_settings_are_refused(tiny_shapes_sd_dir, tmp_path):
    with pytest.raises(ValueError, match="anchor_weight: -1.0 must be >= 0"):
        ClauseTextEncoderModule(components=str(tiny_shapes_sd_dir), anchor_weight=-1.0)
    with pytest.raises(ValueError, match="caption_dropout: 1.0 is outside"):
        ClauseTextEncoderModule(components=str(tiny_shapes_sd_dir), caption_dropout=1.0)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        export_components(tmp_path / "missing.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_inpainting_loss_weighs_the_known_region(tiny_shapes_sd_dir):
    from lightning_modules.stable_diffusion import InpaintingModule

    components = str(tiny_shapes_sd_dir)
    plain = InpaintingModule(components=components, unet=components)
    weighted = InpaintingModule(components=components, unet=components, known_region_weight=4.0)
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, :2] = 1.0
    extra = (masks, torch.zeros(2, 4, 4, 4))
    assert plain.pixel_weights(extra) is None
    weights = weighted.pixel_weights(extra)
    # Inside the mask 1/4 of the known region's weight, scaled into [0, 1] as diffusion_loss's soft mask wants.
    assert torch.equal(weights[:, :, :2], torch.full((2, 1, 2, 4), 0.25)) and torch.equal(weights[:, :, 2:], torch.ones(2, 1, 2, 4))
    # The weights reach the training loss.
    from datamodules.shapes import ShapesDataset

    items = [ShapesDataset("train", num_scenes=2, resolution=64)[i] for i in range(2)]
    batch = {"image": torch.stack([item["image"] for item in items]), "caption": [item["caption"] for item in items],
             "masks": torch.stack([item["masks"] for item in items]),
             "region_valid": torch.stack([item["region_valid"] for item in items])}
    losses = [module.denoising_loss(batch, torch.Generator().manual_seed(0)) for module in (plain, weighted)]
    assert torch.isfinite(losses[1]) and not torch.isclose(losses[0], losses[1])
    with pytest.raises(ValueError, match="known_region_weight: 0.0 must be > 0"):
        InpaintingModule(components=components, unet=components, known_region_weight=0.0)
