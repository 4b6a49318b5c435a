"""The loss / kNN curve plot logged with every run."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

CURVES = (("train/loss", "loss"), ("eval/knn_top1", "kNN top-1"))


def plot_curves(uri: str, run_id: str, path: Path) -> Path:
    """Plot each metric of :data:`CURVES` against the step from the run's MLflow history."""
    client = MlflowClient(uri)
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.5))
    for ax, (key, label) in zip(axes, CURVES):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
