"""Evaluate with LightningCLI: an editing method over an edit benchmark, or a trained system on its test split.

    python eval.py --config configs/eval/shapes/identity.yaml --data.root BENCH --trainer.default_root_dir OUT
    python eval.py --config configs/shapes/clip.yaml --ckpt_path runs/shapes_clip/checkpoints/last.ckpt
    python eval.py compare OUT/identity/lightning_logs/version_0 OUT/oracle/lightning_logs/version_0 [--out table.md]

Same configs and flags as train.py, without a subcommand: it runs the system's ``test_step`` over the data
module's test split. Edit evaluations write ``per_image.csv``, ``metrics.json``, ``metrics.md`` and the edited
images into their run directory (``<default_root_dir>/lightning_logs/version_N``) and log to TensorBoard.
``compare`` puts the metrics.json of several runs into one table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import ArgsType, LightningArgumentParser

from interpedit.evaluation import compare_runs
from interpedit.user_errors import run_command
from train import InterpeditCLI, build_cli


class EvalCLI(InterpeditCLI):
    """The training CLI without subcommands, plus ``--ckpt_path`` for the weights to evaluate."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="Checkpoint to evaluate.")


def compare_main(argv: Sequence[str]) -> str:
    """``eval.py compare RUN_DIR... [--out FILE]``: print (and write) one table over several runs."""
    parser = argparse.ArgumentParser(prog="python eval.py compare", description="Compare evaluation runs.")
    parser.add_argument("run_dirs", nargs="+", help="run directories holding metrics.json")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    table = compare_runs(args.run_dirs)
    if args.out:
        Path(args.out).write_text(table + "\n")
    print(table)
    return table


def cli_main(args: ArgsType = None) -> EvalCLI | str:
    """Entry point; ``args`` lets tests and notebooks drive the CLI without touching ``sys.argv``."""
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    if argv and argv[0] == "compare":
        return compare_main(argv[1:])
    cli = build_cli(EvalCLI, args, run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    return cli


def command_line(argv: list[str]) -> EvalCLI | str:
    """``python eval.py ...``: LightningCLI reads ``sys.argv`` itself, so the arguments ``run_command`` kept go back there."""
    sys.argv[1:] = argv
    return cli_main()


if __name__ == "__main__":
    run_command(command_line)
