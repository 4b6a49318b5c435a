"""One-at-a-time tuning for ``bench/methods.py --budget long`` at a reduced budget: one method's
long-budget config (``configs/<method>_fmnist_long.yaml`` where it exists, else
``<method>_fmnist.yaml``), then the same with each ``--try`` set of overrides, each trained with
the long table's trainer and scored with its protocol (``bench/methods_long.py``), kNN first.

    .venv/bin/python bench/tune_long.py moco --try augment.params.strength=1.0 \\
        --try method.params.temperature=0.1 --try train.base_lr=0.12   # ~4 min a setting (MoCo)

Default budget 4 epochs x 20k images, kNN / linear probe on 10k train / 10k test images: a
setting that helps here is then checked at the long budget before it goes into a
``_fmnist_long.yaml`` (SimCLR's strength 1.0: +1.6 kNN here, +2.0 at the long budget). One seed:
gains of a point or less are within noise. Resumable: each finished setting is kept in
``--results`` (default ``bench/results/tune_long_<config>_<epochs>x<limit>.json``) and skipped by a rerun.
"""

import argparse
from pathlib import Path

import torch

from pipelines.cli import run_cli
from pipelines.config import load_config

try:  # run as a script: bench/ is on the path
    from methods_long import ROOT, config_path, load_data, load_results, run_one, save_row
except ModuleNotFoundError:  # imported as bench.tune_long (tests)
    from bench.methods_long import ROOT, config_path, load_data, load_results, run_one, save_row

BASE = "base"


def label(overrides: list[str]) -> str:
    """A setting's name in the results file and the table: its overrides, or ``base``."""
    return " ".join(overrides) or BASE


def table(results: dict[str, dict], settings: list[str]) -> str:
    """Markdown rows in % for the settings that finished, in the order asked, with kNN and linear
    against the base's."""
    base = results.get(BASE)
    lines = ["| setting | kNN | Δ kNN | linear | Δ linear |", "|---|--:|--:|--:|--:|"]
    for name in settings:
        if name not in results:
            continue
        row = results[name]
        knn, linear = 100 * row["knn_top1"], 100 * row["linear_top1"]
        delta = (
            (f"{knn - 100 * base['knn_top1']:+.1f}", f"{linear - 100 * base['linear_top1']:+.1f}")
            if base is not None
            else ("–", "–")
        )
        lines.append(f"| {name} | {knn:.1f} | {delta[0]} | {linear:.1f} | {delta[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    fmnist = sorted(p.name.removesuffix("_fmnist.yaml") for p in (ROOT / "configs").glob("*_fmnist.yaml"))
    parser.add_argument("method", choices=fmnist)
    parser.add_argument(
        "--try",
        dest="settings",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="one setting: config overrides tried together (repeat --try for more settings)",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=20000, help="pretraining images")
    parser.add_argument("--eval-train-size", type=int, default=10000)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return run_cli(parser, tune, argv)


def tune(args) -> str:
    """The base and each setting not in the results file yet, then the table."""
    base = config_path(args.method)
    for overrides in args.settings:  # a bad key or value fails here, before any training
        load_config(base, overrides)
    budget = f"{args.epochs}x{args.limit}"
    results_path = args.results or Path(__file__).parent / "results" / f"tune_long_{base.stem}_{budget}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    settings = [[], *args.settings]
    names = [label(s) for s in settings]
    data = load_data(args.limit, args.eval_train_size)
    print(f"{args.method}: {base.name}, {args.epochs} epochs x {args.limit} images per setting", flush=True)
    for overrides, name in zip(settings, names, strict=True):
        if name in load_results(results_path):
            print(f"=== {name}: in {results_path}, skipped", flush=True)
            continue
        print(f"=== {name}", flush=True)
        row = run_one(args.method, args, data, tuple(overrides))
        save_row(results_path, name, row | {"overrides": overrides, "base_config": base.name})
    text = table(load_results(results_path), names)
    print("\n" + text, flush=True)
    return text


if __name__ == "__main__":
    main()
