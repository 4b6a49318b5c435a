"""Pretrain a self-supervised method on Ray Train, tracked in MLflow.

python pipelines/pretrain.py                            # SimCLR on Fashion-MNIST, local Ray
python pipelines/pretrain.py configs/byol_fmnist.yaml --set train.epochs=20
ray job submit --working-dir . -- python pipelines/pretrain.py configs/smoke.yaml
python pipelines/pretrain.py --resume runs/simclr_fmnist-20261123-101500
python pipelines/pretrain.py configs/moco_fmnist.yaml --print-config   # the resolved config, no run
"""

import argparse
import sys
from pathlib import Path

from pipelines.cli import add_overrides_argument, run_cli


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The pretraining CLI; a sweep CLI extends it with ``parents=[get_args_parser(False)]``."""
    parser = argparse.ArgumentParser(
        "pretrain",
        description=__doc__,
        add_help=add_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config", nargs="?", help="experiment YAML, a path or a shipped config's name (default: default.yaml)"
    )
    add_overrides_argument(parser, "override a config value, e.g. --set train.epochs=10 (repeatable)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (a path or an s3:// URI)"
    )
    parser.add_argument(
        "--stop-after-epochs",
        type=int,
        metavar="N",
        help="train N epochs of the schedule, checkpoint and stop; continue with --resume",
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="1 epoch on 512 images: checks the whole path"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config (base files, --set) and exit"
    )
    return parser


def main(args: argparse.Namespace) -> dict[str, float] | None:
    from pipelines import storage
    from pipelines.config import load_config, load_yaml, to_dict
    from pipelines.run import DEFAULT_CONFIG, SMOKE, pretrain, resolve_run_dir

    if args.resume is not None:
        run_dir = args.resume if storage.is_uri(args.resume) else Path(args.resume).resolve()
        config = load_config(
            values=load_yaml(storage.read_text(storage.join(run_dir, "config.yaml"))),
            overrides=args.overrides,
        )
    else:
        config = load_config(
            args.config or DEFAULT_CONFIG, (SMOKE if args.smoke_test else []) + args.overrides
        )
        run_dir = None
    if args.print_config:
        import yaml

        yaml.safe_dump(to_dict(config), sys.stdout, sort_keys=False)
        return None
    if run_dir is not None:
        return pretrain(config, run_dir, resume=True, stop_after_epochs=args.stop_after_epochs)
    return pretrain(config, resolve_run_dir(config), stop_after_epochs=args.stop_after_epochs)


def cli(argv: list[str] | None = None) -> dict[str, float] | None:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    cli()
