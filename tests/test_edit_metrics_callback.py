"""The EditMetrics callback in validation: synced over DDP ranks, float32 metrics under bf16-mixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import Trainer

from callbacks.edit_metrics import EditMetrics
from datamodules.edit_benchmark import EditBenchmarkDataModule
from interpedit.editing import IdentityEdit, OracleEdit
from interpedit.shapes import export_benchmark
from lightning_modules.edit_evaluation import EditEvaluationModule

SHAPES_CLIP = str(Path(__file__).resolve().parents[1] / "pretrained/shapes_clip")


def validate(root: Path, method, **trainer_kwargs) -> dict[str, float]:
    metrics = EditMetrics(structure_backbone=SHAPES_CLIP, clip_model=SHAPES_CLIP, lpips=False, stages=["validation"])
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[metrics], **trainer_kwargs)
    trainer.validate(EditEvaluationModule(method), datamodule=EditBenchmarkDataModule(root=str(root), batch_size=3))
    return {name: float(value) for name, value in trainer.callback_metrics.items()}


def test_validation_logs_the_edit_metrics(tmp_path):
    export_benchmark(tmp_path, 9, seed=2)
    oracle = validate(tmp_path, OracleEdit(), devices=1)
    identity = validate(tmp_path, IdentityEdit(), devices=1)
    assert oracle["val/gt/psnr_edited"] == 100.0 and oracle["val/gt/region_iou"] == 1.0
    assert identity["val/structure/distance"] == pytest.approx(0.0, abs=1e-12)
    assert identity["val/gt/psnr_edited"] < 40.0


@pytest.mark.slow
def test_validation_metrics_under_two_process_bf16_match_one_process(tmp_path):
    export_benchmark(tmp_path, 11, seed=3)
    single = validate(tmp_path, IdentityEdit(), devices=1, precision="bf16-mixed")
    double = validate(tmp_path, IdentityEdit(), devices=2, strategy="ddp_spawn", precision="bf16-mixed")
    assert single.keys() == double.keys() and "val/gt/ssim_edited" in single
    for name in single:
        assert double[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
