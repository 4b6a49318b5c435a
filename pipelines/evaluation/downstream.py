"""Downstream evaluation of a pretrained encoder (the ``evaluate.py`` CLI's body); results go into
its MLflow run as final/*.

Protocols (every one on the final encoder, never the best epoch): weighted kNN (InstDisc; k and
T from the run's ``eval`` section or ``--knn-k`` / ``--knn-temperature``), a linear probe on
standardised frozen features whose L2 strength and length are chosen on a held-out 10% of the
train split, and fine-tuning of the whole encoder on class-balanced, seeded 1% and 10% label
subsets (SimCLR's semi-supervised protocol). Features are extracted by a Ray Data actor pool on
the data tier (``placement.data_resource``) or any CPU, not on the Train workers; the fine-tunes
run as Ray tasks, one per fraction, in parallel.
"""

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import ray
import ray.data
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from cl_core import build_backbone
from cl_core.evaluation import FineTuneSettings, balanced_subset, fine_tune_top1, knn_top1, linear_probe
from cl_core.transforms import normalize
from pipelines import storage
from pipelines.config import ExperimentConfig, load_config, normalization
from pipelines.data.corpus import eval_sets, read_corpus
from pipelines.home import output_home
from pipelines.run import RUN_INFO
from pipelines.tracking.mlflow_run import default_tracking_uri, log_text, redact
from pipelines.tracking.model import load_encoder
from pipelines.train.checkpoints import ENCODER_FILE, verified_load
from pipelines.train.cluster import connect, quiet_ray

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
    preprocessing: dict | None = None  # an MLflow model's metadata; None: from the config

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std): the model's own when it came from MLflow, else the config's."""
        if self.preprocessing is not None:
            return tuple(self.preprocessing["mean"]), tuple(self.preprocessing["std"])
        return normalization(self.config)


def _run_dir_of(path: Path) -> Path | None:
    """The run directory holding ``path`` (itself, or the run of a checkpoint directory)."""
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def resolve_source(
    target: str, tracking_uri: str | None, overrides: list[str], reference: str | None
) -> Source:
    """A run directory, a checkpoint directory / ``encoder.pt``, an MLflow run id, an MLflow model
    (``models:/NAME/VERSION``, ``runs:/ID/encoder``), or (with ``reference``) an experiment YAML
    whose data and backbone the reference rows use.

    Raises:
        FileNotFoundError: ``target`` is neither an existing path nor a run id in the store.
    """
    path = Path(target).expanduser()
    if reference is not None:
        if reference not in REFERENCES:
            raise ValueError(f"--reference: {reference!r} is not one of {', '.join(REFERENCES)}")
        return Source(load_config(path, overrides), None, f"{reference} ({path})", reference=reference)
    if target.startswith(("models:/", "runs:/")):
        return _mlflow_model(target, tracking_uri or default_tracking_uri(output_home()), overrides)
    if storage.is_uri(target):  # a run directory on object storage
        return _remote_run(target, overrides)
    if path.exists():
        run_dir = _run_dir_of(path.resolve())
        if run_dir is None:
            raise FileNotFoundError(
                f"{path}: no config.yaml here or in the two folders above; pass a run directory"
            )
        encoder = path if path.is_file() else path / ENCODER_FILE
        info = json.loads((run_dir / RUN_INFO).read_text()) if (run_dir / RUN_INFO).is_file() else {}
        return Source(
            load_config(run_dir / "config.yaml", overrides),
            verified_load(encoder),
            str(encoder),
            info.get("run_id"),
            info.get("tracking_uri"),
        )
    uri = tracking_uri or default_tracking_uri(output_home())
    client = MlflowClient(uri)
    try:
        client.get_run(target)
    except Exception as exc:  # noqa: BLE001  (MLflow raises its own error for an unknown id)
        raise FileNotFoundError(
            f"{target!r} is not a path, nor a run id in MLflow at {redact(uri)} "
            f"(set --tracking-uri or MLFLOW_TRACKING_URI)"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        config_path = client.download_artifacts(target, "config.yaml", tmp)
        encoder_path = client.download_artifacts(target, ENCODER_FILE, tmp)
        config, state = load_config(config_path, overrides), verified_load(encoder_path)
    return Source(config, state, f"MLflow run {target}", target, uri)


def _mlflow_model(model_uri: str, uri: str, overrides: list[str]) -> Source:
    """An encoder logged as an MLflow model: its weights and preprocessing from the model, the data
    to evaluate on from its run's ``config.yaml``.

    Raises:
        ValueError: the model's preprocessing does not match its run's config (backbone, channels,
            image size), e.g. after an override.
    """
    model, prep, run_id = load_encoder(model_uri, uri)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(MlflowClient(uri).download_artifacts(run_id, "config.yaml", tmp), overrides)
    built = (config.backbone.name, config.data.channels, config.data.image_size)
    logged = (prep["backbone"], prep["channels"], prep["image_size"])
    if built != logged:
        raise ValueError(
            f"{model_uri}: the model is (backbone, channels, image size) {logged}, its run's config "
            f"says {built}"
        )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Source(config, state, f"MLflow model {model_uri}", run_id, uri, preprocessing=prep)


def _remote_run(run_dir: str, overrides: list[str]) -> Source:
    """A run directory on object storage (``checkpoint.output_dir: s3://...``): its config, run info
    and final encoder, fetched.

    Raises:
        FileNotFoundError: no ``config.yaml`` or ``encoder.pt`` there.
    """
    names = ("config.yaml", ENCODER_FILE)
    missing = [name for name in names if not storage.exists(storage.join(run_dir, name))]
    if missing:
        raise FileNotFoundError(f"{run_dir}: no {' or '.join(missing)}; pass a finished run directory")
    info_file = storage.join(run_dir, RUN_INFO)
    info = json.loads(storage.read_text(info_file)) if storage.exists(info_file) else {}
    with tempfile.TemporaryDirectory() as tmp:
        local = {name: Path(tmp) / name for name in names}
        for name, file in local.items():
            file.write_bytes(storage.read_bytes(storage.join(run_dir, name)))
        config, state = load_config(local["config.yaml"], overrides), verified_load(local[ENCODER_FILE])
    where = storage.join(run_dir, ENCODER_FILE)
    return Source(config, state, where, info.get("run_id"), info.get("tracking_uri"))


class Featurizer:
    """Ray Data actor: the frozen encoder (or raw pixels), uint8 images in, feature rows out."""

    def __init__(self, source: Source, device: str) -> None:
        torch.set_num_threads(1)
        c = source.config
        self.mean, self.std = source.normalization()
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
        images = torch.from_numpy(np.require(batch["image"], requirements="W")).to(
            self.device
        )  # (b, c, h, w) uint8
        if self.encoder is None:
            features = images.flatten(1).float() / 255.0  # (b, c*h*w)
        else:
            features = self.encoder(normalize(images.float() / 255.0, self.mean, self.std)).flatten(
                1
            )  # (b, d)
        return {"feature": features.float().cpu().numpy(), "label": batch["label"]}


def labelled_splits(config: ExperimentConfig, train_size: int | None, test_size: int) -> tuple:
    """(train, test) labelled datasets of the run's corpus, un-augmented and materialised: the
    first ``train_size`` (None: all) training rows and ``test_size`` held-out rows (Fashion-MNIST:
    t10k); the same split the kNN monitor uses, larger."""
    config = replace(
        config,
        data=replace(config.data, limit=train_size),
        eval=replace(config.eval, train_size=train_size or 2**62, test_size=test_size),
    )
    corpus = read_corpus(config)
    train, test = eval_sets(corpus, config)
    if train is None:
        raise ValueError(f"data: {config.data.source} at {config.data.path} has no labels to evaluate with")
    return train, test, corpus.tasks


def extract(ds: ray.data.Dataset, source: Source, workers: int, use_gpu: bool, tasks: dict) -> tuple:
    """(features (n, d), labels (n,)) in the dataset's row order, from an actor pool of ``workers``."""
    role = {"resources": tasks["resources"]} if "resources" in tasks else {}
    out = ds.map_batches(
        Featurizer,
        fn_constructor_kwargs={"source": source, "device": "cuda" if use_gpu else "cpu"},
        batch_size=FEATURE_BATCH,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        num_gpus=1 if use_gpu else 0,
        **role,
    )
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
def _fine_tune_task(
    source: Source, images, labels, test_images, test_labels, settings: FineTuneSettings, use_gpu: bool
) -> float:
    mean, std = source.normalization()
    c = source.config
    torch.manual_seed(c.train.seed)
    encoder = build_backbone(c.backbone.name, c.data.channels, c.backbone.small_images)
    if source.encoder_state is not None:
        encoder.load_state_dict(source.encoder_state)
    return fine_tune_top1(
        encoder,
        images,
        labels,
        test_images,
        test_labels,
        settings=settings,
        transform=lambda x: normalize(x.float() / 255.0, mean, std),
        device="cuda" if use_gpu else "cpu",
    )


def metric_name(fraction: float) -> str:
    return f"final/finetune_{fraction * 100:g}pct_top1"


def log_results(source: Source, results: dict[str, float], protocol: dict) -> None:
    """``final/*`` at the run's last step, and ``evaluation.json`` (numbers + protocol)."""
    client = MlflowClient(source.tracking_uri)
    step = max((m.step for m in client.get_metric_history(source.run_id, "train/step")), default=0)
    now = int(time.time() * 1000)
    client.log_batch(
        source.run_id, metrics=[Metric(k, v, now, step) for k, v in results.items()], synchronous=True
    )
    log_text(
        source.tracking_uri,
        source.run_id,
        json.dumps({"results": results, "protocol": protocol}, indent=2),
        "evaluation.json",
    )


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


def evaluate(source: Source, protocol: Protocol = Protocol()) -> dict[str, float]:
    """Run every protocol on ``source``; log ``final/*`` into its MLflow run when it has one."""
    c = source.config
    if c.data.source == "video_folder":
        raise ValueError(
            "evaluate.py scores image encoders; a video run's kNN is eval/knn_top1 of the run itself"
        )
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
    print(
        f"evaluating {source.where}: {len(train_y)} train / {len(test_y)} test images, "
        f"{train_f.shape[1]}-d features ({time.monotonic() - started:.0f} s)",
        flush=True,
    )
    k, temperature = protocol.knn_k or c.eval.knn_k, protocol.knn_temperature or c.eval.knn_temperature
    results = {"final/knn_top1": knn_top1(train_f, train_y, test_f, test_y, k, temperature, num_classes)}
    probe = linear_probe(train_f, train_y, test_f, test_y, num_classes, seed=protocol.finetune.seed)
    results["final/linear_top1"] = probe.top1
    print(
        f"kNN top-1 {results['final/knn_top1']:.4f}; linear top-1 {probe.top1:.4f} (weight decay "
        f"{probe.weight_decay:g}, {probe.iterations} L-BFGS iterations, held-out {probe.val_top1:.4f})",
        flush=True,
    )
    fractions = protocol.fractions if source.reference != "raw-pixels" else ()
    if fractions:
        test_images = images_of(test)
        role = {"resources": tasks["resources"]} if "resources" in tasks else {}
        pending = []
        for fraction in fractions:
            keep = balanced_subset(train_y, fraction, protocol.finetune.seed)
            print(
                f"fine-tuning on {len(keep)} labels ({fraction:.0%}, {len(keep) // num_classes} per class)",
                flush=True,
            )
            task = _fine_tune_task.options(num_cpus=1, num_gpus=1 if protocol.use_gpu else 0, **role)
            pending.append(
                task.remote(
                    source,
                    images_of(train, keep),
                    train_y[keep],
                    test_images,
                    test_y,
                    protocol.finetune,
                    protocol.use_gpu,
                )
            )
        for fraction, top1 in zip(fractions, ray.get(pending)):  # Ray: the fine-tunes run in parallel
            results[metric_name(fraction)] = top1
    print(
        "\n".join(f"  {k}: {v:.4f}" for k, v in results.items()) + f"\n({time.monotonic() - started:.0f} s)"
    )
    if source.run_id is not None:
        protocol_record = {
            "knn_k": k,
            "knn_temperature": temperature,
            "train_rows": len(train_y),
            "test_rows": len(test_y),
            "linear_weight_decay": probe.weight_decay,
            "linear_iterations": probe.iterations,
            "fractions": list(fractions),
            "finetune": protocol.finetune.__dict__,
        }
        log_results(source, results, protocol_record)
        print(f"logged to MLflow run {source.run_id} in {redact(source.tracking_uri)}", flush=True)
    return results
