"""Evaluate a pretrained encoder under fixed protocols; results go into its MLflow run as final/*.

    python pipelines/evaluate.py runs/simclr_fmnist-20261123-101500   # a run directory
    python pipelines/evaluate.py 3f2a9c...                             # an MLflow run id
    python pipelines/evaluate.py runs/x/checkpoint_000002 --fractions 0.01 --finetune-epochs 10
    python pipelines/evaluate.py configs/simclr_fmnist.yaml --reference raw-pixels

Protocols (every one on the final encoder, never the best epoch): weighted kNN (InstDisc; k and
T from the run's ``eval`` section or ``--knn-k`` / ``--knn-temperature``), a linear probe on
standardised frozen features whose L2 strength and length are chosen on a held-out 10% of the
train split, and fine-tuning of the whole encoder on class-balanced, seeded 1% and 10% label
subsets (SimCLR's semi-supervised protocol). Features are extracted by a Ray Data actor pool on
the data tier (``placement.data_resource``) or any CPU, not on the Train workers; the fine-tunes
run as Ray tasks, one per fraction, in parallel.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python pipelines/evaluate.py` from a checkout or a job's copy

import numpy as np  # noqa: E402
import ray  # noqa: E402
import ray.data  # noqa: E402
import torch  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from cl_core import build_backbone  # noqa: E402
from cl_core.evaluation import FineTuneSettings, balanced_subset, fine_tune_top1, knn_top1, linear_probe  # noqa: E402
from cl_core.transforms import normalize  # noqa: E402
from pipelines.checkpoints import ENCODER_FILE, verified_load  # noqa: E402
from pipelines.config import ExperimentConfig, load_config  # noqa: E402
from pipelines.pretrain import RUN_INFO  # noqa: E402
from pipelines.session import connect, output_home, quiet_ray  # noqa: E402
from pipelines.tracking import default_tracking_uri, log_text, redact  # noqa: E402

REFERENCES = ("random-init", "raw-pixels")
FEATURE_BATCH = 512


@dataclass(frozen=True)
class Source:
    """What to evaluate: the run's config, the encoder weights (None: ``reference``), its MLflow run."""

    config: ExperimentConfig
    encoder_state: dict[str, torch.Tensor] | None
    where: str
    run_id: str | None = None
    tracking_uri: str | None = None
    reference: str | None = None


def _run_dir_of(path: Path) -> Path | None:
    """The run directory holding ``path`` (itself, or the run of a checkpoint directory)."""
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def resolve_source(target: str, tracking_uri: str | None, overrides: list[str], reference: str | None) -> Source:
    """A run directory, a checkpoint directory / ``encoder.pt``, an MLflow run id, or (with
    ``reference``) an experiment YAML whose data and backbone the reference rows use.

    Raises:
        FileNotFoundError: ``target`` is neither an existing path nor a run id in the store.
    """
    path = Path(target).expanduser()
    if reference is not None:
        if reference not in REFERENCES:
            raise ValueError(f"--reference: {reference!r} is not one of {', '.join(REFERENCES)}")
        return Source(load_config(path, overrides), None, f"{reference} ({path})", reference=reference)
    if path.exists():
        run_dir = _run_dir_of(path.resolve())
        if run_dir is None:
            raise FileNotFoundError(f"{path}: no config.yaml here or in the two folders above; pass a run directory")
        encoder = path if path.is_file() else path / ENCODER_FILE
        info = json.loads((run_dir / RUN_INFO).read_text()) if (run_dir / RUN_INFO).is_file() else {}
        return Source(load_config(run_dir / "config.yaml", overrides), verified_load(encoder), str(encoder),
                      info.get("run_id"), info.get("tracking_uri"))  # fmt: skip
    uri = tracking_uri or default_tracking_uri(output_home())
    client = MlflowClient(uri)
    try:
        client.get_run(target)
    except Exception as exc:  # noqa: BLE001  (MLflow raises its own error for an unknown id)
        raise FileNotFoundError(f"{target!r} is not a path, nor a run id in MLflow at {redact(uri)} "
                                f"(set --tracking-uri or MLFLOW_TRACKING_URI)") from exc  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config_path = client.download_artifacts(target, "config.yaml", tmp)
        encoder_path = client.download_artifacts(target, ENCODER_FILE, tmp)
        config, state = load_config(config_path, overrides), verified_load(encoder_path)
    return Source(config, state, f"MLflow run {target}", target, uri)


