"""Every image method pretrained on Fashion-MNIST under one budget, scored with the same protocols.

    .venv/bin/python bench/methods.py --update-readme          # ~85 min on 2 cores (defaults below)
    .venv/bin/python bench/methods.py --methods simclr byol --epochs 1 --limit 2000 --fractions
    .venv/bin/python bench/methods.py --budget long            # bench/methods_long.py: 20 epochs

Each method runs its ``configs/<method>_fmnist.yaml`` through the real pipeline
(``pipelines.run.pretrain`` on Ray Train, tracked in MLflow) with the budget overridden to
``--epochs`` epochs over the first ``--limit`` training images, then
``pipelines.evaluation.downstream.evaluate``
scores its final encoder on all 60k train / 10k test images (kNN, linear probe, fine-tuning on
1% and 10% of the labels) and logs ``final/*`` into its run. The reference rows use the same
protocols: raw pixels (kNN and linear only) and the tiny CNN at random init. The table is built
by ``pipelines.compare`` from the newest run of each method in the MLflow experiment (so
``--methods dino`` after a config change replaces one row) and written to ``--out``/methods.md
(and to the README between the ``bench:methods`` markers with ``--update-readme``).
"""

import argparse
import time
from pathlib import Path

import methods_long  # bench/methods_long.py, beside this script

from cl_core.evaluation import FineTuneSettings
from pipelines import run
from pipelines.config import load_config
from pipelines.evaluation import downstream
from pipelines.tracking import compare

ROOT = Path(__file__).resolve().parents[1]

IMAGE_METHODS = ("simclr", "moco", "supcon", "byol", "simsiam", "swav", "dino", "vicreg", "barlow_twins")
#: The long budget runs these too (the quick budget's default list is unchanged).
#: ``simclr_grid``, ``swav_grid``: SimCLR and SwAV on the grid-pooled tiny CNN; ``swav_grid_mc``:
#: ``swav_grid`` with six local crops; ``swav_wgrid``: ``swav_grid`` on ``tiny_cnn_grid4_w48``
#: (``configs/<method>_fmnist_long.yaml``).
LONG_METHODS = (
    *IMAGE_METHODS,
    *("moco_v3", "nnclr", "instdisc", "triplet"),
    *("simclr_grid", "swav_grid", "swav_grid_mc", "swav_wgrid"),
)


def pretrain_and_evaluate(
    method: str, args: argparse.Namespace, uri: str, protocol: downstream.Protocol
) -> None:
    overrides = [
        f"train.epochs={args.epochs}",
        f"data.limit={args.limit}",
        "eval.train_size=5000",
        "eval.test_size=2000",
        f"tracking.tracking_uri={uri}",
        f"tracking.experiment={args.experiment}",
    ]
    config = load_config(ROOT / "configs" / f"{method}_fmnist.yaml", overrides)
    run_dir = args.out / "runs" / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    run.pretrain(config, run_dir)
    downstream.evaluate(downstream.resolve_source(str(run_dir), None, [], None), protocol)


def reference_rows(protocol: downstream.Protocol) -> list[str]:
    """Markdown rows for raw pixels and the random-init tiny CNN under the same protocols."""
    rows = []
    for reference in downstream.REFERENCES:
        source = downstream.resolve_source(str(ROOT / "configs" / "simclr_fmnist.yaml"), None, [], reference)
        r = downstream.evaluate(source, protocol)
        cells = [r.get(k) for k in ("final/knn_top1", "final/linear_top1")] + [
            r.get(downstream.metric_name(f)) for f in (0.01, 0.1)
        ]
        rows.append(
            f"| *{reference}* | – | "
            + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in cells)
            + " | – | – | – | – |"
        )
    return rows


def main(args: argparse.Namespace) -> str:
    args.out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(args.out / 'mlflow.db').resolve()}"
    finetune = FineTuneSettings(epochs=args.finetune_epochs)
    protocol = downstream.Protocol(
        train_size=None, test_size=10_000, fractions=tuple(args.fractions), finetune=finetune
    )
    started = time.monotonic()
    for method in args.methods:
        print(
            f"\n=== {method}: {args.epochs} epochs x {args.limit} images "
            f"({time.monotonic() - started:.0f} s) ===",
            flush=True,
        )
        pretrain_and_evaluate(method, args, uri, protocol)
    references = reference_rows(protocol)
    report = compare.write_comparison(
        uri, args.experiment, args.out / "report", log_to_mlflow=True, latest=True
    )
    table, _, note = compare.markdown_table(report["rows"]).partition(
        "\n\n"
    )  # note: only for runs without final/*
    epochs = f"{args.epochs} epoch" + ("s" if args.epochs != 1 else "")
    budget = (
        f"Budget: {epochs} over the first {args.limit} Fashion-MNIST training images per method "
        f"(its `configs/<method>_fmnist.yaml` otherwise), 1 Train worker, {time.strftime('%Y-%m-%d')}; "
        f"scored on all 60k train / 10k test images; fine-tuning {finetune.epochs} epochs "
        f"(>= {finetune.min_steps} steps). `supcon` uses the labels. "
        f"This invocation: {' '.join(args.methods)} "
        f"and the reference rows, {time.monotonic() - started:.0f} s."
    )
    text = (
        "\n".join([table.rstrip("\n"), *references])
        + "\n\n"
        + (note.rstrip("\n") + "\n\n" if note else "")
        + budget
        + "\n"
    )
    (args.out / "methods.md").write_text(text)
    print("\n" + text, flush=True)
    if args.update_readme:
        methods_long.update_readme("methods", text)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--budget",
        choices=("quick", "long"),
        default="quick",
        help="quick: the pipeline, 1 epoch (above); long: bench/methods_long.py (20 epochs, resumable)",
    )
    parser.add_argument("--methods", nargs="+", default=None, choices=LONG_METHODS)
    parser.add_argument(
        "--epochs", type=int, default=None, help="pretraining epochs per method (default: quick 1, long 20)"
    )
    parser.add_argument("--limit", type=int, default=60_000, help="pretraining images (default: %(default)s)")
    parser.add_argument(
        "--fractions", type=float, nargs="*", default=[0.01, 0.1], help="fine-tuning label fractions"
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=5,
        help=f"(default: %(default)s; pipelines/evaluate.py: {FineTuneSettings.epochs})",
    )
    parser.add_argument("--experiment", default="bench-methods")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="(default: %(default)s)")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "bench" / "results" / "methods_long.json",
        help="long: the results file, appended per method (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-train-size", type=int, default=60_000, help="long: kNN / probe train images (default: all)"
    )
    parser.add_argument(
        "--table-only", action="store_true", help="long: write the table from --results, run nothing"
    )
    parser.add_argument("--device", default="cpu", help="long: where to train, e.g. cuda (default: cpu)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="long: train.seed for every row (another draw: init, views, order; default: the configs')",
    )
    args = parser.parse_args(argv)
    long = args.budget == "long"
    args.methods = args.methods or list(LONG_METHODS if long else IMAGE_METHODS)
    quick_only = [m for m in args.methods if not (ROOT / "configs" / f"{m}_fmnist.yaml").exists()]
    if not long and quick_only:
        parser.error(f"--methods {' '.join(quick_only)}: long budget only (no configs/<method>_fmnist.yaml)")
    args.epochs = args.epochs or (20 if long else 1)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.budget == "long":
        methods_long.main(arguments)
    else:
        main(arguments)
