"""Evaluate a pretrained encoder under fixed protocols; results go into its MLflow run as final/*.

    python pipelines/evaluate.py runs/simclr_fmnist-20261123-101500   # a run directory
    python pipelines/evaluate.py 3f2a9c...                             # an MLflow run id
    python pipelines/evaluate.py models:/ssl-encoder/3                  # a registered model version
    python pipelines/evaluate.py runs:/3f2a9c.../encoder                # the model logged in a run
    python pipelines/evaluate.py runs/x/checkpoint_000002 --fractions 0.01 --finetune-epochs 10
    python pipelines/evaluate.py configs/simclr_fmnist.yaml --reference raw-pixels

The protocols (kNN, linear probe, 1% / 10% fine-tuning) are described in
``pipelines/evaluation/downstream.py``.
"""

import argparse
from dataclasses import replace

from pipelines.cli import add_overrides_argument, run_cli

# What the parser shows without importing the evaluation (torch): downstream.REFERENCES and
# FineTuneSettings.epochs; tests/test_cli.py checks they agree.
REFERENCES = ("random-init", "raw-pixels")
FINETUNE_EPOCHS = 30


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "target",
        help="run directory, checkpoint directory, encoder.pt, MLflow run id, MLflow model "
        "(models:/NAME/VERSION, runs:/ID/encoder), or (with --reference) an experiment YAML",
    )
    parser.add_argument(
        "--reference", choices=REFERENCES, help="score a baseline instead of a trained encoder"
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow store of a run id (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    add_overrides_argument(parser, "override the run's config, e.g. --set data.path=/data/fmnist")
    parser.add_argument("--train-size", type=int, help="labelled training rows (default: all)")
    parser.add_argument("--test-size", type=int, default=10_000, help="test rows (default: %(default)s)")
    parser.add_argument("--knn-k", type=int, help="kNN neighbours (default: the run's eval.knn_k)")
    parser.add_argument(
        "--knn-temperature", type=float, help="kNN temperature (default: the run's eval.knn_temperature)"
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="*",
        default=[0.01, 0.1],
        help="label fractions to fine-tune on (default: 0.01 0.1; none: skip fine-tuning)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS, help="(default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=2, help="feature-extraction actors (default: %(default)s)"
    )
    parser.add_argument("--gpu", action="store_true", help="one GPU per extraction actor and per fine-tune")
    parser.add_argument(
        "--smoke-test", action="store_true", help="2000 train / 500 test rows, a short 10%% fine-tune"
    )
    return parser


def main(args: argparse.Namespace) -> dict[str, float]:
    from cl_core.evaluation import FineTuneSettings
    from pipelines.evaluation.downstream import Protocol, evaluate, resolve_source

    source = resolve_source(args.target, args.tracking_uri, args.overrides, args.reference)
    finetune = FineTuneSettings(epochs=args.finetune_epochs)
    protocol = Protocol(
        args.train_size,
        args.test_size,
        args.knn_k,
        args.knn_temperature,
        tuple(args.fractions),
        finetune,
        args.workers,
        args.gpu,
    )
    if args.smoke_test:
        protocol = replace(
            protocol,
            train_size=2000,
            test_size=500,
            fractions=(0.1,),
            finetune=replace(finetune, epochs=1, min_steps=20),
        )
    return evaluate(source, protocol)


def cli(argv: list[str] | None = None) -> dict[str, float]:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    cli()
