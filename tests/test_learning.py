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
#: images, or all the training images when fewer; seed 0, seed 1[, seed 2]): SupCon L_in 2 x 2560
#: +9.0, +6.0 points; triplet 3 x 5000 +8.5, +8.3; MoCo v3 3 x 5000 +5.5, +2.5; NNCLR (queue 512,
#: T 0.2) 16 x 1000 +10.3, +5.5, +5.9; InstDisc 16 x 1000 +13.1, +5.2, +9.1. NNCLR's and
#: InstDisc's positives come from a support set / memory bank that is only as good as the last
#: epoch's encoder, so they need many short epochs: at 3 x 5000 NNCLR gave +1.3, +0.1 (queue 4096)
#: and InstDisc +1.4, -4.1, and InstDisc's first epoch falls below random init on seed 1 at every
#: budget tried (drawing its negatives only from written bank entries did not change that: -2.5,
#: -11.9 at 8 x 2000 against -3.4, -12.3).
NEW_METHODS = {
    "supcon": (2, 2560, {"variant": "in"}, 0.03),
    "triplet": (3, 5000, {}, 0.04),
    "moco_v3": (3, 5000, {}, 0.015),
    "nnclr": (16, 1000, {"queue_size": 512, "temperature": 0.2}, 0.03),
    "instdisc": (16, 1000, {}, 0.03),
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
