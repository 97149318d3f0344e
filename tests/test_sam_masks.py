"""SAM automatic masks: filters and sizes match SAM's definitions, the JSON cache is atomic, resumable, sharded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision.ops import box_iou
from transformers import SamModel, SamProcessor

from datamodules import sam_masks
from interpedit.backbones import PretrainedWeightsNotFoundError, load_transformers_model
from interpedit.segmentation import (
    GeneratedMask,
    SamAutomaticMaskGenerator,
    mask_cache,
    mask_json_path,
    point_grid,
    read_mask_json,
    stability_scores,
    write_mask_json,
)
from tests.tiny_components import tiny_sam_dir  # noqa: F401  (pytest fixture)


# Thresholds off (a random tiny SAM predicts low IoUs) and no NMS, so that every non-empty mask comes back.
ALL_MASKS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
# Image sizes (height, width) of the test folder, non-square on purpose; "rotated.jpg" is stored 40x24 with
# EXIF orientation 6, so it is displayed (and must be masked) as 24x40.
FOLDER_SIZES = {
    "a.png": (30, 50),
    "b.jpg": (48, 20),
    "sub/c.png": (33, 33),
    "sub/deeper/d.PNG": (16, 70),
    "rotated.jpg": (24, 40),
}


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] += np.array([180, 20, 20], dtype=np.uint8)  # two halves of different colour
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def sam(tiny_sam_dir: Path) -> tuple[SamModel, SamProcessor]:
    return load_transformers_model(SamModel, tiny_sam_dir), load_transformers_model(SamProcessor, tiny_sam_dir)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for seed, (name, (height, width)) in enumerate(FOLDER_SIZES.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "rotated.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees clockwise to display
            _image(width, height, seed).save(path, exif=exif)
        else:
            _image(height, width, seed).save(path, format="PNG" if name.lower().endswith("png") else "JPEG")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"")
    return root


class CountingGenerator:
    """Wraps a generator and records which images it was asked for (by size)."""

    def __init__(self, inner: SamAutomaticMaskGenerator, fail_after: int | None = None) -> None:
        self.inner, self.fail_after, self.calls = inner, fail_after, 0

    def generate_batch(self, images):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += len(images)
        return self.inner.generate_batch(images)


def _cli_args(images: Path, out: Path, model: Path) -> list[str]:
    return [
        "--images", str(images), "--out", str(out), "--model", str(model), "--points-per-side", "3",
        "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--box-nms-thresh", "1.0", "--log-every", "2",
    ]


# ---- generator --------------------------------------------------------------------------------------------------


def test_point_grid_is_sams_cell_centres() -> None:
    expected = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]], dtype=torch.float64)
    assert torch.equal(point_grid(2), expected)
    assert point_grid(32).shape == (1024, 2) and point_grid(32).min() == 1 / 64


def test_stability_score_by_hand() -> None:
    logits = torch.tensor([[[2.0, 0.5, -0.5, -2.0]], [[-3.0, -3.0, -3.0, -3.0]]])
    # Mask 0: 1 pixel above +1, 3 pixels above -1 -> 1/3. Mask 1: nothing above -1 -> 0 (not NaN).
    assert torch.allclose(stability_scores(logits, 0.0, 1.0), torch.tensor([1 / 3, 0.0]))
    assert torch.allclose(stability_scores(logits, 0.0, 0.0), torch.tensor([1.0, 0.0]))


def test_masks_match_sam_prompted_by_hand_at_original_size(sam) -> None:
    model, processor = sam
    image = _image(30, 50, seed=1)
    generated = SamAutomaticMaskGenerator(model, processor, points_per_side=2, **ALL_MASKS).generate(image)
    assert generated and all(mask.to_mask().shape == (30, 50) for mask in generated)
    assert all(mask.crop_box == (0, 0, 50, 30) for mask in generated)
    for x, y in (point_grid(2) * torch.tensor([50.0, 30.0], dtype=torch.float64)).tolist():
        inputs = processor(images=image, input_points=[[[[x, y]]]], return_tensors="pt")
        with torch.no_grad():
            outputs = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"].float())
        reference = processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0][0]  # (3, 30, 50) bool
        expected = {
            coco_mask.encode(np.asfortranarray(m.numpy().astype(np.uint8)))["counts"].decode()
            for m in reference
            if m.any()
        }
        assert expected
        ours = {mask.rle["counts"] for mask in generated if mask.point_coords == pytest.approx((x, y))}
        assert ours == expected


def test_filters_keep_exactly_the_masks_that_pass(sam) -> None:
    model, processor = sam
    image = _image(40, 28, seed=2)
    # Shift the IoU head so that predicted IoUs straddle 0.5 and the threshold has something to decide.
    with torch.no_grad():
        model.mask_decoder.iou_prediction_head.proj_out.bias += 5.0
    try:
        everything = SamAutomaticMaskGenerator(model, processor, points_per_side=4, **ALL_MASKS).generate(image)
        ious = sorted(mask.predicted_iou for mask in everything)
        iou_thresh, stability_thresh = ious[len(ious) // 2], 0.5
        areas = sorted(mask.area for mask in everything)
        min_area = areas[len(areas) // 2]
        cases = [
            (dict(pred_iou_thresh=iou_thresh), lambda m: m.predicted_iou > iou_thresh),
            (dict(stability_score_thresh=stability_thresh, stability_score_offset=0.5), None),
            (dict(min_mask_area=min_area), lambda m: m.area >= min_area),
        ]
        for overrides, keep in cases:
            settings = {**ALL_MASKS, **overrides}
            filtered = SamAutomaticMaskGenerator(model, processor, points_per_side=4, **settings).generate(image)
            if keep is None:  # the stability score depends on the offset: recompute the reference with it
                reference = SamAutomaticMaskGenerator(
                    model, processor, points_per_side=4, stability_score_offset=0.5, **ALL_MASKS
                ).generate(image)
                expected = [m for m in reference if m.stability_score >= stability_thresh]
            else:
                expected = [m for m in everything if keep(m)]
            assert 0 < len(filtered) < len(everything), overrides
            assert [m.rle["counts"] for m in filtered] == [m.rle["counts"] for m in expected], overrides
    finally:
        with torch.no_grad():
            model.mask_decoder.iou_prediction_head.proj_out.bias -= 5.0


def test_box_nms_removes_only_overlapping_duplicates(sam) -> None:
    model, processor = sam
    image = _image(36, 44, seed=3)
    everything = SamAutomaticMaskGenerator(model, processor, points_per_side=4, **ALL_MASKS).generate(image)
    settings = {**ALL_MASKS, "box_nms_thresh": 0.5}
    kept = SamAutomaticMaskGenerator(model, processor, points_per_side=4, **settings).generate(image)

    def xyxy(masks: list[GeneratedMask]) -> torch.Tensor:
        return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (m.bbox for m in masks)])

    assert 0 < len(kept) < len(everything)
    overlaps = box_iou(xyxy(kept), xyxy(kept)).fill_diagonal_(0)
    assert overlaps.max() <= 0.5
    kept_counts = {m.rle["counts"] for m in kept}
    dropped = [m for m in everything if m.rle["counts"] not in kept_counts]
    # Every dropped mask overlaps a kept one whose predicted IoU is at least as high.
    for mask, row in zip(dropped, box_iou(xyxy(dropped), xyxy(kept))):
        assert any(iou > 0.5 and other.predicted_iou >= mask.predicted_iou for iou, other in zip(row, kept))
    assert [m.predicted_iou for m in kept] == sorted((m.predicted_iou for m in kept), reverse=True)


def test_generator_rejects_a_processor_for_another_model_size(sam) -> None:
    from interpedit.backbones import tiny_sam_processor

    with pytest.raises(ValueError, match="resizes to 32 .* model takes 64x64"):
        SamAutomaticMaskGenerator(sam[0], tiny_sam_processor(image_size=32))


# ---- JSON cache and CLI ----------------------------------------------------------------------------------------


def test_cli_writes_sa1b_json_that_round_trips_through_pycocotools(
    images_dir: Path, tmp_path: Path, tiny_sam_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from interpedit.data.annotations import read_sa1b_json

    out = tmp_path / "masks"
    summary = sam_masks.main(_cli_args(images_dir, out, tiny_sam_dir))
    assert summary.processed == len(FOLDER_SIZES) and summary.masks > 0
    printed = capsys.readouterr().out
    assert "images/s, ETA" in printed and "done: 5 images processed, 0 skipped" in printed
    names = sorted(FOLDER_SIZES)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == sorted(
        str(Path(name).with_suffix(".json")) for name in names
    )
    for image_id, name in enumerate(names):
        height, width = FOLDER_SIZES[name]
        record = json.loads(mask_json_path(out, name).read_text())
        assert record["image"] == {"image_id": image_id, "file_name": name, "width": width, "height": height}
        assert record["annotations"], name
        for index, annotation in enumerate(record["annotations"]):
            rle = {"size": annotation["segmentation"]["size"], "counts": annotation["segmentation"]["counts"].encode()}
            decoded = coco_mask.decode(rle)
            assert decoded.shape == (height, width)
            assert annotation["id"] == index
            assert annotation["area"] == int(decoded.sum()) == int(coco_mask.area(rle))
            assert annotation["bbox"] == coco_mask.toBbox(rle).tolist()
            assert annotation["crop_box"] == [0, 0, width, height]
            (x, y), = annotation["point_coords"]
            assert 0 <= x < width and 0 <= y < height
            assert isinstance(annotation["predicted_iou"], float) and 0 <= annotation["stability_score"] <= 1
        # The project's SA-1B reader accepts the file and agrees on the size.
        parsed = read_sa1b_json(mask_json_path(out, name))
        assert parsed.file_name == name and parsed.size == (height, width)
        assert read_mask_json(mask_json_path(out, name)) == record


def test_resume_skips_images_whose_json_exists(images_dir: Path, tmp_path: Path, sam) -> None:
    out = tmp_path / "masks"
    counting = CountingGenerator(SamAutomaticMaskGenerator(*sam, points_per_side=2, **ALL_MASKS))
    first = sam_masks.run_folder(images_dir, out, counting, log=lambda line: None)
    assert counting.calls == first.processed == len(FOLDER_SIZES)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    mask_json_path(out, "sub/c.png").unlink()

    counting.calls = 0
    second = sam_masks.run_folder(images_dir, out, counting, images_per_batch=2, log=lambda line: None)
    assert counting.calls == second.processed == 1 and second.skipped == len(FOLDER_SIZES) - 1
    for path, mtime in mtimes.items():
        if path != mask_json_path(out, "sub/c.png"):
            assert path.stat().st_mtime_ns == mtime, path
    assert mask_json_path(out, "sub/c.png").is_file()


def test_crash_mid_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "img.json"
    complete = {"image": {"image_id": 0, "file_name": "sub/img.png", "width": 2, "height": 1}, "annotations": []}
    write_mask_json(target, complete)
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's owner-only mode

    def dump_half_then_die(obj, handle, **kwargs):
        handle.write('{"image": {"image_id": 0, "file_na')
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(mask_cache.json, "dump", dump_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_mask_json(target, {**complete, "annotations": [{"id": 0}]})
    with pytest.raises(KeyboardInterrupt):
        write_mask_json(tmp_path / "new.json", complete)
    # The earlier complete file is intact, the new one was never created, and no temporary file remains.
    assert json.loads(target.read_text()) == complete
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["sub", "sub/img.json"]


def test_crashed_run_resumes_where_it_stopped(images_dir: Path, tmp_path: Path, sam) -> None:
    out = tmp_path / "masks"
    crashing = CountingGenerator(SamAutomaticMaskGenerator(*sam, points_per_side=2, **ALL_MASKS), fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sam_masks.run_folder(images_dir, out, crashing, log=lambda line: None)
    written = sorted(out.rglob("*.json"))
    assert len(written) == 2 and all(read_mask_json(p)["annotations"] for p in written)
    resumed = CountingGenerator(crashing.inner)
    summary = sam_masks.run_folder(images_dir, out, resumed, log=lambda line: None)
    assert resumed.calls == summary.processed == len(FOLDER_SIZES) - 2
    assert len(list(out.rglob("*.json"))) == len(FOLDER_SIZES)


def test_two_ranks_partition_the_folder(
    images_dir: Path,
    tmp_path: Path,
    tiny_sam_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    names = sam_masks.list_images(images_dir)
    assert names == sorted(FOLDER_SIZES)  # hidden files and non-images are left out
    shards = [set(sam_masks.shard(names, rank, 2)) for rank in range(2)]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(names)

    outs = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert sam_masks.rank_and_world_size() == (rank, 2)
        out = tmp_path / f"rank{rank}"
        summary = sam_masks.main(_cli_args(images_dir, out, tiny_sam_dir))
        assert summary.assigned == summary.processed == len(shards[rank])
        assert f"[rank {rank}/2]" in capsys.readouterr().out
        outs.append({read_mask_json(p)["image"]["file_name"] for p in out.rglob("*.json")})
    assert outs == shards


def test_bad_inputs_fail_early_with_clear_messages(
    tmp_path: Path, images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"RANK=2 must be in \[0, WORLD_SIZE=2\)"):
        sam_masks.rank_and_world_size()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(PretrainedWeightsNotFoundError, match="SamModel.*no such file or directory"):
        sam_masks.main(_cli_args(images_dir, tmp_path / "out", tmp_path / "no-sam-here"))
    with pytest.raises(FileNotFoundError, match="--images: no such directory"):
        sam_masks.list_images(tmp_path / "missing")
    _image(4, 4, 0).save(images_dir / "a.jpg")  # next to a.png: both would write a.json
    with pytest.raises(ValueError, match="'a.jpg' and 'a.png' would both write a.json"):
        sam_masks.list_images(images_dir)
    with pytest.raises(ValueError, match="must be relative"):
        mask_json_path(tmp_path, "../escape.png")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_completes(tmp_path: Path, tiny_sam_dir: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    images = tmp_path / "many"
    images.mkdir()
    for index in range(60):
        _image(48, 64, index).save(images / f"{index:03d}.png")
    out = tmp_path / "masks"
    command = [sys.executable, "-m", "datamodules.sam_masks", *_cli_args(images, out, tiny_sam_dir)]
    command[command.index("--points-per-side") + 1] = "8"
    repo = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.json"))) < 3 and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = list(out.glob("*.json"))
    assert 0 < len(done) < 60
    for path in done:  # every JSON that exists is complete
        read_mask_json(path)
    finished = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{60 - len(done)} images processed, {len(done)} skipped" in finished.stdout
    assert len(list(out.glob("*.json"))) == 60
