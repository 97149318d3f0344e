"""The folder checker: a clean folder passes with the right summary; every bad input is named with its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.check import main
from interpedit.user_errors import EXIT_USER_ERROR, run_command
from tests.segmented_folder_builders import (
    add_sa1b_image,
    build_sa1b_folder,
    coco_rle,
    rectangle_masks,
    sa1b_record,
    write_image,
    write_json,
)

REPO = Path(__file__).resolve().parents[1]


def run_check(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def test_clean_folder_passes_with_summary(tmp_path, capsys):
    folder = build_sa1b_folder(tmp_path)
    code, lines = run_check(capsys, str(tmp_path))
    assert code == 0
    assert lines[0] == f"checked {tmp_path}: 3 images, mask format sa1b"
    assert "usable images: 3" in lines
    assert "regions per image: min 2, mean 3.00, max 4" in lines
    coverage = np.mean([masks.any(axis=0).mean() for masks in folder.values()])
    assert f"mean mask coverage: {100 * coverage:.1f}% of the image (union of its masks)" in lines
    assert "problems: 0" in lines and "notes: 0" in lines


def build_bad_folder(root: Path) -> None:
    masks = rectangle_masks(24, 32, [(2, 2, 12, 12), (14, 4, 30, 20)])
    add_sa1b_image(root, "good.png", masks)
    # Corrupt image (not an image at all), with a valid mask file so that only the image is at fault.
    add_sa1b_image(root, "corrupt.jpg", masks)
    (root / "images" / "corrupt.jpg").write_bytes(b"\x00garbage, not a JPEG")
    # Truncated image: the header survives, the pixel data is cut.
    noise = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    add_sa1b_image(root, "truncated.png", masks, pixels=noise)
    data = (root / "images" / "truncated.png").read_bytes()
    (root / "images" / "truncated.png").write_bytes(data[: len(data) // 2])
    # Masks made for another size.
    add_sa1b_image(root, "mismatch.png", masks)
    write_json(root / "masks" / "mismatch.json", sa1b_record("mismatch.png", rectangle_masks(20, 20, [(0, 0, 5, 5)])))
    # Empty, malformed, missing keys, outside the root.
    for name in ("empty", "badjson", "nokeys", "outside"):
        add_sa1b_image(root, f"{name}.png", masks)
    (root / "masks" / "empty.json").write_text("")
    (root / "masks" / "badjson.json").write_text('{"image": {"file_name": "badjson.png",')
    write_json(root / "masks" / "nokeys.json", {"image": {"file_name": "nokeys.png", "width": 32, "height": 24}})
    write_json(root / "masks" / "outside.json", sa1b_record("../../secret/outside.png", masks))
    # Conversions: notes, not problems.
    gray = rectangle_masks(24, 32, [(0, 0, 10, 10)])
    write_image(root / "images" / "gray.png", (gray[0] * 200).astype(np.uint8))
    write_json(root / "masks" / "gray.json", sa1b_record("gray.png", gray))
    write_image(root / "images" / "rgba.png", np.full((24, 32, 4), 128, dtype=np.uint8))
    write_json(root / "masks" / "rgba.json", sa1b_record("rgba.png", gray))
    Image.fromarray(np.full((24, 32), 40000, dtype=np.uint16)).save(root / "images" / "deep.png")
    write_json(root / "masks" / "deep.json", sa1b_record("deep.png", gray))
    write_image(root / "images" / "rotated.jpg", np.zeros((32, 24, 3), dtype=np.uint8), exif_orientation=8)
    write_json(root / "masks" / "rotated.json", sa1b_record("rotated.jpg", gray))
    write_json(root / "masks" / "zero.json", sa1b_record("zero.png", gray[:0]))
    write_image(root / "images" / "zero.png", np.zeros((24, 32, 3), dtype=np.uint8))


EXPECTED_PROBLEMS = {
    "images/corrupt.jpg": "corrupt image",
    "images/truncated.png": "truncated image",
    "masks/mismatch.json": 'the "image" entry is 20x20 but the image images/mismatch.png is 24x32',
    "masks/empty.json": "empty annotation file",
    "masks/badjson.json": "malformed annotation file: invalid JSON",
    "masks/nokeys.json": 'malformed annotation file: missing key "annotations"',
    "masks/outside.json": 'file_name "../../secret/outside.png" points outside the dataset root',
}

EXPECTED_NOTES = {
    "images/gray.png": "grayscale",
    "images/rgba.png": "transparency",
    "images/deep.png": "16-bit",
    "images/rotated.jpg": "EXIF orientation 8",
    "masks/zero.json": "no regions",
}


def test_every_bad_input_is_reported_by_file_and_reason(tmp_path, capsys):
    build_bad_folder(tmp_path)
    code, lines = run_check(capsys, str(tmp_path), "--mask-format", "sa1b")
    assert code == 1
    problem_lines = [line for line in lines if not line.startswith("note: ") and ": " in line
                     and line.split(": ")[0] in EXPECTED_PROBLEMS]
    for file, reason in EXPECTED_PROBLEMS.items():
        matching = [line for line in problem_lines if line.startswith(f"{file}: ")]
        assert len(matching) == 1, (file, lines)
        assert reason in matching[0], matching[0]
    for file, reason in EXPECTED_NOTES.items():
        assert any(line.startswith(f"note: {file}: ") and reason in line for line in lines), (file, lines)
    assert f"problems: {len(EXPECTED_PROBLEMS)}" in lines
    assert "checked" in lines[0] and "13 images" in lines[0]
    # Notes alone do not fail a folder: without the bad files it passes.
    assert "usable images: 6" in lines  # good, gray, rgba, deep, rotated, zero


def test_notes_alone_pass(tmp_path, capsys):
    add_sa1b_image(tmp_path, "good.png", rectangle_masks(8, 8, [(0, 0, 4, 4)]))
    write_image(tmp_path / "images" / "gray.png", np.zeros((8, 8), dtype=np.uint8))
    write_json(tmp_path / "masks" / "gray.json", sa1b_record("gray.png", rectangle_masks(8, 8, [(1, 1, 3, 3)])))
    code, lines = run_check(capsys, str(tmp_path))
    assert code == 0 and "problems: 0" in lines and "notes: 1" in lines


def test_missing_folder_and_undetectable_format_are_user_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(main, [str(tmp_path / "nowhere")])
    assert stopped.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err.splitlines() == [f"error: {tmp_path / 'nowhere'}: dataset folder does not exist"]
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit):
        run_command(main, [str(tmp_path)])
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}: cannot tell the mask format")


def test_coco_problems_name_the_annotation_file(tmp_path, capsys):
    masks = rectangle_masks(16, 16, [(0, 0, 8, 8)])
    write_image(tmp_path / "images" / "a.png", np.zeros((16, 16, 3), dtype=np.uint8))
    write_json(tmp_path / "annotations.json", {
        "images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16},
                   {"id": 2, "file_name": "/abs/b.png", "height": 16, "width": 16}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": coco_rle(masks[0])}],
    })
    code, lines = run_check(capsys, str(tmp_path))
    assert code == 1
    expected = 'annotations.json: images[1] (id 2): file_name "/abs/b.png" points outside the dataset root'
    assert expected in lines
    assert "regions per image: min 1, mean 1.00, max 1" in lines


def test_command_line_entry_point(tmp_path):
    build_bad_folder(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "datamodules.check", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"checked {tmp_path}: 13 images")
    assert "masks/empty.json: empty annotation file" in result.stdout.splitlines()
