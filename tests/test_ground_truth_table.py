"""The ground-truth table of region edits over eval.py runs."""

from __future__ import annotations

import csv
import json

import pytest

from interpedit.evaluation.ground_truth_table import main, run_directory


def write_run(path, method, rows):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"method": method, "num_images": len(rows)}))
    names = sorted({k for row in rows for k in row})
    with open(path / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def test_columns_average_the_right_edit_types_and_skip_undefined_values(tmp_path):
    rows = [
        {"image_id": "a", "edit_type_id": "10", "edit_type": "move", "gt/object_iou": 0.5, "gt/centroid_error": 2.0,
         "gt/object_found": 1.0, "gt/psnr_unedited": 30.0, "gt/psnr_edited": 10.0, "reconstruction/psnr": 26.0},
        {"image_id": "b", "edit_type_id": "10", "edit_type": "move", "gt/object_iou": 0.7, "gt/centroid_error": "",
         "gt/object_found": 0.0, "gt/psnr_unedited": 20.0, "gt/psnr_edited": 12.0, "reconstruction/psnr": 24.0},
        {"image_id": "c", "edit_type_id": "3", "edit_type": "delete object", "gt/object_iou": "",
         "gt/centroid_error": "", "gt/object_found": "", "gt/psnr_unedited": 25.0, "gt/psnr_edited": 23.0,
         "reconstruction/psnr": 25.0},
    ]
    write_run(tmp_path / "rae" / "lightning_logs" / "version_0", "region_autoencoder", rows)
    table = main([str(tmp_path / "rae"), "--out", str(tmp_path / "table.md")])
    line = next(row for row in table.splitlines() if row.startswith("| region_autoencoder"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[:5] == ["region_autoencoder", "3", "25.0000", "0.6000", "2.0000"]
    assert cells[5] == "0.5000" and cells[6] == "n/a" and cells[7] == "n/a"  # found; no resize; no swap
    assert cells[8] == "23.0000" and cells[9] == "25.0000"  # remove-region PSNR; untouched over all
    assert table.splitlines()[-1].startswith("| target")
    assert (tmp_path / "table.md").read_text().strip() == table


def test_a_folder_without_results_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no per_image.csv"):
        run_directory(tmp_path)


MOVE_ROW = {"image_id": "a", "edit_type_id": "10", "edit_type": "move", "gt/object_iou": 0.5,
            "gt/centroid_error": 2.0, "gt/object_found": 1.0, "gt/psnr_unedited": 30.0, "gt/psnr_edited": 10.0,
            "reconstruction/psnr": 26.0}


def test_name_equals_run_labels_the_row(tmp_path):
    write_run(tmp_path / "fresh", "RegionAutoencoderEdit", [MOVE_ROW])
    write_run(tmp_path / "committed", "RegionAutoencoderEdit", [{**MOVE_ROW, "gt/object_iou": 0.9}])
    table = main([f"this demo (3 steps)={tmp_path / 'fresh'}", f"committed={tmp_path / 'committed'}"])
    labels = [row.split("|")[1].strip() for row in table.splitlines()[2:]]
    assert labels == ["this demo (3 steps)", "committed", "target"]


def test_demo_summary_names_every_file_with_headline_figures(tmp_path, capsys):
    from interpedit.evaluation.demo_summary import main as summary_main

    write_run(tmp_path / "eval" / "fresh", "RegionAutoencoderEdit", [MOVE_ROW])
    (tmp_path / "grid.png").write_bytes(b"png")
    (tmp_path / "table.md").write_text("| table |\n")
    text = summary_main(["--table", str(tmp_path / "table.md"),
                         "--entry", "fresh model", str(tmp_path / "eval" / "fresh"), str(tmp_path / "grid.png"),
                         "--skipped", "shapes SD methods: not committed yet"])
    lines = text.splitlines()
    assert f"ground-truth table (every model below, one benchmark): {tmp_path / 'table.md'}" in lines
    assert lines[lines.index("fresh model") + 1] == f"  edit grid: {tmp_path / 'grid.png'}"
    figures = lines[lines.index("fresh model") + 3]
    assert figures.startswith("  1 images: reconstruction 26.0000 dB (target >= 24) | move IoU 0.5000 (target >= 0.6)")
    assert "untouched 30.0000 dB (target >= 24)" in figures
    assert lines[-1] == "not run: shapes SD methods: not committed yet"
    with pytest.raises(FileNotFoundError, match="no such edit grid"):
        summary_main(["--table", str(tmp_path / "table.md"),
                      "--entry", "fresh model", str(tmp_path / "eval" / "fresh"), str(tmp_path / "none.png")])


TEXT_ROWS = [
    {"image_id": "a", "edit_type_id": "6", "edit_type": "recolour", "gt/region_iou": 0.6, "gt/colour_accuracy": 1.0,
     "gt/shape_accuracy": 0.0, "gt/psnr_unedited": 30.0, "structure/distance": 0.01, "cost/unet_forwards": 200},
    {"image_id": "b", "edit_type_id": "6", "edit_type": "recolour", "gt/region_iou": 0.2, "gt/colour_accuracy": 0.0,
     "gt/shape_accuracy": 1.0, "gt/psnr_unedited": 26.0, "structure/distance": 0.03, "cost/unet_forwards": 200},
    {"image_id": "c", "edit_type_id": "1", "edit_type": "reshape", "gt/region_iou": 0.4, "gt/colour_accuracy": 1.0,
     "gt/shape_accuracy": 1.0, "gt/psnr_unedited": 28.0, "structure/distance": 0.02, "cost/unet_forwards": 200},
]


def test_text_columns_read_each_edits_own_attribute(tmp_path):
    write_run(tmp_path / "diffedit", "DiffEdit", TEXT_ROWS)
    table = main([str(tmp_path / "diffedit"), "--columns", "text"])
    header, _, row, target = table.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")][2:] == [
        "edit-region IoU", "attribute acc.", "recolour colour acc.", "reshape shape acc.", "untouched PSNR (dB)",
        "structure distance", "UNet forwards"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # attribute accuracy: colour on the two recolours (1, 0), shape on the reshape (1): 2/3, not the mean of all
    assert cells[:6] == ["DiffEdit", "3", "0.4000", "0.6667", "0.5000", "1.0000"]
    assert cells[6:] == ["28.0000", "0.0200", "200.0000"]
    assert target.startswith("| target") and ">= 0.7" in target
    with pytest.raises(ValueError, match="--columns: 'pixels' is not one of region, text"):
        main([str(tmp_path / "diffedit"), "--columns", "pixels"])


def test_demo_summary_adds_the_text_edit_methods(tmp_path):
    from interpedit.evaluation.demo_summary import main as summary_main

    write_run(tmp_path / "eval" / "fresh", "RegionAutoencoderEdit", [MOVE_ROW])
    write_run(tmp_path / "eval" / "diffedit", "DiffEdit", TEXT_ROWS)
    (tmp_path / "table.md").write_text("| table |\n")
    (tmp_path / "text.md").write_text("| text table |\n")
    text = summary_main(["--table", str(tmp_path / "table.md"), "--entry", "fresh", str(tmp_path / "eval" / "fresh"),
                         "-", "--text-table", str(tmp_path / "text.md"),
                         "--text-entry", "DiffEdit", str(tmp_path / "eval" / "diffedit"), "-"])
    lines = text.splitlines()
    assert f"text-edit table (every method below, one recolour/reshape benchmark): {tmp_path / 'text.md'}" in lines
    figures = lines[lines.index("DiffEdit") + 2]
    assert figures == ("  3 images: edit-region IoU 0.4000 (target >= 0.5) | attribute acc. 0.6667 (target >= 0.7) | "
                       "untouched 28.0000 dB (target >= 28)")
    with pytest.raises(ValueError, match="--text-entry needs --text-table"):
        summary_main(["--table", str(tmp_path / "table.md"),
                      "--text-entry", "DiffEdit", str(tmp_path / "eval" / "diffedit"), "-"])
