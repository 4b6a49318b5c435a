"""Feature extraction, weighted kNN against a loop re-derivation, linear probe against sklearn."""

import math

import pytest
import torch
from torch import nn

from cl_core.evaluation import extract_features, knn_predict, knn_top1, linear_probe_top1


def _reference_knn(train, train_labels, test, num_classes, k, temperature):
    """InstDisc weighted kNN (arXiv 1805.01978, section 3.4), one test point at a time."""
    predictions = []
    for q in test.tolist():
        q_norm = math.sqrt(sum(x * x for x in q))
        sims = []
        for row, label in zip(train.tolist(), train_labels.tolist()):
            dot = sum(a * b for a, b in zip(q, row))
            sims.append((dot / (q_norm * math.sqrt(sum(x * x for x in row))), label))
        votes = [0.0] * num_classes
        for sim, label in sorted(sims, reverse=True)[:k]:
            votes[label] += math.exp(sim / temperature)
        predictions.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(predictions)


def _random_split(seed: int, n: int = 60, m: int = 25, d: int = 8, num_classes: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, d, generator=gen),
        torch.randint(num_classes, (n,), generator=gen),
        torch.randn(m, d, generator=gen),
        torch.randint(num_classes, (m,), generator=gen),
    )


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (7, 0.1), (20, 0.5)])
def test_knn_predict__matches_loop_reference(k, temperature):
    train, train_labels, test, _ = _random_split(0)
    got = knn_predict(train, train_labels, test, 4, k=k, temperature=temperature, batch_size=6)
    assert got.dtype == torch.int64 and got.shape == (25,)
    assert torch.equal(got, _reference_knn(train, train_labels, test, 4, k, temperature))


def test_knn_predict__k_larger_than_train_size_uses_all_neighbours():
    train, train_labels, test, _ = _random_split(1, n=9)
    got = knn_predict(train, train_labels, test, 4, k=200)
    assert torch.equal(got, _reference_knn(train, train_labels, test, 4, 9, 0.1))


def test_knn_top1__k1_on_the_train_set_is_perfect():
    train, train_labels, _, _ = _random_split(2)
    assert knn_top1(train, train_labels, train, train_labels, k=1) == 1.0


def test_knn_top1__is_the_accuracy_of_knn_predict():
    train, train_labels, test, test_labels = _random_split(3)
    predictions = knn_predict(train, train_labels, test, 4, k=5)
    expected = (predictions == test_labels).float().mean().item()
    assert knn_top1(train, train_labels, test, test_labels, k=5) == pytest.approx(expected)


def _classification_split():
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=3000,
        n_features=20,
        n_informative=10,
        n_redundant=4,
        n_classes=10,
        n_clusters_per_class=1,
        class_sep=1.0,
        random_state=0,
    )
    x = torch.tensor(x, dtype=torch.float32) * torch.linspace(0.1, 10.0, 20) + 3.0  # unequal scales
    y = torch.tensor(y)
    return x[:2000], y[:2000], x[2000:], y[2000:]


def test_linear_probe__within_one_point_of_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test = _classification_split()
    weight_decay = 1e-4
    ours = linear_probe_top1(x_train, y_train, x_test, y_test, weight_decay=weight_decay)
    scaler = StandardScaler().fit(x_train.numpy())
    clf = LogisticRegression(C=1.0 / (weight_decay * len(y_train)), max_iter=5000)
    clf.fit(scaler.transform(x_train.numpy()), y_train.numpy())
    reference = clf.score(scaler.transform(x_test.numpy()), y_test.numpy())
    assert 0.3 < reference < 0.95  # neither trivial nor separable
    assert abs(ours - reference) <= 0.01


def test_linear_probe__is_deterministic_for_a_seed():
    x_train, y_train, x_test, y_test = _classification_split()
    first = linear_probe_top1(x_train, y_train, x_test, y_test, epochs=20, seed=3, batch_size=512)
    second = linear_probe_top1(x_train, y_train, x_test, y_test, epochs=20, seed=3, batch_size=512)
    assert first == second


def _encoder() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


@pytest.mark.parametrize("training", [True, False])
def test_extract_features__restores_mode_and_returns_float32_rows(training):
    torch.manual_seed(0)
    encoder = _encoder().train(training)
    images = torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8)
    running_mean = encoder[1].running_mean.clone()
    features = extract_features(encoder, images, batch_size=4)
    assert features.shape == (11, 5) and features.dtype == torch.float32 and features.device.type == "cpu"
    assert encoder.training is training and encoder[1].training is training
    assert torch.equal(encoder[1].running_mean, running_mean)  # eval mode: BN statistics untouched
    with torch.no_grad():
        expected = encoder.eval()(images.float() / 255.0)
    torch.testing.assert_close(features, expected)


