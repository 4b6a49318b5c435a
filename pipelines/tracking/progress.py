"""Readable progress lines: one per epoch (epoch, step, loss, kNN, images/s, ETA) and, within a
long epoch, one every tenth of it (at most one per ``every_seconds``)."""

import sys
import time
from collections.abc import Callable


class ProgressLine:
    """Prints ``epoch 2/5 | step 78/195 | loss 4.1234 | knn 0.7012 | 812 img/s | ETA 1m32s``.

    Args:
        epochs: epochs of the schedule.
        steps_per_epoch: optimizer steps per epoch.
        start_step: where the run starts (a resumed run's rate counts from there).
        batch_size: images per step (global), for the within-epoch rate.
        every_seconds: a within-epoch line comes at most this often, so short epochs print
            only their epoch line.
        clock: seconds (a test's fake clock).
    """

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        start_step: int = 0,
        batch_size: int = 0,
        every_seconds: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.clock, self.every_seconds, self.batch_size = clock, every_seconds, batch_size
        self.started = self.last_time = clock()
        self.first_step = self.last_step = start_step
        self.every_steps = max(1, steps_per_epoch // 10)

    def _eta(self, now: float, step: int) -> str:
        done = max(step - self.first_step, 1)
        return f"ETA {format_seconds((now - self.started) / done * (self.total_steps - step))}"

    def step_done(self, step: int, metrics: dict[str, float]) -> str | None:
        """After optimizer step ``step`` (global, 1-based count of steps done): a line every
        tenth of an epoch once ``every_seconds`` have passed since the last line, else None."""
        now = self.clock()
        if step % self.every_steps or now - self.last_time < self.every_seconds:
            return None
        if step % self.steps_per_epoch == 0:  # the epoch's own line follows
            return None
        rate = (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
        parts = [
            f"epoch {step // self.steps_per_epoch + 1}/{self.epochs}",
            f"step {step}/{self.total_steps}",
            f"loss {metrics.get('loss', float('nan')):.4f}",
            f"{rate:.0f} img/s",
            self._eta(now, step),
        ]
        return self._print(" | ".join(parts), now, step)

    def epoch_done(self, epoch: int, step: int, metrics: dict[str, float]) -> str:
        now = self.clock()
        parts = [
            f"epoch {epoch}/{self.epochs}",
            f"step {step}/{self.total_steps}",
            f"loss {metrics.get('train/loss', float('nan')):.4f}",
        ]
        if "eval/knn_top1" in metrics:
            parts.append(f"knn {metrics['eval/knn_top1']:.4f}")
        parts += [f"{metrics.get('data/images_per_s', 0.0):.0f} img/s", self._eta(now, step)]
        return self._print(" | ".join(parts), now, step)

    def _print(self, line: str, now: float, step: int) -> str:
        self.last_time, self.last_step = now, step
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
