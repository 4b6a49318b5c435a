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
