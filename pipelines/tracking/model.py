"""The final encoder as an MLflow model: logged into its run as ``encoder`` (with an input example,
a signature and its preprocessing in the model's metadata), optionally registered, and loaded
back from ``runs:/<id>/encoder`` or ``models:/<name>/<version>``.

MLflow 3 saves it with ``torch.export`` (its default "pt2" format, traced on the input example with a
free batch size): loading runs no pickled code and needs neither ``cl_core`` nor this project, and
gives a ``GraphModule`` in eval mode whose ``state_dict`` has the backbone's keys. ``encoder.pt``
beside the run stays the plain ``state_dict``.
"""

from pathlib import Path

import mlflow
import mlflow.pytorch
import torch
from mlflow.models import infer_signature

# Private, but the only way to point MLflow's fluent model API (log_model / load_model, whose
# registry URI follows the tracking URI) at one store for one call without changing the process's.
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from cl_core import build_backbone
from cl_core.transforms import normalize
from pipelines.config import ExperimentConfig, normalization
from pipelines.train.checkpoints import verified_load

ARTIFACT = "encoder"
EXAMPLE_ROWS = 2


def preprocessing(config: ExperimentConfig) -> dict:
    """What an image must go through before the encoder (stored in the model's metadata)."""
    mean, std = normalization(config)
    return {
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "image_size": config.data.image_size,
        "channels": config.data.channels,
        "backbone": config.backbone.name,
        "small_images": config.backbone.small_images,
        "input": "float32 (n, channels, image_size, image_size): pixels / 255, then (x - mean) / std",
    }


def log_encoder(
    uri: str, run_id: str, config: ExperimentConfig, encoder_file: Path, register_as: str | None = None
) -> str:
    """Log ``encoder.pt`` (a backbone ``state_dict``) as the run's ``encoder`` model, registered as
    ``register_as`` (a new version) when given; returns the model's URI."""
    prep = preprocessing(config)
    backbone = build_backbone(prep["backbone"], prep["channels"], prep["small_images"])
    backbone.load_state_dict(verified_load(encoder_file))
    backbone.eval()
    size = (EXAMPLE_ROWS, prep["channels"], prep["image_size"], prep["image_size"])
    pixels = torch.rand(size, generator=torch.Generator().manual_seed(0))  # images on [0, 1]
    example = normalize(pixels, prep["mean"], prep["std"])  # (n, c, s, s) as the encoder sees them
    if config.data.source == "video_folder":  # clips (n, c, t, s, s), t = video.frames
        example = example.unsqueeze(2).expand(-1, -1, config.video.frames, -1, -1).contiguous()
        prep["frames"] = config.video.frames
        prep["input"] = (
            "float32 (n, channels, frames, image_size, image_size): pixels / 255, then (x - mean) / std"
        )
    with torch.no_grad():
        features = backbone(example)  # (n, d)
    signature = infer_signature(example.numpy(), features.numpy())
    client = mlflow.MlflowClient(uri)
    # Created here, in the run's experiment: log_model(run_id=...) without an active run would put
    # it in the process's current experiment (Default) and its files under ./mlruns, where
    # runs:/<id>/encoder (searched in the run's experiment) does not find it.
    logged = client.create_logged_model(
        client.get_run(run_id).info.experiment_id, name=ARTIFACT, source_run_id=run_id, model_type="encoder"
    )
    with _use_tracking_uri(uri):
        info = mlflow.pytorch.log_model(
            backbone,
            name=ARTIFACT,
            run_id=run_id,
            model_id=logged.model_id,
            signature=signature,
            input_example=example.numpy(),
            metadata={"preprocessing": prep},
            registered_model_name=register_as,
            # Pinned here: inferring them loads the model in a subprocess (tens of seconds).
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        )
    return info.model_uri


def load_encoder(model_uri: str, uri: str) -> tuple[torch.nn.Module, dict, str | None]:
    """(the encoder (eval mode, CPU, not switchable to train), its preprocessing, the run it was
    logged from) of
    ``runs:/<id>/encoder`` or ``models:/<name>/<version>`` in the store at ``uri``.

    Raises:
        ValueError: the model has no preprocessing metadata (not logged by this project).
    """
    with _use_tracking_uri(uri):
        info = mlflow.models.get_model_info(model_uri)
        model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    prep = (info.metadata or {}).get("preprocessing")
    if prep is None:
        raise ValueError(
            f"{model_uri}: no preprocessing in the model's metadata; not an encoder of this project"
        )
    return model, prep, info.run_id