class Featurizer:
    """Ray Data actor: the frozen encoder (or raw pixels), uint8 images in, feature rows out."""

    def __init__(self, source: Source, device: str) -> None:
        from pipelines.data import normalization

        torch.set_num_threads(1)
        c = source.config
        self.mean, self.std = normalization(c)
        self.device = device
        self.encoder = None
        if source.reference != "raw-pixels":
            torch.manual_seed(c.train.seed)  # random-init: the init a run of this config starts from
            self.encoder = build_backbone(c.backbone.name, c.data.channels, c.backbone.small_images)
            if source.encoder_state is not None:
                self.encoder.load_state_dict(source.encoder_state)
            self.encoder.eval().to(device)

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = torch.from_numpy(np.require(batch["image"], requirements="W")).to(self.device)  # (b, c, h, w) uint8
        if self.encoder is None:
            features = images.flatten(1).float() / 255.0  # (b, c*h*w)
        else:
            features = self.encoder(normalize(images.float() / 255.0, self.mean, self.std)).flatten(1)  # (b, d)
        return {"feature": features.float().cpu().numpy(), "label": batch["label"]}


def labelled_splits(config: ExperimentConfig, train_size: int | None, test_size: int) -> tuple:
    """(train, test) labelled datasets of the run's corpus, un-augmented and materialised: the
    first ``train_size`` (None: all) training rows and ``test_size`` held-out rows (Fashion-MNIST:
    t10k); the same split the kNN monitor uses, larger."""
    from pipelines.corpus import eval_sets, read_corpus

    config = replace(config, data=replace(config.data, limit=train_size),
                     eval=replace(config.eval, train_size=train_size or 2**62, test_size=test_size))  # fmt: skip
    corpus = read_corpus(config)
    train, test = eval_sets(corpus, config)
    if train is None:
        raise ValueError(f"data: {config.data.source} at {config.data.path} has no labels to evaluate with")
    return train, test, corpus.tasks


def extract(ds: ray.data.Dataset, source: Source, workers: int, use_gpu: bool, tasks: dict) -> tuple:
    """(features (n, d), labels (n,)) in the dataset's row order, from an actor pool of ``workers``."""
    role = {"resources": tasks["resources"]} if "resources" in tasks else {}
    out = ds.map_batches(Featurizer, fn_constructor_kwargs={"source": source, "device": "cuda" if use_gpu else "cpu"},
                         batch_size=FEATURE_BATCH, compute=ray.data.ActorPoolStrategy(size=workers),
                         num_cpus=1, num_gpus=1 if use_gpu else 0, **role)  # fmt: skip
    features, labels = [], []
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):  # Ray: streamed to the driver
        features.append(batch["feature"])
        labels.append(batch["label"])
    return torch.from_numpy(np.concatenate(features)), torch.from_numpy(np.concatenate(labels)).long()


