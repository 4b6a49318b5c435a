"""Compare pretraining methods from an MLflow experiment: a table, two kNN curves, a report run.

    python pipelines/compare.py                                  # best run per method in ssl-pretrain
    python pipelines/compare.py --all-runs --out reports/all     # every finished run
    python pipelines/compare.py --latest                         # newest run per method (current configs)
    python pipelines/compare.py --tracking-uri sqlite:///runs/mlflow.db --no-mlflow

kNN is ``final/knn_top1`` (``pipelines/evaluate.py``, the final encoder) when the run has it,
else the last epoch's kNN monitor (``eval/knn_top1``), never the best epoch: picking the
maximum over epochs would select on the test split. The table marks the latter with †.
Cost: GPU hours = wall time x workers when ``scaling.use_gpu``, CPU hours = wall time x
workers x ``scaling.cpus_per_worker``, from the run's params.
"""

import argparse
from pathlib import Path
from typing import Any

from pipelines.cli import run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiment", help="MLflow experiment (default: tracking.experiment's default, ssl-pretrain)"
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else the output home's mlflow.db)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: reports/ in the output home)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all-runs", action="store_true", help="every finished run, not the best per method")
    which.add_argument(
        "--latest",
        action="store_true",
        help="the newest finished run per method, not the best (e.g. after changing a config)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report as an MLflow run")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.config import TrackingConfig
    from pipelines.home import output_home
    from pipelines.tracking.compare import write_comparison
    from pipelines.tracking.mlflow_run import default_tracking_uri

    if args.tracking_uri is None or args.out is None:
        uri = args.tracking_uri or default_tracking_uri(output_home())
        out = args.out or output_home() / "reports"
    else:
        uri, out = args.tracking_uri, args.out
    return write_comparison(
        uri,
        args.experiment or TrackingConfig.experiment,
        out,
        log_to_mlflow=not args.no_mlflow,
        all_runs=args.all_runs,
        latest=args.latest,
    )


def cli(argv: list[str] | None = None) -> dict[str, Any]:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    cli()
