"""One readable progress line per epoch: epoch, step, loss, kNN, images/s, ETA."""

import sys
import time


class ProgressLine:
    """Prints ``epoch 2/5 | step 78/195 | loss 4.1234 | knn 0.7012 | 812 img/s | ETA 1m32s``."""

    def __init__(self, epochs: int, steps_per_epoch: int, start_step: int = 0) -> None:
        self.epochs = epochs
        self.total_steps = epochs * steps_per_epoch
        self.started = time.perf_counter()
        self.first_step = start_step  # a resumed run's rate counts from where it resumed

    def epoch_done(self, epoch: int, step: int, metrics: dict[str, float]) -> str:
        elapsed = time.perf_counter() - self.started
        done = max(step - self.first_step, 1)
        eta = elapsed / done * (self.total_steps - step)
        parts = [
            f"epoch {epoch}/{self.epochs}",
            f"step {step}/{self.total_steps}",
            f"loss {metrics.get('train/loss', float('nan')):.4f}",
        ]
        if "eval/knn_top1" in metrics:
            parts.append(f"knn {metrics['eval/knn_top1']:.4f}")
        parts += [f"{metrics.get('data/images_per_s', 0.0):.0f} img/s", f"ETA {format_seconds(eta)}"]
        line = " | ".join(parts)
        # The real stdout: Ray Train V2 patches print() in workers and would echo it twice.
        sys.__stdout__.write(line + "\n")
        sys.__stdout__.flush()
        return line


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
