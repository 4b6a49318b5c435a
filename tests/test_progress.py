import io
import sys

from pipelines.tracking.progress import ProgressLine, format_seconds


def test_format_seconds__reads_like_a_clock():
    assert [format_seconds(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_progress_line__shows_epoch_step_loss_knn_rate_and_eta(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "__stdout__", out)
    line = ProgressLine(epochs=4, steps_per_epoch=10, start_step=10).epoch_done(
        2, 20, {"train/loss": 1.23456, "eval/knn_top1": 0.5, "data/images_per_s": 812.4}
    )
    assert line.startswith("epoch 2/4 | step 20/40 | loss 1.2346 | knn 0.5000 | 812 img/s | ETA ")
    assert out.getvalue() == line + "\n"
