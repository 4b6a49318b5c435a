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


def test_progress_line__within_long_epochs_a_line_every_tenth_at_most_every_30_s(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "__stdout__", out)
    now = [0.0]
    progress = ProgressLine(2, 100, batch_size=256, clock=lambda: now[0])  # 10 s per step
    lines = []
    for step in range(1, 101):
        now[0] = step * 10.0
        line = progress.step_done(step, {"loss": 2.5})
        lines += [(step, line)] if line else []
    # every 10 steps (a tenth) and >= 30 s apart: steps 10, 20, ... but not step 100 (the epoch line's)
    assert [s for s, _ in lines] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert lines[0][1] == "epoch 1/2 | step 10/200 | loss 2.5000 | 26 img/s | ETA 31m40s"
    assert out.getvalue().count("\n") == 9


def test_progress_line__short_epochs_print_only_their_epoch_line(monkeypatch):
    monkeypatch.setattr(sys, "__stdout__", io.StringIO())
    now = [0.0]
    progress = ProgressLine(2, 100, batch_size=256, clock=lambda: now[0])
    printed = []
    for step in range(1, 101):
        now[0] = step * 0.1  # 10 s per epoch
        printed.append(progress.step_done(step, {"loss": 2.5}))
    assert printed == [None] * 100
