"""The EditMetrics callback in validation: synced over DDP ranks, float32 metrics under bf16-mixed."""

from __future__ import annotations

from pathlib import Path

import math

import pytest
from lightning.pytorch import Trainer

from callbacks.edit_metrics import EditMetrics
from datamodules.edit_benchmark import EditBenchmarkDataModule
from interpedit.editing import EditingMethod, IdentityEdit, OracleEdit
from interpedit.shapes import export_benchmark
from lightning_modules.edit_evaluation import EditEvaluationModule
from lightning_modules.strategies import ReleasingDDPStrategy

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
    assert oracle["val/gt/object_iou"] == oracle["val/gt/object_found"] == 1.0
    assert oracle["val/gt/centroid_error"] == 0.0
    assert identity["val/structure/distance"] == pytest.approx(0.0, abs=1e-12)
    assert identity["val/gt/psnr_edited"] < 40.0


@pytest.mark.slow
def test_validation_metrics_under_two_process_bf16_match_one_process(tmp_path):
    export_benchmark(tmp_path, 11, seed=3)
    single = validate(tmp_path, IdentityEdit(), devices=1, precision="bf16-mixed")
    double = validate(tmp_path, IdentityEdit(), devices=2, strategy=ReleasingDDPStrategy(start_method="spawn"), precision="bf16-mixed")
    assert single.keys() == double.keys() and "val/gt/ssim_edited" in single
    assert double["val/cost/seconds"] >= 0 and single["val/cost/seconds"] >= 0
    for name in single.keys() - {"val/cost/seconds"}:  # wall time differs between runs; the counts do not
        assert double[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name


class Reconstructing(EditingMethod):
    """Leaves the image alone and returns a re-encoding of the source that is 0.1 too bright on image 0 of a batch
    (MSE 0.01, 20 dB) and exact on the others (the 100 dB cap)."""

    name = "reconstructing"

    def forward(self, batch):
        reconstruction = batch["source_image"].clone()
        reconstruction[0] = (reconstruction[0] + 0.1).clamp(max=1.0)
        return {"edited": batch["source_image"].clone(), "reconstruction": reconstruction}


def validation_results(root: Path, method) -> tuple[dict, list[dict]]:
    metrics = EditMetrics(structure_backbone=None, clip_model=None, lpips=False, stages=["validation"])
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[metrics])  # fmt: skip
    trainer.validate(EditEvaluationModule(method), datamodule=EditBenchmarkDataModule(root=str(root), batch_size=3))
    return metrics.results["validation"]


def test_reconstruction_metrics_only_for_methods_that_return_a_reconstruction(tmp_path):
    export_benchmark(tmp_path, 6, seed=4)
    overall, rows = validation_results(tmp_path, IdentityEdit())
    assert not any(name.startswith("reconstruction/") for name in overall)  # absent, not NaN
    assert not any(name.startswith("reconstruction/") for row in rows for name in row)
    assert "gt/object_iou" in overall

    overall, rows = validation_results(tmp_path, Reconstructing())
    assert len(rows) == 6
    brighter = [row for row in rows if row["reconstruction/psnr"] != 100.0]
    assert len(brighter) == 2  # the first image of each batch of 3
    for row in brighter:  # 20 dB where no pixel saturates, more where the clamp at 1 cut the change
        assert row["reconstruction/psnr"] >= 20.0 - 1e-4 and row["reconstruction/ssim"] < 1.0
    assert all(math.isfinite(row["reconstruction/ssim"]) for row in rows)
    expected = sum(row["reconstruction/psnr"] for row in rows) / 6
    assert overall["reconstruction/psnr"] == pytest.approx(expected, rel=1e-5)
