"""Learning on real data: SimCLR and BYOL with the tiny CNN on a Fashion-MNIST subset beat the
same backbone at random init in kNN top-1 on the test split (the README's figures)."""

import pytest

from cl_core.demo import run_demo


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_pretraining__beats_random_init_knn_on_fashion_mnist(method):
    result = run_demo(
        method, epochs=3, train_size=10000, eval_train_size=5000, eval_test_size=2000, verbose=False
    )
    final = result.history[-1]["knn_top1"]
    assert final >= result.random_init_knn + 0.025, (result.random_init_knn, final)
    losses = [m["loss"] for m in result.history]
    assert losses[-1] < losses[0]


#: Issue #22's learning tests that hold on two seeds: (epochs, training images, hyper-parameters
#: over DEMO_HPARAMS, kNN margin over random init). Measured (kNN with 2000 train / 1000 test
#: images; seed 0, seed 1): SupCon L_in 2 x 2560 +9.0, +6.0 points; triplet 3 x 5000 +8.5, +8.3;
#: MoCo v3 3 x 5000 +5.5, +2.5. Not here, as they do not beat random init on both seeds at such
#: budgets: nnclr (3 x 5000: +1.3, +0.1; queue 1024 at lr 0.12: +2.8, -3.8) and instdisc (3 x 5000:
#: +1.4, -4.1; 8 x 2000 at lr 0.01: +2.8, -0.3): their positives come from a support set / memory
#: bank that is only as good as the previous epoch's encoder (see issue #22). NNCLR with a smaller,
#: fresher support set and T 0.2 (3 x 5000) is closer but still not robust: queue 512 +3.8, +1.4;
#: queue 256 +3.4, +1.0.
NEW_METHODS = {
    "supcon": (2, 2560, {"variant": "in"}, 0.03),
    "triplet": (3, 5000, {}, 0.04),
    "moco_v3": (3, 5000, {}, 0.015),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(NEW_METHODS))
def test_new_method__beats_random_init_knn_on_a_fashion_mnist_subset(method):
    epochs, train_size, hparams, margin = NEW_METHODS[method]
    result = run_demo(
        method,
        epochs=epochs,
        train_size=train_size,
        eval_train_size=2000,
        eval_test_size=1000,
        verbose=False,
        hparams=hparams,
    )
    final = result.history[-1]["knn_top1"]
    assert final >= result.random_init_knn + margin, (result.random_init_knn, final)
