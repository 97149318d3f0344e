"""What the editing benchmarks share: run options, the device, and interleaved timed rounds with UNet cost counts.

Each script names its rows (callables that make one edit) and calls ``interleaved_rounds``: after ``warmup`` untimed
rounds, every row runs once per round in turn (ABC ABC ...), so that drift in the machine's speed hits every row
alike, and ratios are taken between rows of the same run. On CUDA each call is bracketed by
``torch.cuda.synchronize()`` and its peak memory is recorded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_run_arguments(parser: argparse.ArgumentParser, *, iterations: int = 2, warmup: int = 1,
                      big_preset: str | None = None) -> None:
    """``--iterations``, ``--warmup``, ``--device``, ``--threads`` (and ``--force`` for a GPU-sized preset)."""
    parser.add_argument("--iterations", type=int, default=iterations, help=f"timed rounds (default {iterations})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed rounds first (default {warmup})")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (1 is steadier on a shared machine)")
    if big_preset is not None:
        parser.add_argument("--force", action="store_true", help=f"run the {big_preset} preset without a GPU")


def run_device(args: argparse.Namespace) -> torch.device:
    """Quiet diffusers and transformers, set the CPU threads, and pick the device ``--device`` names."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def refuses_big_preset_on_cpu(args: argparse.Namespace, device: torch.device, big: bool, what: str) -> bool:
    """True (after saying why) when a GPU-sized preset would run on the CPU without ``--force``."""
    if big and device.type != "cuda" and not getattr(args, "force", False):
        print(f"{what} needs a GPU; pass --force to run it anyway")
        return True
    return False


def device_note(device: torch.device) -> str:
    """``"device cpu (2 threads)"`` or ``"device cuda"``."""
    return f"device {device.type}" + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else "")


@dataclass
class Rounds:
    """What ``interleaved_rounds`` measured, per row."""

    times: dict[str, list[float]]
    """Seconds of each timed round (divided by ``per``)."""
    costs: dict[str, Any]
    """The last round's ``UNetCost``."""
    outputs: dict[str, Any]
    """The last round's return value."""
    peaks: dict[str, float] = field(default_factory=dict)
    """Peak CUDA memory in GiB (CUDA only)."""
    per: int = 1

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def iqr(self, name: str) -> float:
        values = self.times[name]
        if len(values) < 2:
            return 0.0
        quartiles = statistics.quantiles(values, n=4)
        return quartiles[2] - quartiles[0]

    def forwards(self, name: str) -> float:
        """UNet forwards (batch entries) of one call, divided by ``per``."""
        return self.costs[name].forwards / self.per

    def backwards(self, name: str) -> float:
        """UNet backwards (batch entries) of one call, divided by ``per``."""
        return self.costs[name].backwards / self.per

    def time_ratio(self, first: str, second: str) -> float:
        return self.median(first) / self.median(second)

    def per_round_ratio(self, first: str, second: str) -> float:
        """Median over rounds of the ratio within each round (robust to drift between rounds)."""
        return statistics.median(a / b for a, b in zip(self.times[first], self.times[second]))


def interleaved_rounds(rows: dict[str, Callable[[], Any]], unets: torch.nn.Module | Sequence[torch.nn.Module],
                       device: torch.device, *, warmup: int, iterations: int, per: int = 1) -> Rounds:
    """Run every row once per round, ``warmup`` untimed rounds then ``iterations`` timed ones (module docstring).

    Args:
        rows: name -> a callable making one edit.
        unets: the UNet(s) (or a module holding them) whose calls are counted (``count_unet_calls``).
        device: where the rows run (CUDA calls are synchronised).
        per: divide times and forwards by this (the images of a batched call), for per-image figures.
    """
    from interpedit.diffusion.unet_cost import count_unet_calls

    if iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {iterations}")
    rounds = Rounds({name: [] for name in rows}, {}, {}, per=per)
    for iteration in range(warmup + iterations):
        for name, run in rows.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with count_unet_calls(unets) as cost:
                start = time.perf_counter()
                rounds.outputs[name] = run()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - start
            rounds.costs[name] = cost
            if device.type == "cuda":
                rounds.peaks[name] = torch.cuda.max_memory_allocated() / 2**30
            if iteration >= warmup:
                rounds.times[name].append(elapsed / per)
    return rounds
