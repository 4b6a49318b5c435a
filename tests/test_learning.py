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
#: over DEMO_HPARAMS, kNN margin over random init). SupCon L_in measured +9.0 (seed 0) and +6.0
#: (seed 1) points. moco_v3, nnclr, triplet (2 x 2560) and instdisc (8 x 1280) beat random init
#: on seed 0 but not on seed 1 at such budgets, so they are not here (see issue #22).
NEW_METHODS = {
    "supcon": (2, 2560, {"variant": "in"}, 0.03),
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
