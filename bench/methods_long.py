"""``bench/methods.py --budget long``: every image method for >= 20 epochs on all 60k Fashion-MNIST
training images, scored by kNN (k=200, T=0.1) and a linear probe on the 10k test images.

    .venv/bin/python bench/methods.py --budget long --update-readme        # ~1 CPU hour per method
    .venv/bin/python bench/methods.py --budget long --epochs 1 --limit 2000 --eval-train-size 2000
    .venv/bin/python bench/methods.py --budget long --device cuda                   # on a GPU
    .venv/bin/python bench/methods.py --budget long --table-only --update-readme    # no training
    .venv/bin/python bench/methods.py --budget long --epochs 40 --methods simclr \
        --results bench/results/methods_long_40ep.json --update-readme   # a longer budget, own table
    .venv/bin/python bench/methods.py --budget long --epochs 40 --methods swav_wgrid --seed 1 \
        --results bench/results/methods_long_40ep_seed1.json            # another seed, own file

Each method trains single-process with the cl_core trainer (``cl_core.training.pretrain``, no Ray:
the long budget is compute, not pipeline) on the settings of its ``configs/<method>_fmnist.yaml``
(method parameters, view recipe, optimiser, lr, weight decay and its schedule, gradient clipping,
batch size, seed), or of ``configs/<method>_fmnist_long.yaml`` where one is tuned for this
budget (the row names its config), with ``--epochs``, ``--limit`` and ``--seed`` (``train.seed``,
for the reference rows too; recorded in each row) overriding the budget.
Resumable method by method: each finished method (and each reference row: raw pixels, the
random-init tiny CNN, ``random-init <backbone>`` for a method on another backbone) is
appended to ``--results`` (JSON) at once; a rerun skips what the file holds. Within a
method, epoch by epoch: its training state after each epoch waits in
``<results>.<method>.partial.pt`` beside the results file until the row is written, and a rerun
continues from it (a killed run loses one epoch at most, and ends as an unbroken one would).
The Markdown table is generated from that file, never typed, and written beside it (and into
README.md between the ``bench:methods-long`` markers with ``--update-readme``; another results
file's table goes between its own markers, ``bench:methods-long-40ep`` for ``methods_long_40ep.json``).
"""

import json
import os
import re
import time
from pathlib import Path

import torch

from cl_core import build_backbone, build_method
from cl_core.datasets import load_fashion_mnist
from cl_core.evaluation import extract_features, knn_top1, linear_probe_top1
from cl_core.training import PretrainSettings, pretrain
from cl_core.transforms import normalize
from pipelines.config import ExperimentConfig, load_config, normalization, recipe_from_config

ROOT = Path(__file__).resolve().parents[1]
#: Reference rows: raw pixels (784 values) and the random-init ``simclr_fmnist.yaml`` backbone
#: (tiny_cnn); a method on another backbone adds ``random-init <backbone>`` (``references``).
REFERENCES = ("raw-pixels", "random-init")
RANDOM_INIT = "random-init"


def load_results(path: Path) -> dict[str, dict]:
    """The rows finished so far, by name (empty when the file does not exist)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_row(path: Path, name: str, row: dict) -> None:
    """Add one finished row to the results file (written to a temporary file, then renamed)."""
    results = load_results(path) | {name: row}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    os.replace(tmp, path)


def settings_of(config: ExperimentConfig) -> PretrainSettings:
    """The config's optimisation settings for the single-process trainer."""
    t = config.train
    return PretrainSettings(
        epochs=t.epochs,
        batch_size=t.global_batch_size,
        optimizer=t.optimizer,
        base_lr=t.base_lr,
        weight_decay=t.weight_decay,
        weight_decay_end=t.weight_decay_end,
        momentum=t.momentum,
        warmup_epochs=t.warmup_epochs,
        grad_clip=t.grad_clip,
        seed=t.seed,
        channels_last=t.channels_last,
    )


