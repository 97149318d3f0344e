"""Evaluate a trained interpedit system on a test split with LightningCLI.

    python eval.py --config configs/shapes/clip.yaml --ckpt_path runs/shapes_clip/checkpoints/last.ckpt

Same configs and flags as train.py, without a subcommand: it runs the system's ``test_step`` over the
data module's test split and logs to TensorBoard under ``--trainer.default_root_dir``.
"""

from __future__ import annotations

from lightning.pytorch.cli import ArgsType, LightningArgumentParser

from train import InterpeditCLI, build_cli


class EvalCLI(InterpeditCLI):
    """The training CLI without subcommands, plus ``--ckpt_path`` for the weights to evaluate."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="Checkpoint to evaluate.")


def cli_main(args: ArgsType = None) -> EvalCLI:
    """Entry point; ``args`` lets tests drive the CLI without touching ``sys.argv``."""
    cli = build_cli(EvalCLI, args, run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    return cli


if __name__ == "__main__":
    cli_main()