def images_of(ds: ray.data.Dataset, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The dataset's images in row order ((n, c, h, w) uint8), or only the rows whose index is in ``keep``."""
    chunks, seen = [], 0
    for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
        images = torch.from_numpy(np.require(batch["image"], requirements="W"))  # (b, c, h, w) uint8
        if keep is not None:
            rows = keep[(keep >= seen) & (keep < seen + len(images))] - seen
            seen += len(images)
            images = images[rows]
        chunks.append(images)
    return torch.cat(chunks)


@ray.remote
def _fine_tune_task(source: Source, images, labels, test_images, test_labels, settings: FineTuneSettings,
                    use_gpu: bool) -> float:  # fmt: skip
    from pipelines.data import normalization

    mean, std = normalization(source.config)
    c = source.config
    torch.manual_seed(c.train.seed)
    encoder = build_backbone(c.backbone.name, c.data.channels, c.backbone.small_images)
    if source.encoder_state is not None:
        encoder.load_state_dict(source.encoder_state)
    return fine_tune_top1(encoder, images, labels, test_images, test_labels, settings=settings,
                          transform=lambda x: normalize(x.float() / 255.0, mean, std),
                          device="cuda" if use_gpu else "cpu")  # fmt: skip


def metric_name(fraction: float) -> str:
    return f"final/finetune_{fraction * 100:g}pct_top1"


def log_results(source: Source, results: dict[str, float], protocol: dict) -> None:
    """``final/*`` at the run's last step, and ``evaluation.json`` (numbers + protocol)."""
    client = MlflowClient(source.tracking_uri)
    step = max((m.step for m in client.get_metric_history(source.run_id, "train/step")), default=0)
    now = int(time.time() * 1000)
    client.log_batch(source.run_id, metrics=[Metric(k, v, now, step) for k, v in results.items()], synchronous=True)
    log_text(source.tracking_uri, source.run_id, json.dumps({"results": results, "protocol": protocol}, indent=2),
             "evaluation.json")  # fmt: skip


@dataclass(frozen=True)
class Protocol:
    """How to evaluate. kNN settings default to the run's ``eval`` section.

    Attributes:
        train_size: labelled training rows (kNN bank, probe fit, subsets' pool); None: all.
        test_size: held-out rows scored (Fashion-MNIST: of t10k).
        knn_k: neighbours; None: ``eval.knn_k``.
        knn_temperature: vote temperature; None: ``eval.knn_temperature``.
        fractions: label fractions to fine-tune on (empty: no fine-tuning).
        finetune: fine-tuning settings (its seed also draws the label subsets).
        workers: feature-extraction actors (and the fine-tunes' CPUs each).
        use_gpu: one GPU per actor and per fine-tune.
    """

    train_size: int | None = None
    test_size: int = 10_000
    knn_k: int | None = None
    knn_temperature: float | None = None
    fractions: tuple[float, ...] = (0.01, 0.1)
    finetune: FineTuneSettings = FineTuneSettings()
    workers: int = 2
    use_gpu: bool = False


def main(source: Source, protocol: Protocol = Protocol()) -> dict[str, float]:
    """Run every protocol on ``source``; log ``final/*`` into its MLflow run when it has one."""
    c = source.config
    if c.data.source == "video_folder":
        raise ValueError("evaluate.py scores image encoders; a video run's kNN is eval/knn_top1 of the run itself")
    if any(not 0.0 < f <= 1.0 for f in protocol.fractions):
        raise ValueError(f"--fractions: each must be in (0, 1], got {list(protocol.fractions)}")
    print(f"Ray: using {connect()}", flush=True)
    quiet_ray()
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # rows stay aligned
    started = time.monotonic()
    train, test, tasks = labelled_splits(c, protocol.train_size, protocol.test_size)
    train_f, train_y = extract(train, source, protocol.workers, protocol.use_gpu, tasks)
    test_f, test_y = extract(test, source, protocol.workers, protocol.use_gpu, tasks)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    print(f"evaluating {source.where}: {len(train_y)} train / {len(test_y)} test images, "
          f"{train_f.shape[1]}-d features ({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    k, temperature = protocol.knn_k or c.eval.knn_k, protocol.knn_temperature or c.eval.knn_temperature
    results = {"final/knn_top1": knn_top1(train_f, train_y, test_f, test_y, k, temperature, num_classes)}
    probe = linear_probe(train_f, train_y, test_f, test_y, num_classes, seed=protocol.finetune.seed)
    results["final/linear_top1"] = probe.top1
    print(f"kNN top-1 {results['final/knn_top1']:.4f}; linear top-1 {probe.top1:.4f} (weight decay "
          f"{probe.weight_decay:g}, {probe.iterations} L-BFGS iterations, held-out {probe.val_top1:.4f})", flush=True)  # fmt: skip
    fractions = protocol.fractions if source.reference != "raw-pixels" else ()
    if fractions:
        test_images = images_of(test)
        role = {"resources": tasks["resources"]} if "resources" in tasks else {}
        pending = []
        for fraction in fractions:
            keep = balanced_subset(train_y, fraction, protocol.finetune.seed)
            print(f"fine-tuning on {len(keep)} labels ({fraction:.0%}, {len(keep) // num_classes} per class)", flush=True)
            task = _fine_tune_task.options(num_cpus=1, num_gpus=1 if protocol.use_gpu else 0, **role)
            pending.append(task.remote(source, images_of(train, keep), train_y[keep], test_images, test_y,
                                       protocol.finetune, protocol.use_gpu))  # fmt: skip
        for fraction, top1 in zip(fractions, ray.get(pending)):  # Ray: the fine-tunes run in parallel
            results[metric_name(fraction)] = top1
    print("\n".join(f"  {k}: {v:.4f}" for k, v in results.items()) + f"\n({time.monotonic() - started:.0f} s)")
    if source.run_id is not None:
        protocol_record = {"knn_k": k, "knn_temperature": temperature, "train_rows": len(train_y),
                           "test_rows": len(test_y), "linear_weight_decay": probe.weight_decay,
                           "linear_iterations": probe.iterations, "fractions": list(fractions),
                           "finetune": protocol.finetune.__dict__}  # fmt: skip
        log_results(source, results, protocol_record)
        print(f"logged to MLflow run {source.run_id} in {redact(source.tracking_uri)}", flush=True)
    return results


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="run directory, checkpoint directory, encoder.pt, MLflow run id, "
                                       "or (with --reference) an experiment YAML")  # fmt: skip
    parser.add_argument("--reference", choices=REFERENCES, help="score a baseline instead of a trained encoder")
    parser.add_argument("--tracking-uri", help="MLflow store of a run id (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the run's config, e.g. --set data.path=/data/fmnist")  # fmt: skip
    parser.add_argument("--train-size", type=int, help="labelled training rows (default: all)")
    parser.add_argument("--test-size", type=int, default=10_000, help="test rows (default: %(default)s)")
    parser.add_argument("--knn-k", type=int, help="kNN neighbours (default: the run's eval.knn_k)")
    parser.add_argument("--knn-temperature", type=float, help="kNN temperature (default: the run's eval.knn_temperature)")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.01, 0.1],
                        help="label fractions to fine-tune on (default: 0.01 0.1; none: skip fine-tuning)")  # fmt: skip
    parser.add_argument("--finetune-epochs", type=int, default=FineTuneSettings.epochs, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="feature-extraction actors (default: %(default)s)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per extraction actor and per fine-tune")
    parser.add_argument("--smoke-test", action="store_true", help="2000 train / 500 test rows, a short 10%% fine-tune")
    return parser


def cli(argv: list[str] | None = None) -> dict[str, float]:
    args = get_args_parser().parse_args(argv)
    source = resolve_source(args.target, args.tracking_uri, args.overrides, args.reference)
    finetune = FineTuneSettings(epochs=args.finetune_epochs)
    protocol = Protocol(args.train_size, args.test_size, args.knn_k, args.knn_temperature, tuple(args.fractions),
                        finetune, args.workers, args.gpu)  # fmt: skip
    if args.smoke_test:
        protocol = replace(protocol, train_size=2000, test_size=500, fractions=(0.1,),
                           finetune=replace(finetune, epochs=1, min_steps=20))  # fmt: skip
    return main(source, protocol)


if __name__ == "__main__":
    cli()