def score(features: tuple[torch.Tensor, torch.Tensor], labels: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """kNN (k=200, T=0.1, the InstDisc monitor) and linear-probe top-1 on the test split."""
    (train_f, test_f), (train_y, test_y) = features, labels
    return {
        "knn_top1": knn_top1(train_f, train_y, test_f, test_y, k=200, temperature=0.1),
        "linear_top1": linear_probe_top1(train_f, train_y, test_f, test_y),
    }


def progress_printer(name: str, epochs: int, started: float):
    """An ``on_epoch_end`` that prints the epoch, loss, throughput and the time left (from the
    epochs this process ran: a resumed run's first epoch is not 1)."""
    first: list[int] = []

    def report(metrics: dict[str, float]) -> None:
        epoch = int(metrics["epoch"])
        first[:] = first or [epoch]
        left = (time.monotonic() - started) / (epoch - first[0] + 1) * (epochs - epoch)
        print(
            f"[{name}] epoch {epoch}/{epochs} loss {metrics['loss']:.4f} "
            f"{metrics['images_per_s']:.0f} img/s, about {left / 60:.0f} min left",
            flush=True,
        )

    return report


def is_reference(name: str) -> bool:
    """Whether a row is a reference (raw pixels, a random-init backbone), not a trained method."""
    return name in REFERENCES or name.startswith(RANDOM_INIT + " ")


def references(methods: list[str]) -> list[str]:
    """The reference rows for ``methods``: ``REFERENCES``, then ``random-init <backbone>`` for
    each other backbone their configs use (a method is above *its* random-init encoder)."""
    base = load_config(config_path(RANDOM_INIT)).backbone.name
    others = {load_config(config_path(m)).backbone.name for m in methods} - {base}
    return [*REFERENCES, *(f"{RANDOM_INIT} {b}" for b in sorted(others))]


def config_path(name: str) -> Path:
    """``configs/<name>_fmnist_long.yaml`` (tuned for this budget) where it exists, else
    ``configs/<name>_fmnist.yaml``; the references use ``simclr_fmnist.yaml``'s backbone and
    normalisation (``random-init <backbone>``: that backbone)."""
    if is_reference(name):
        return ROOT / "configs" / "simclr_fmnist.yaml"
    tuned = ROOT / "configs" / f"{name}_fmnist_long.yaml"
    return tuned if tuned.exists() else ROOT / "configs" / f"{name}_fmnist.yaml"


def seed_overrides(args) -> list[str]:
    """``train.seed=N`` for ``--seed N`` (another draw of init, views and order), else none
    (bench/tune_long.py's arguments have no ``--seed``)."""
    seed = getattr(args, "seed", None)
    return [] if seed is None else [f"train.seed={seed}"]


def run_one(
    name: str, args, data: dict, overrides: tuple[str, ...] = (), checkpoint: Path | None = None
) -> dict:
    """Pretrain ``name`` (or build a reference) and score it; returns its results row.
    ``overrides`` (``key=value``, after the budget's) change the config (``bench/tune_long.py``);
    ``checkpoint``: the file that holds the training state after each epoch, resumed from when
    it exists (``cl_core.training.pretrain``)."""
    reference = is_reference(name)
    seeded = seed_overrides(args)
    budget = [f"train.epochs={args.epochs}", f"data.limit={args.limit}", *seeded]
    overrides = [*budget, *overrides]
    if reference:  # random-init <backbone>: that backbone, else simclr_fmnist.yaml's
        other = name.startswith(RANDOM_INIT + " ")
        overrides = [*seeded, *([f"backbone.name={name.removeprefix(RANDOM_INIT + ' ')}"] if other else [])]
    path = config_path(name)
    config = load_config(path, overrides)
    mean, std = normalization(config)
    started = time.monotonic()
    if name == "raw-pixels":
        features = tuple(x.flatten(1).float() / 255.0 for x in data["images"])  # (n, 784)
        return score(features, data["labels"]) | {"seconds": time.monotonic() - started}
    torch.manual_seed(config.train.seed)
    backbone = build_backbone(config.backbone.name, config.data.channels, config.backbone.small_images)
    row: dict = {"backbone": config.backbone.name, "seed": config.train.seed}
    if not reference:
        method = build_method(config.method.name, backbone, **config.method.params)
        train_x, train_y = data["pretrain"]
        history = pretrain(
            method,
            train_x,
            recipe_from_config(config),
            settings_of(config),
            mean,
            std,
            train_y,
            device=args.device,
            on_epoch_end=progress_printer(name, args.epochs, started),
            checkpoint=checkpoint,
        )
        # Wall time: the epochs of every process that trained it (a resumed method), then scoring.
        started = time.monotonic() - sum(m["seconds"] for m in history)
        row |= {"epochs": args.epochs, "train_size": len(train_x), "final_loss": history[-1]["loss"]}
        row |= {"config": path.name, "device": str(args.device)}
        row["images_per_s"] = sum(m["images_per_s"] for m in history) / len(history)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return normalize(x.float() / 255.0, mean, std)

    backbone.to(args.device)
    features = tuple(
        extract_features(backbone, x, device=args.device, transform=transform).cpu() for x in data["images"]
    )
    return score(features, data["labels"]) | row | {"seconds": time.monotonic() - started}


def table(results: dict[str, dict], methods: list[str]) -> str:
    """Markdown rows in % for the methods (by kNN), then the references; from the results file."""
    done = sorted((m for m in methods if m in results), key=lambda m: -results[m]["knn_top1"])
    header = "| method | kNN | linear | epochs | images | backbone | config | wall time |"
    lines = [header, "|---|--:|--:|--:|--:|---|---|--:|"]
    others = sorted(r for r in results if is_reference(r) and r not in REFERENCES)
    for name in [*done, *[r for r in REFERENCES if r in results], *others]:
        row = results[name]
        shown = f"*{name}*" if is_reference(name) else name
        config = f"`{row['config']}`" if "config" in row else "–"
        backbone = row.get("backbone", "–")
        budget = [str(row.get("epochs", "–")), str(row.get("train_size", "–")), backbone, config]
        cells = [f"{100 * row['knn_top1']:.1f}", f"{100 * row['linear_top1']:.1f}", *budget]
        minutes, seconds = divmod(round(row["seconds"]), 60)
        lines.append(f"| {shown} | " + " | ".join(cells) + f" | {minutes}m{seconds:02d}s |")
    missing = [m for m in methods if m not in results]
    note = f"\n\nNot run yet: {', '.join(missing)}." if missing else ""
    return "\n".join(lines) + note + "\n"


def load_data(limit: int, eval_train_size: int) -> dict:
    """Fashion-MNIST as (n, 1, 28, 28) uint8: the pretraining images, the kNN / probe images."""
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    tensor = lambda x: torch.from_numpy(x).unsqueeze(1)  # noqa: E731
    k = eval_train_size
    return {
        "pretrain": (tensor(train_x[:limit]), torch.from_numpy(train_y[:limit])),
        "images": (tensor(train_x[:k]), tensor(test_x)),
        "labels": (torch.from_numpy(train_y[:k]), torch.from_numpy(test_y)),
    }


def main(args) -> str:
    """Run what ``args.results`` lacks, then write the table (and the README block)."""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    k = args.eval_train_size
    todo = [] if args.table_only else [*references(args.methods), *args.methods]
    data = load_data(args.limit, k) if todo else {}
    for name in todo:
        if name in load_results(args.results):
            print(f"=== {name}: in {args.results}, skipped", flush=True)
            continue
        partial = partial_checkpoint(args.results, name)
        resumed = f", resuming from {partial}" if partial.exists() else ""
        print(f"=== {name}: {args.epochs} epochs x {args.limit} images{resumed}", flush=True)
        save_row(args.results, name, run_one(name, args, data, checkpoint=partial))
        partial.unlink(missing_ok=True)
    text = table(load_results(args.results), args.methods)
    seeded = "".join(f"; seed {o.removeprefix('train.seed=')} (train.seed)" for o in seed_overrides(args))
    text += (
        f"\nBudget: {args.epochs} epochs over {args.limit} Fashion-MNIST training images per method "
        f"(the config column's settings otherwise), single process; kNN and linear probe with "
        f"{k} training images, top-1 on the 10k test images{seeded}. Generated from `{args.results.name}`.\n"
    )
    args.results.with_suffix(".md").write_text(text)
    print("\n" + text, flush=True)
    if args.update_readme:
        update_readme(readme_block(args.results), text)
    return text


def partial_checkpoint(results: Path, name: str) -> Path:
    """Where a method's unfinished training state waits beside the results file."""
    return results.with_name(f"{results.stem}.{name}.partial.pt")


def readme_block(results: Path) -> str:
    """The README block a results file's table goes to: ``methods-long`` for the 20-epoch
    ``methods_long.json``, ``methods-long-40ep`` for a longer budget's ``methods_long_40ep.json``."""
    return results.stem.replace("_", "-")


def update_readme(block: str, text: str) -> None:
    """Replace what README.md holds between ``<!-- bench:{block} -->`` and its closing marker."""
    readme = ROOT / "README.md"
    pattern = re.compile(rf"(<!-- bench:{block} -->\n).*?(<!-- /bench:{block} -->)", re.S)
    old = readme.read_text()
    if not pattern.search(old):
        raise SystemExit(f"README.md has no <!-- bench:{block} --> ... <!-- /bench:{block} --> block")
    readme.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(2), old))
    print(f"updated {readme}", flush=True)
