"""Train any interpedit system with LightningCLI.

    python train.py fit --config configs/shapes/clip.yaml
    python train.py fit --config configs/shapes/clip.yaml --config configs/trainer/ddp_sim.yaml
    python train.py fit --config configs/shapes/clip.yaml --ckpt_path last     # resume
    python train.py fit --config configs/shapes/clip.yaml --print_config       # the full resolved config
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI

from interpedit.user_errors import run_command


class InterpeditCLI(LightningCLI):
    """LightningCLI with the conventions of this repository.

    - Checkpoints go to ``<default_root_dir>/checkpoints`` unless a ModelCheckpoint names its own
      folder, so ``--ckpt_path last`` finds the previous run's ``last.ckpt`` although every run logs to a
      new TensorBoard version folder.
    - The resolved config is saved next to the TensorBoard events of each run.
    """

    def instantiate_trainer(self, **kwargs):  # noqa: D102 - LightningCLI hook
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return trainer


def build_cli(cli_class: type[InterpeditCLI], args: ArgsType, run: bool) -> InterpeditCLI:
    """Any LightningModule and LightningDataModule, chosen by ``class_path`` in the config."""
    return cli_class(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def cli_main(args: ArgsType = None, run: bool = True) -> InterpeditCLI:
    """Entry point; ``args`` lets tests and notebooks drive the CLI without touching ``sys.argv``."""
    return build_cli(InterpeditCLI, args, run)


def command_line(argv: list[str]) -> InterpeditCLI:
    """``python train.py ...``: LightningCLI reads ``sys.argv`` itself, so the arguments ``run_command`` kept go back there."""
    sys.argv[1:] = argv
    return cli_main()


if __name__ == "__main__":
    run_command(command_line)
