"""Ray Tune sweeps of pretraining runs with ASHA early stopping, tracked in MLflow.

    python pipelines/tune.py tune_spaces/simclr_temperature_aug.yaml
    python pipelines/tune.py tune_spaces/moco_queue.yaml --set train.epochs=10 --set data.limit=20000
    python pipelines/tune.py tune_spaces/cross_method.yaml --smoke-test
    python pipelines/tune.py --resume runs/sweep-moco_queue-20261123-101500

One trial = one Ray Train run = one MLflow child run of the sweep (``pipelines/sweep/driver.py``);
the space is validated before Ray starts. The sweep directory may be on ``s3://``.
"""

import argparse
from pathlib import Path
from typing import Any

from pipelines.cli import add_overrides_argument, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("space", nargs="?", help="sweep space YAML in tune_spaces/ (not with --resume)")
    add_overrides_argument(parser, "override a base config value for every trial (repeatable)")
    parser.add_argument(
        "--resume",
        metavar="SWEEP_DIR",
        help="continue an interrupted sweep; finished trials are not re-run",
    )
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="one trial (each grid at its first option), 2 epochs on 512 images: checks the whole path",
    )
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import storage
    from pipelines.sweep.driver import run_sweep

    resume = args.resume
    if resume is not None and not storage.is_uri(resume):  # a local sweep directory
        resume = Path(resume).resolve()
    return run_sweep(args.space, args.overrides, args.smoke_test, resume)


def cli(argv: list[str] | None = None) -> dict[str, Any]:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    cli()