def test_extract_features__applies_the_given_transform():
    encoder = nn.Flatten()
    images = torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8)
    features = extract_features(encoder, images, transform=lambda x: x.float() - 128.0)
    torch.testing.assert_close(features, images.flatten(1).float() - 128.0)


def test_balanced_subset__draws_the_same_count_per_class_reproducibly():
    from cl_core.evaluation import balanced_subset

    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 1200, 1000])])
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    chosen = balanced_subset(labels, 0.1, seed=1)
    assert torch.bincount(labels[chosen]).tolist() == [75, 75, 75, 75]  # 10% of 3000 over 4 classes
    assert chosen.unique().numel() == chosen.numel() and torch.equal(chosen, chosen.sort().values)
    assert torch.equal(chosen, balanced_subset(labels, 0.1, seed=1))
    assert not torch.equal(chosen, balanced_subset(labels, 0.1, seed=2))
    assert torch.bincount(labels[balanced_subset(labels, 0.001)]).tolist() == [1, 1, 1, 1]  # at least 1
    assert torch.bincount(labels[balanced_subset(labels, 1.0)]).tolist() == [500, 300, 750, 750]  # capped
    with pytest.raises(ValueError, match="fraction"):
        balanced_subset(labels, 0.0)


def test_linear_probe__early_stopped_head_matches_sklearn_on_the_same_fit_split():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from cl_core.evaluation import balanced_subset, linear_probe

    x_train, y_train, x_test, y_test = _classification_split()
    result = linear_probe(x_train, y_train, x_test, y_test, val_fraction=0.2, seed=0)
    assert result.weight_decay in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1) and 10 <= result.iterations <= 200
    val = torch.zeros(len(y_train), dtype=torch.bool)
    val[balanced_subset(y_train, 0.2, 0)] = True
    scaler = StandardScaler().fit(x_train[~val].numpy())
    clf = LogisticRegression(C=1.0 / (result.weight_decay * int((~val).sum())), max_iter=5000)
    clf.fit(scaler.transform(x_train[~val].numpy()), y_train[~val].numpy())
    reference = clf.score(scaler.transform(x_test.numpy()), y_test.numpy())
    assert 0.3 < reference < 0.95
    assert result.top1 >= reference - 0.01  # early stopping may only help on held-out data
    assert (
        abs(result.val_top1 - clf.score(scaler.transform(x_train[val].numpy()), y_train[val].numpy())) <= 0.03
    )


def test_linear_probe__test_labels_take_no_part_in_the_choice():
    from cl_core.evaluation import linear_probe

    x_train, y_train, x_test, y_test = _classification_split()
    first = linear_probe(x_train, y_train, x_test, y_test, max_iterations=60)
    shuffled = linear_probe(x_train, y_train, x_test, y_test.flip(0), max_iterations=60)
    assert (first.weight_decay, first.iterations, first.val_top1) == (
        shuffled.weight_decay,
        shuffled.iterations,
        shuffled.val_top1,
    )
    assert first.top1 != shuffled.top1


def _pattern_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: bright top half, class 1: bright bottom half, class 2: bright left half, + noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 100, (n, 1, 12, 12), generator=gen)
    images[labels == 0, :, :6] += 150
    images[labels == 1, :, 6:] += 150
    images[labels == 2, :, :, :6] += 150
    return images.clamp(0, 255).to(torch.uint8), labels


def test_fine_tune__learns_a_few_labels_and_leaves_the_encoder_alone():
    from cl_core.evaluation import FineTuneSettings, fine_tune_top1

    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    )
    encoder.output_dim = 32
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train_images, train_labels = _pattern_images(30, 0)
    test_images, test_labels = _pattern_images(90, 1)
    settings = FineTuneSettings(epochs=1, min_steps=60, batch_size=10, lr=0.05)
    top1 = fine_tune_top1(
        encoder,
        train_images,
        train_labels,
        test_images,
        test_labels,
        transform=lambda x: x.float() / 255.0,
        settings=settings,
    )
    assert top1 >= 0.9  # chance: 1/3
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    again = fine_tune_top1(
        encoder,
        train_images,
        train_labels,
        test_images,
        test_labels,
        transform=lambda x: x.float() / 255.0,
        settings=settings,
    )
    assert again == top1  # seeded
