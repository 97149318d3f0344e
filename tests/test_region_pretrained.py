"""Saving and loading a region autoencoder folder, and exporting one from a training checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch

from datamodules.shapes import ShapesDataset
from interpedit.backbones import PretrainedWeightsNotFoundError
from interpedit.region import pretrained as pretrained_module
from interpedit.region.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    PretrainedFormatError,
    instantiate_spec,
    load_region_autoencoder,
    save_region_autoencoder,
)
from interpedit.region.region_autoencoder import RegionAutoencoder
from diffusers import DDIMScheduler
from interpedit.backbones.tiny_presets import tiny_unet2d_condition
from interpedit.diffusion import DEFAULT_LORA_TARGETS, add_unet_lora, unet_lora_settings

REPO = Path(__file__).resolve().parents[1]

ENCODER_SPEC = {
    "class_path": "interpedit.region.RegionEncoder",
    "init_args": {
        "features": {
            "class_path": "interpedit.region.ViTFeatures",
            "init_args": {
                "model": "vit_tiny_patch16_224",
                # The folder's weights replace the backbone's: loading must not go to the hub for them.
                "pretrained": True,
                "model_kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
                "trainable": "full",
            },
        },
        "token_dim": 16,
        "pooling_width": 16,
        "pooling_depth": 1,
        "pooling_heads": 2,
        "position_embedding_dim": 12,
        "film_hidden_dim": 16,
    },
}


def tiny_model() -> RegionAutoencoder:
    torch.manual_seed(0)
    spec = pretrained_module.without_pretrained_backbone(ENCODER_SPEC)
    encoder = instantiate_spec(spec, source=Path("test"), where="encoder")
    unet = tiny_unet2d_condition(in_channels=3, out_channels=3, sample_size=32, cross_attention_dim=8)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                              prediction_type="v_prediction")
    model = RegionAutoencoder(encoder, unet, scheduler)
    for parameter in model.encoder.film.parameters():  # FiLM starts as the identity; give it weights to save
        torch.nn.init.normal_(parameter, std=0.5)
    return model.eval()


def batch(count: int = 2) -> dict:
    dataset = ShapesDataset("val", num_scenes=count, include_background_region=True)
    items = [dataset[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "masks", "region_valid")}


def test_round_trip_gives_the_same_tokens_and_images(tmp_path):
    model = tiny_model()
    folder = save_region_autoencoder(model, tmp_path / "rae", ENCODER_SPEC, extra={"trained_steps": 3})
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["trained_steps"] == 3 and config["vae"] is None and config["scheduler"]["prediction_type"] == "v_prediction"
    # diffusers keeps this list in set order, which differs between processes: the file stores it sorted.
    defaults = config["unet"]["_use_default_values"]
    assert len(defaults) > 2 and defaults == sorted(defaults)
    loaded = load_region_autoencoder(folder)
    assert not loaded.training
    data = batch()
    expected = model.encode(data["image"], data["masks"], data["region_valid"]).token_set()
    found = loaded.encode(data["image"], data["masks"], data["region_valid"]).token_set()
    torch.testing.assert_close(found.appearance, expected.appearance)
    torch.testing.assert_close(
        loaded.decode(found, steps=2, cfg_scale=2.0, seed=3), model.decode(expected, steps=2, cfg_scale=2.0, seed=3)
    )
    # Saving again over the folder replaces both files and leaves no staging folder behind.
    save_region_autoencoder(loaded, folder, ENCODER_SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rae"]
    assert "trained_steps" not in json.loads((folder / CONFIG_NAME).read_text())


def lora_model() -> RegionAutoencoder:
    model = tiny_model()
    add_unet_lora(model.unet, rank=4, alpha=8.0)
    for name, parameter in model.unet.named_parameters():
        if ".lora_B." in name:  # B starts at zero; give the adapters an effect to save
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def test_unet_lora_adapters_are_recorded_and_rebuilt_separately(tmp_path):
    model = lora_model()
    folder = save_region_autoencoder(model, tmp_path / "rae", ENCODER_SPEC)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["unet_lora"] == {"rank": 4, "alpha": 8.0, "dropout": 0.0,
                                   "target_modules": sorted(DEFAULT_LORA_TARGETS)}
    loaded = load_region_autoencoder(folder)
    assert unet_lora_settings(loaded.unet) == config["unet_lora"]
    assert any(".lora_B." in name for name in loaded.state_dict())  # not merged into the base weights
    data = batch()
    tokens = model.encode(data["image"], data["masks"], data["region_valid"]).token_set()
    torch.testing.assert_close(loaded.decode(tokens, steps=2, seed=1), model.decode(tokens, steps=2, seed=1))
    assert json.loads(save_region_autoencoder(tiny_model(), tmp_path / "plain", ENCODER_SPEC)
                      .joinpath(CONFIG_NAME).read_text())["unet_lora"] is None


@pytest.mark.parametrize(
    "lora, message",
    [
        ("rank 4", "'unet_lora': expected a mapping or null, got str"),
        ({"rank": 0}, "'unet_lora': add_unet_lora: rank must be at least 1"),
        ({"rank": 4, "target_modules": ["nope"]}, r"'unet_lora': add_unet_lora: target_modules \['nope'\]"),
        ({"rank": 4, "scale": 2}, "'unet_lora': .*unexpected keyword argument 'scale'"),
        (None, "weights do not match the network .*unexpected"),  # LoRA weights, but no adapters declared
    ],
)
def test_bad_unet_lora_field_names_the_file_and_the_field(tmp_path, lora, message):
    folder = save_region_autoencoder(lora_model(), tmp_path / "rae", ENCODER_SPEC)
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "unet_lora": lora}))
    with pytest.raises(PretrainedFormatError, match=message) as raised:
        load_region_autoencoder(folder)
    assert str(folder) in str(raised.value)


def test_a_failed_save_writes_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pretrained_module, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_or_files_name_the_path(tmp_path):
    with pytest.raises(PretrainedWeightsNotFoundError, match="nowhere"):
        load_region_autoencoder(tmp_path / "nowhere")
    folder = save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(PretrainedWeightsNotFoundError, match=WEIGHTS_NAME):
        load_region_autoencoder(folder)


def test_hub_id_without_network_says_how_to_get_the_files():
    with pytest.raises(PretrainedWeightsNotFoundError, match="hf download someone/rae"):
        load_region_autoencoder("someone/rae")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda c: "{not json", "not valid JSON"),
        (lambda c: json.dumps([1, 2]), "JSON object"),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "unet"}), "missing field 'unet'"),
        (lambda c: json.dumps({**c, "format_version": 99}), "format_version"),
        (lambda c: json.dumps({**c, "encoder": {**c["encoder"], "class_path": "interpedit.region.NoSuchEncoder"}}),
         r"encoder.class_path: cannot import 'interpedit.region.NoSuchEncoder'"),
        (lambda c: json.dumps({**c, "encoder": {**c["encoder"], "init_args": {**c["encoder"]["init_args"], "bogus": 1}}}),
         "encoder: interpedit.region.RegionEncoder"),
        (lambda c: json.dumps({**c, "unet": "not a config"}), "'unet': expected a diffusers config"),
        (lambda c: json.dumps({**c, "unet": {**c["unet"], "block_out_channels": [16, 32]}}), "weights do not fit"),
    ],
)
def test_bad_config_names_the_file_and_the_field(tmp_path, corrupt, message):
    folder = save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(corrupt(config))
    with pytest.raises(PretrainedFormatError, match=message) as raised:
        load_region_autoencoder(folder)
    assert str(folder) in str(raised.value)


def test_truncated_weights_name_the_weights_file(tmp_path):
    folder = save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedFormatError, match=f"{WEIGHTS_NAME}: cannot read the weights"):
        load_region_autoencoder(folder)


def test_export_from_a_training_checkpoint_saves_the_ema_weights(tmp_path, monkeypatch):
    from lightning_modules.region_autoencoder import main as export_main
    from train import cli_main

    monkeypatch.chdir(REPO)
    with patch.object(sys, "argv", ["train.py"]):
        cli = cli_main(["fit", "--config", "configs/shapes/region_autoencoder.yaml",
                        "--config", "tests/configs/tiny_region_autoencoder.yaml",
                        "--trainer.default_root_dir", str(tmp_path / "run")])
    export_main(["export", "--ckpt", str(tmp_path / "run/checkpoints/last.ckpt"), "--out", str(tmp_path / "rae")])
    loaded = load_region_autoencoder(tmp_path / "rae")
    config = json.loads((tmp_path / "rae" / CONFIG_NAME).read_text())
    assert config["trained_steps"] == 4 and config["ema"] is True
    trained = cli.model
    with trained.ema.swapped_in():
        expected = {k: v.clone() for k, v in trained.model.state_dict().items()}
    found = loaded.state_dict()
    assert expected.keys() == found.keys()
    for key in expected:
        torch.testing.assert_close(found[key], expected[key], msg=key)
    # The training weights differ from the average after 4 steps: the export took the EMA, not them.
    raw = trained.model.state_dict()
    assert any(not torch.equal(raw[k], found[k]) for k in found)

    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        export_main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")])


def test_half_precision_storage_halves_the_file_and_loads_back_as_float32(tmp_path):
    model = tiny_model()
    full = save_region_autoencoder(model, tmp_path / "full", ENCODER_SPEC)
    half = save_region_autoencoder(model, tmp_path / "half", ENCODER_SPEC, dtype=torch.float16)
    assert (half / WEIGHTS_NAME).stat().st_size < 0.7 * (full / WEIGHTS_NAME).stat().st_size
    assert json.loads((half / CONFIG_NAME).read_text())["stored_dtype"] == "float16"
    loaded = load_region_autoencoder(half)
    for (name, expected), found in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert found.dtype == expected.dtype, name
        torch.testing.assert_close(found, expected, atol=2e-3, rtol=2e-3, msg=name)


def test_saved_folder_and_files_are_readable_by_others_under_the_usual_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = save_region_autoencoder(tiny_model(), tmp_path / "rae", ENCODER_SPEC)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / WEIGHTS_NAME).stat().st_mode) == 0o644


def silhouette_model() -> RegionAutoencoder:
    torch.manual_seed(0)
    encoder = instantiate_spec(pretrained_module.without_pretrained_backbone(ENCODER_SPEC), source=Path("test"),
                               where="encoder")
    unet = tiny_unet2d_condition(in_channels=3 + 4, out_channels=3, sample_size=32, cross_attention_dim=8)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                              prediction_type="v_prediction")
    return RegionAutoencoder(encoder, unet, scheduler, layout_channels=4, layout_shape="silhouette",
                             silhouette_size=12, silhouette_extent=1.25).eval()


def test_a_silhouette_layout_is_recorded_and_rebuilt(tmp_path):
    model = silhouette_model()
    folder = save_region_autoencoder(model, tmp_path / "rae", ENCODER_SPEC)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert (config["layout_shape"], config["silhouette_size"], config["silhouette_extent"]) == ("silhouette", 12, 1.25)
    loaded = load_region_autoencoder(folder)
    data = batch()
    tokens = loaded.encode(data["image"], data["masks"], data["region_valid"]).token_set()
    assert tokens.silhouettes is not None and tokens.silhouettes.shape[-1] == 12
    assert tokens.silhouettes[~tokens.valid].abs().sum() == 0
    torch.testing.assert_close(loaded.decode(tokens, steps=2, seed=1), model.decode(tokens, steps=2, seed=1))
    # A disc-layout model's file has no such fields, as before the option existed.
    plain = save_region_autoencoder(tiny_model(), tmp_path / "plain", ENCODER_SPEC)
    assert "layout_shape" not in json.loads((plain / CONFIG_NAME).read_text())


@pytest.mark.parametrize("field, value, message", [("layout_shape", "box", "'layout_shape': 'box'"),
                                                   ("silhouette_size", 0, "'silhouette_size'"),
                                                   ("silhouette_extent", "wide", "'silhouette_extent'")])
def test_bad_layout_fields_name_the_file_and_the_field(tmp_path, field, value, message):
    folder = save_region_autoencoder(silhouette_model(), tmp_path / "rae", ENCODER_SPEC)
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**config, field: value}))
    with pytest.raises(PretrainedFormatError, match=message) as raised:
        load_region_autoencoder(folder)
    assert str(folder) in str(raised.value)
