"""The epoch a run's Train workers are on, where the Data tasks can read it: a small named actor.

Ray Data executes the training dataset anew for every epoch (each Train worker's
``iter_torch_batches`` call; the split coordinator starts an execution only once every worker
has asked for it), but a task of that execution cannot know which epoch it serves. The workers
``set_epoch`` before they iterate; the streamed reader's tasks ``current_epoch`` and permute the
corpus with (``train.seed``, epoch): a fresh order each epoch, the same order again on resume.
"""

import uuid

import ray

NAMESPACE = "ssl-pipeline"
_HANDLES: dict[str, object] = {}


@ray.remote(num_cpus=0)
class EpochClock:
    """Holds one integer: the epoch the Train workers are about to iterate."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def get(self) -> int:
        return self.epoch


def start_clock() -> tuple[str, object]:
    """A new clock (Ray: a named actor in ``NAMESPACE``); returns its name and the handle, which
    the caller keeps for as long as the run needs the clock (the actor dies with it)."""
    name = f"epoch-clock-{uuid.uuid4().hex[:12]}"
    handle = EpochClock.options(name=name, namespace=NAMESPACE).remote()
    ray.get(handle.get.remote())  # started and registered before any task looks it up
    return name, handle


def _clock(name: str):
    if name not in _HANDLES:
        _HANDLES[name] = ray.get_actor(name, namespace=NAMESPACE)  # Ray: the driver's clock
    return _HANDLES[name]


def set_epoch(name: str, epoch: int) -> None:
    ray.get(_clock(name).set.remote(epoch))


def current_epoch(name: str) -> int:
    return int(ray.get(_clock(name).get.remote()))
