"""Writes a Learnable Regions result in the released code's output layout, for tools that read it.

    <out>/<index>_<source caption>/input_image.png
    <out>/<index>_<source caption>/results/<index>_<prompt with dashes>anchor<i>.png   one per anchor
    <out>/<index>_<source caption>/results/final_output.png                          the chosen candidate
    <out>/<index>_<source caption>/boxes/<index>_<prompt with dashes>anchor<i>_ori_draw.png   each box on the input

Unlike the released code, the images keep the input's resolution (it resized everything to 512 px), and a rerun
replaces the folder rather than ranking the previous ``final_output.png`` among the new candidates. Each folder is
written next to its final place and renamed into it, so an interrupted run leaves no half-written result.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from interpedit.metrics.clip_similarity import to_uint8


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-") or "prompt"


def _save(image: Tensor, path: Path) -> None:
    Image.fromarray(to_uint8(image[None])[0].permute(1, 2, 0).cpu().numpy()).save(path)


def write_released_layout(out: str | Path, index: int, source_caption: str, prompt: str, source: Tensor,
                          candidates: Tensor, boxes: Tensor, grid: tuple[int, int], chosen: int) -> Path:
    """Write one image's result (module docstring).

    Args:
        out: the output root.
        index: the image's position in the benchmark.
        source_caption, prompt: its source caption and edit prompt.
        source: (3, H, W) in [0, 1].
        candidates: (P, 3, H, W) one per anchor.
        boxes: (P, 4) their boxes in grid units.
        grid: (rows, cols) of the grid.
        chosen: the index of the chosen candidate.

    Returns:
        The image's folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f"{index}_{_slug(source_caption)}"
    name = f"{index}_{_slug(prompt)}"
    height, width = source.shape[-2:]
    rows, cols = grid
    pixel_boxes = (boxes.float() * torch.tensor([width / cols, height / rows] * 2)).round()
    with tempfile.TemporaryDirectory(dir=out, prefix=".writing-") as scratch:
        staging = Path(scratch) / folder.name
        (staging / "results").mkdir(parents=True)
        (staging / "boxes").mkdir()
        _save(source, staging / "input_image.png")
        for i, candidate in enumerate(candidates):
            _save(candidate, staging / "results" / f"{name}anchor{i}.png")
            drawn = draw_bounding_boxes(to_uint8(source[None])[0].cpu(), pixel_boxes[i : i + 1], colors="yellow",
                                        width=max(1, round(3 * width / 512)))
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(staging / "boxes" / f"{name}anchor{i}_ori_draw.png")
        _save(candidates[chosen], staging / "results" / "final_output.png")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    return folder
