"""Plain progress lines for runs whose output is not a terminal (nohup, CI, cluster logs).

A progress bar redraws one line with carriage returns; written to a file or pipe it shows nothing until the
epoch ends. This callback prints a whole line every ``every_n_steps`` optimiser steps instead: the step, the
losses logged so far, the time per step and the estimated time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from interpedit.user_errors import OptionError


class ProgressLog(Callback):
    """Prints ``step N/M | train/loss ... | s/step | ETA`` lines (rank 0).

    Args:
        every_n_steps: print interval in optimiser steps.
        only_when_not_a_terminal: stay quiet when stdout is a terminal (the progress bar shows it there).
    """

    def __init__(self, every_n_steps: int = 50, only_when_not_a_terminal: bool = True) -> None:
        if every_n_steps < 1:
            raise OptionError(f"ProgressLog.every_n_steps: must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.only_when_not_a_terminal = only_when_not_a_terminal
        self._last_step = 0
        self._last_time = 0.0
        self.lines: list[str] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_step, self._last_time = trainer.global_step, time.monotonic()

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps:
            return
        if self.only_when_not_a_terminal and sys.stdout.isatty():
            return
        now = time.monotonic()
        per_step = (now - self._last_time) / (step - self._last_step)
        self._last_step, self._last_time = step, now
        parts = [f"step {step}/{trainer.max_steps}" if trainer.max_steps > 0 else f"step {step}"]
        for name, value in sorted(trainer.callback_metrics.items()):
            if name.startswith("train/") and name.endswith("loss"):
                parts.append(f"{name} {float(value.item() if isinstance(value, torch.Tensor) else value):.4f}")
        parts.append(f"{per_step:.2f} s/step")
        if trainer.max_steps > 0:
            parts.append(f"ETA {(trainer.max_steps - step) * per_step / 60:.1f} min")
        line = " | ".join(parts)
        self.lines.append(line)
        print(line, flush=True)
