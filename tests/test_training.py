"""The single-process trainer: schedules reach the optimizer, steps are counted, a NaN stops
the run at its step before touching the weights, runs are reproducible."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_core import build_backbone, build_method
from cl_core.optim import build_optimizer, weight_decay_schedule
from cl_core.training import NonFiniteLossError, PretrainSettings, StepSchedules, pretrain, train_steps
from cl_core.transforms import build_recipe


def tiny_simclr() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method("simclr", build_backbone("tiny_cnn", in_channels=1), hidden_dim=16, projection_dim=8)


def batches(n: int, seed: int = 0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(4, 1, 12, 12, generator=g) for _ in range(2)] for _ in range(n)]


def test_train_steps__applies_the_lr_schedule_and_counts_global_steps():
    model = tiny_simclr()
    optimizer = torch.optim.SGD(model.parameters(), lr=123.0)
    seen: list[float] = []
    schedules = StepSchedules(lr=np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    metrics = train_steps(
        model,
        optimizer,
        batches(3),
        lambda views: (views, None),
        schedules,
        start_step=1,
        on_step=lambda step, m: seen.append(optimizer.param_groups[0]["lr"]),
    )
    assert seen == [0.2, 0.3, 0.4]
    assert metrics["steps"] == 3 and metrics["last_step"] == 4
    assert float(model.progress) == pytest.approx(4 / 5)
    assert 0.0 <= metrics["wait_fraction"] <= 1.0 and metrics["images_per_s"] > 0


def test_train_steps__writes_the_weight_decay_schedule_into_the_decaying_groups_only():
    model = tiny_simclr()
    optimizer = build_optimizer(model, "adamw", 1e-3, weight_decay=0.04)
    schedules = StepSchedules(lr=np.full(3, 1e-3), weight_decay=weight_decay_schedule(0.04, 0.4, 3))
    seen: list[tuple[float, float]] = []
    metrics = train_steps(
        model,
        optimizer,
        batches(3),
        lambda views: (views, None),
        schedules,
        start_step=0,
        on_step=lambda step, m: seen.append(tuple(g["weight_decay"] for g in optimizer.param_groups)),
    )
    assert seen == [(0.04, 0.0), (pytest.approx(0.22), 0.0), (0.4, 0.0)]
    assert metrics["weight_decay"] == pytest.approx((0.04 + 0.22 + 0.4) / 3)


def test_train_steps__stops_at_the_end_of_the_schedule():
    model = tiny_simclr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = train_steps(
        model, optimizer, batches(5), lambda v: (v, None), StepSchedules(np.full(2, 0.1)), 0
    )
    assert metrics["steps"] == 2


def test_train_steps__non_finite_loss_names_the_step_and_leaves_weights_untouched():
    model = tiny_simclr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = batches(4)
    data[2][0] = torch.full_like(data[2][0], float("nan"))
    snapshot: dict[str, torch.Tensor] = {}

    def remember(step: int, metrics: dict[str, float]) -> None:
        snapshot.update({k: v.detach().clone() for k, v in model.named_parameters()})

    with pytest.raises(NonFiniteLossError, match="step 2 .*simclr") as info:
        train_steps(
            model, optimizer, data, lambda v: (v, None), StepSchedules(np.full(4, 0.1)), 0, on_step=remember
        )
    assert info.value.step == 2 and "loss" in info.value.last_metrics
    again = pickle.loads(pickle.dumps(info.value))  # how Ray carries it from a worker
    assert (again.step, again.method, again.last_metrics, str(again)) == (
        2,
        "simclr",
        info.value.last_metrics,
        str(info.value),
    )
    # Parameters are untouched (BN running statistics did see the bad batch: resume from a
    # checkpoint to roll those back).
    for key, value in model.named_parameters():
        assert torch.equal(value, snapshot[key]), key


def test_pretrain__same_seed_gives_the_same_history():
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    recipe = build_recipe("simclr", size=12, blur_prob=0.0)
    settings = PretrainSettings(epochs=2, batch_size=16, seed=3)
    runs = [pretrain(tiny_simclr(), images, recipe, settings, (0.5,), (0.25,)) for _ in range(2)]
    assert [m["loss"] for m in runs[0]] == [m["loss"] for m in runs[1]]
    assert len(runs[0]) == 2 and runs[0][-1]["last_step"] == 8


def tiny_moco(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    backbone = build_backbone("tiny_cnn", in_channels=1)
    return build_method("moco", backbone, hidden_dim=16, projection_dim=8, queue_size=32, momentum=0.9)


class Killed(Exception):
    pass


def run_until_killed_after(epoch: int, method, images, recipe, settings, path: Path) -> None:
    """``pretrain`` with its epoch checkpoint at ``path``, killed once ``epoch`` has ended."""

    def die(metrics):
        if metrics["epoch"] == epoch:
            raise Killed

    with pytest.raises(Killed):
        pretrain(method, images, recipe, settings, (0.5,), (0.25,), on_epoch_end=die, checkpoint=path)


def test_pretrain__resumed_from_its_epoch_checkpoint_ends_as_an_unbroken_run(tmp_path):
    # MoCo: momentum encoder, queue and its pointer are state too; the resumed model starts
    # from other weights, so everything it ends with must come from the checkpoint.
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    recipe = build_recipe("simclr", size=12, blur_prob=0.0)
    settings = PretrainSettings(epochs=3, batch_size=16, seed=3, base_lr=0.5)
    unbroken = tiny_moco(0)
    expected = pretrain(unbroken, images, recipe, settings, (0.5,), (0.25,))

    path = tmp_path / "run.pt"
    run_until_killed_after(2, tiny_moco(0), images, recipe, settings, path)
    torch.manual_seed(99)  # the global generator is restored from the checkpoint too
    seen = []
    resumed = tiny_moco(1)
    history = pretrain(
        resumed, images, recipe, settings, (0.5,), (0.25,), on_epoch_end=seen.append, checkpoint=path
    )
    assert [m["epoch"] for m in seen] == [3.0]
    assert [m["loss"] for m in history] == [m["loss"] for m in expected]
    want, got = unbroken.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert int(got["queue.filled"]) > 0  # the queue trained: its state is not the initial one


def test_pretrain__channels_last_trains_the_same_and_resumes_a_contiguous_checkpoint(tmp_path):
    # The memory format changes the speed, not the result: a contiguous run killed after its
    # first epoch resumes channels-last (its weights then channels-last) and ends as the unbroken
    # contiguous run does, up to float rounding.
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    recipe = build_recipe("simclr", size=12, blur_prob=0.0)
    contiguous = PretrainSettings(epochs=3, batch_size=16, seed=3, base_lr=0.5, channels_last=False)
    unbroken = tiny_simclr()
    expected = pretrain(unbroken, images, recipe, contiguous, (0.5,), (0.25,))
    assert unbroken.backbone.features[3].weight.is_contiguous()

    path = tmp_path / "run.pt"
    run_until_killed_after(1, tiny_simclr(), images, recipe, contiguous, path)
    resumed = tiny_simclr()
    last = PretrainSettings(epochs=3, batch_size=16, seed=3, base_lr=0.5, channels_last=True)
    history = pretrain(resumed, images, recipe, last, (0.5,), (0.25,), checkpoint=path)
    conv = resumed.backbone.features[3].weight  # (64, 32, 3, 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert len(history) == 3
    np.testing.assert_allclose([m["loss"] for m in history], [m["loss"] for m in expected], rtol=1e-4)
    for key, want in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], want, rtol=1e-3, atol=1e-4, msg=key)


def test_pretrain__refuses_a_checkpoint_from_other_settings(tmp_path):
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    recipe = build_recipe("simclr", size=12, blur_prob=0.0)
    path = tmp_path / "run.pt"

    def run(n: int, epochs: int) -> None:
        settings = PretrainSettings(epochs=epochs, batch_size=16)
        pretrain(tiny_simclr(), images[:n], recipe, settings, (0.5,), (0.25,), checkpoint=path)

    run(64, 1)
    with pytest.raises(ValueError, match="epochs"):
        run(64, 2)
    with pytest.raises(ValueError, match="dataset_size"):
        run(48, 1)


def test_pretrain__supcon_without_labels_fails_before_training():
    torch.manual_seed(0)
    method = build_method(
        "supcon", build_backbone("tiny_cnn", in_channels=1), hidden_dim=16, projection_dim=8
    )
    images = torch.zeros(32, 1, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="needs labels"):
        pretrain(
            method,
            images,
            build_recipe("simclr", size=12),
            PretrainSettings(epochs=1, batch_size=8),
            (0.5,),
            (0.25,),
        )


def test_nan_injector__poisons_exactly_the_chosen_global_step_once():
    from pipelines.train.worker import NanInjector

    injector = NanInjector(5)
    model, optimizer = tiny_simclr(), None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    prepare = injector.wrap(lambda v: (v, None), start_step=3)  # steps 3, 4, 5, ...
    with pytest.raises(NonFiniteLossError, match="step 5 "):
        train_steps(model, optimizer, batches(4), prepare, StepSchedules(np.full(10, 0.1)), 3)
    assert injector.fired
    again = injector.wrap(lambda v: (v, None), start_step=3)  # fired: the same steps now train
    assert (
        train_steps(model, optimizer, batches(4), again, StepSchedules(np.full(10, 0.1)), 3)["last_step"] == 7
    )
    assert NanInjector(None).wrap(len, 0) is len


def test_roll_back__restores_weights_optimizer_queue_and_rng_from_the_snapshot():
    from pipelines.train.worker import _roll_back, _snapshot

    torch.manual_seed(0)
    model = build_method(
        "moco", build_backbone("tiny_cnn", in_channels=1), hidden_dim=16, projection_dim=8, queue_size=16
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedules = StepSchedules(np.full(8, 0.1))
    train_steps(model, optimizer, batches(2), lambda v: (v, None), schedules, 0)
    snapshot = _snapshot(model, optimizer, 2, 1)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    trained = [p for p in model.parameters() if p in optimizer.state]  # not the momentum key encoder
    want_momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in trained]
    assert trained
    want_draw = torch.rand(3)
    train_steps(model, optimizer, batches(3, seed=1), lambda v: (v, None), schedules, 2)  # moves on
    assert not torch.equal(model.state_dict()["queue.values"], want["queue.values"])
    assert _roll_back(model, optimizer, snapshot, torch.device("cpu")) == (2, 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, want[key]), key
    for p, m in zip(trained, want_momentum):
        assert torch.equal(optimizer.state[p]["momentum_buffer"], m)
    assert torch.equal(torch.rand(3), want_draw)


def test_rollback__goes_back_to_the_last_kept_state_at_a_lower_rate_at_most_max_rollbacks_times():
    from pipelines.config import load_config
    from pipelines.train.worker import _Rollback

    config = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml",
        ["train.on_non_finite=rollback", "train.max_rollbacks=2", "train.rollback_lr_factor=0.5"],
    )
    model = tiny_simclr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedules = StepSchedules(np.full(10, 0.1))
    rollback = _Rollback(config, model, optimizer, step=0, epoch=0)
    train_steps(model, optimizer, batches(2), lambda v: (v, None), schedules, 0)
    rollback.keep(model, optimizer, step=2, epoch=1)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    error, cpu = NonFiniteLossError(step=3, method="simclr", last_metrics={}), torch.device("cpu")
    for count in (1, 2):
        train_steps(model, optimizer, batches(1, seed=count), lambda v: (v, None), schedules, 2)
        step, epoch, schedules = rollback.recover(error, model, optimizer, cpu, schedules, None)
        assert (step, epoch) == (2, 1) and np.allclose(schedules.lr, 0.1 * 0.5**count)
        assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())
    assert rollback.recover(error, model, optimizer, cpu, schedules, None) is None  # limit
    off = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")  # on_non_finite: stop
    stops = _Rollback(off, model, optimizer, 0, 0)
    assert stops.recover(error, model, optimizer, cpu, schedules, None) is None
