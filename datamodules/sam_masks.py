"""Generate SAM masks for a folder of unlabeled images, as SA-1B per-image JSONs (resumable, sharded).

Usage::

    python -m datamodules.sam_masks --images DIR --out DIR --model facebook/sam-vit-base \\
        [--points-per-side 32 --points-per-batch 64 --batch 1 --device cuda --dtype float16]
    torchrun --nproc-per-node 8 -m datamodules.sam_masks --images DIR --out DIR --device cuda

``--model`` is a hub id (``facebook/sam-vit-base``, ``facebook/sam-vit-large``, ``facebook/sam-vit-huge``) or a
local folder holding ``SamModel`` + ``SamProcessor`` files. Every image under ``--images`` (recursively) gets
``<out>/<relative path without extension>.json``; images whose JSON exists are skipped, so rerunning after an
interruption finishes the job. With ``torch.distributed`` initialised or ``RANK``/``WORLD_SIZE`` set (torchrun),
rank ``r`` takes ``sorted(images)[r::world_size]``; ranks need no communication. Each rank prints a progress line
every ``--log-every`` images and a summary at the end.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import torch

from interpedit.data.image_io import load_image
from interpedit.segmentation.mask_cache import is_done, mask_json_path, sa1b_record, write_mask_json
from interpedit.segmentation.sam_mask_generator import GeneratedMask, SamAutomaticMaskGenerator
from interpedit.user_errors import MissingFileError, run_command


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class MaskGenerator(Protocol):
    """What ``run_folder`` needs: masks for a batch of (3, H, W) uint8 images."""

    def generate_batch(self, images: Sequence[torch.Tensor]) -> list[list[GeneratedMask]]: ...


@dataclass
class FolderRunSummary:
    """What one rank did."""

    rank: int
    world_size: int
    assigned: int
    skipped: int
    processed: int
    masks: int
    seconds: float

    def line(self) -> str:
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        return (
            f"[rank {self.rank}/{self.world_size}] done: {self.processed} images processed, {self.skipped} skipped "
            f"(already done), {self.assigned} assigned to this rank; {self.masks} masks in {self.seconds:.1f} s "
            f"({rate:.2f} images/s)"
        )


def images_root(images_dir: str | Path) -> Path:
    """``images_dir`` as a path; ``MissingFileError`` naming ``--images`` when it is not a folder."""
    root = Path(images_dir)
    if not root.is_dir():
        raise MissingFileError(f"--images: no such directory: {root}")
    return root


def list_images(images_dir: str | Path) -> list[str]:
    """Image files under ``images_dir`` (recursive, hidden entries ignored), as sorted ``/``-separated paths.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: two images would write the same JSON (``a.jpg`` and ``a.png`` in one folder).
    """
    root = images_root(images_dir)
    found = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    by_target: dict[str, str] = {}
    for name in found:
        target = str(Path(name).with_suffix(""))
        if target in by_target:
            raise ValueError(
                f"{root}: '{by_target[target]}' and '{name}' would both write {target}.json; rename one of them"
            )
        by_target[target] = name
    return found


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the world size: from ``torch.distributed`` if initialised, else RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        rank = int(os.environ.get("RANK", "0"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as error:
        raise ValueError(
            f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be integers"
        ) from error
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world_size})")
    return rank, world_size


def shard(items: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The items rank ``rank`` of ``world_size`` processes: every ``world_size``-th, starting at ``rank``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
    return list(items[rank::world_size])


def run_folder(
    images_dir: str | Path,
    out_dir: str | Path,
    generator: MaskGenerator,
    *,
    rank: int = 0,
    world_size: int = 1,
    images_per_batch: int = 1,
    log_every: int = 10,
    log: Callable[[str], None] = print,
) -> FolderRunSummary:
    """Write the mask JSON of every image of this rank's shard that has none yet.

    Args:
        images_dir: folder of images (searched recursively).
        out_dir: folder for the JSONs (same sub-folders as the images).
        generator: produces the masks (``SamAutomaticMaskGenerator``).
        rank: this process's rank.
        world_size: number of processes sharing the folder.
        images_per_batch: images encoded together.
        log_every: print a progress line every this many processed images.
        log: where progress lines go.
    """
    if images_per_batch < 1:
        raise ValueError(f"images_per_batch must be at least 1, got {images_per_batch}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    all_images = list_images(images_dir)
    # image_id is the position in the full sorted listing, so it does not depend on the rank or on resuming.
    image_ids = {name: index for index, name in enumerate(all_images)}
    assigned = shard(all_images, rank, world_size)
    todo = [name for name in assigned if not is_done(out_dir, name)]
    prefix = f"[rank {rank}/{world_size}]"
    log(f"{prefix} {len(assigned)} of {len(all_images)} images assigned, {len(assigned) - len(todo)} already done")

    start = time.perf_counter()
    processed = masks_written = 0
    next_log = log_every
    for batch_start in range(0, len(todo), images_per_batch):
        names = todo[batch_start : batch_start + images_per_batch]
        images = [load_image(images_dir / name) for name in names]
        for name, image, masks in zip(names, images, generator.generate_batch(images), strict=True):
            height, width = image.shape[-2:]
            record = sa1b_record(image_ids[name], name, int(height), int(width), masks)
            write_mask_json(mask_json_path(out_dir, name), record)
            masks_written += len(masks)
        processed += len(names)
        if processed >= next_log or processed == len(todo):
            elapsed = time.perf_counter() - start
            rate = processed / elapsed if elapsed > 0 else float("inf")
            eta = timedelta(seconds=round((len(todo) - processed) / rate)) if rate > 0 else "?"
            log(f"{prefix} {processed}/{len(todo)} images, {rate:.2f} images/s, ETA {eta}, {masks_written} masks")
            next_log = processed + log_every
    summary = FolderRunSummary(
        rank=rank,
        world_size=world_size,
        assigned=len(assigned),
        skipped=len(assigned) - len(todo),
        processed=processed,
        masks=masks_written,
        seconds=time.perf_counter() - start,
    )
    log(summary.line() + f"; JSONs in {out_dir}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.sam_masks",
        description="SAM automatic masks for a folder of images, as SA-1B per-image JSONs (resumable, sharded).",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the JSONs (mirrors the image folders)")
    parser.add_argument("--model", default="facebook/sam-vit-base", help="SAM hub id or local folder")
    parser.add_argument("--points-per-side", type=int, default=32, help="prompt grid points per side")
    parser.add_argument("--points-per-batch", type=int, default=64, help="prompts decoded together")
    parser.add_argument("--batch", type=int, default=1, help="images encoded together")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="min predicted IoU (<= 0: off)")
    parser.add_argument("--stability-score-thresh", type=float, default=0.95, help="min stability score (<= 0: off)")
    parser.add_argument("--stability-score-offset", type=float, default=1.0, help="logit offset of the stability")
    parser.add_argument("--box-nms-thresh", type=float, default=0.7, help="box IoU above which duplicates are dropped")
    parser.add_argument("--min-mask-area", type=int, default=0, help="drop masks with fewer pixels")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device; 'cuda' under torchrun means cuda:LOCAL_RANK",
    )
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="model weights dtype")
    parser.add_argument("--log-every", type=int, default=10, help="progress line every this many images")
    return parser


def main(argv: Sequence[str] | None = None) -> FolderRunSummary:
    """Parse the command line, load SAM, and process this rank's share of the folder."""
    from transformers import SamModel, SamProcessor

    from interpedit.backbones import load_transformers_model

    args = build_parser().parse_args(argv)
    images_root(args.images)  # a missing folder fails here, before SAM is loaded
    rank, world_size = rank_and_world_size()
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    model = load_transformers_model(SamModel, args.model, torch_dtype=_DTYPES[args.dtype]).to(device).eval()
    processor = load_transformers_model(SamProcessor, args.model)
    generator = SamAutomaticMaskGenerator(
        model,
        processor,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        stability_score_offset=args.stability_score_offset,
        box_nms_thresh=args.box_nms_thresh,
        min_mask_area=args.min_mask_area,
    )
    return run_folder(
        args.images,
        args.out,
        generator,
        rank=rank,
        world_size=world_size,
        images_per_batch=args.batch,
        log_every=args.log_every,
        log=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    run_command(main)
