"""The YAML configs: group files agree with the complete experiments, and data configs build working modules."""

import sys
from pathlib import Path

import pytest
import yaml

from datamodules.segmented_folder import SegmentedFolderDataModule
from eval import cli_main
from tests.segmented_folder_builders import build_sa1b_folder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load(relative: str) -> dict:
    return yaml.safe_load((CONFIGS / relative).read_text())


def test_every_config_parses_and_names_only_known_sections():
    for path in CONFIGS.rglob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        assert isinstance(config, dict) and config, path
        assert set(config) <= {"seed_everything", "trainer", "model", "data", "ckpt_path"}, path


def test_experiment_uses_the_group_files_unchanged():
    experiment = load("shapes/clip.yaml")
    assert experiment["model"] == load("model/shapes_clip.yaml")["model"]
    assert experiment["data"] == load("data/shapes.yaml")["data"]
    assert {"accelerator", "devices", "precision"} <= set(experiment["trainer"])


def test_segmented_folder_config_builds_paired_batches(tmp_path):
    build_sa1b_folder(tmp_path)
    init_args = {**load("data/segmented_folder.yaml")["data"]["init_args"]}
    init_args.update(root=str(tmp_path), resolution=32, batch_size=2, num_workers=0, val_fraction=0.0)
    module = SegmentedFolderDataModule(**init_args)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    for view in ("source", "target"):
        assert batch[f"{view}_image"].shape[1:] == (3, 32, 32)
        assert batch[f"{view}_masks"].shape[1] == init_args["region_budget"]
        assert batch[f"{view}_region_valid"].any()


def test_eval_configs_use_the_metric_presets_unchanged():
    # Complete eval configs carry the same callbacks as the stackable metric presets.
    for method in ("identity", "oracle"):
        assert load(f"eval/{method}.yaml")["trainer"]["callbacks"] == load("eval/metrics/published.yaml")["trainer"]["callbacks"]
        assert load(f"eval/shapes/{method}.yaml")["trainer"]["callbacks"] == load("eval/metrics/shapes.yaml")["trainer"]["callbacks"]


def test_stacking_the_compat_preset_switches_the_metric_definitions(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["eval.py"])
    with pytest.raises(SystemExit):
        cli_main(["--config", str(CONFIGS / "eval/shapes/identity.yaml"), "--config",
                  str(CONFIGS / "eval/metrics/pie_bench_compat.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    metrics = config["trainer"]["callbacks"][0]["init_args"]
    assert metrics["pie_bench_compat"] is True and metrics["structure_backbone"] == "dino_vitb8"
