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
    return (torch.randn(n, d, generator=gen), torch.randint(num_classes, (n,), generator=gen),
            torch.randn(m, d, generator=gen), torch.randint(num_classes, (m,), generator=gen))  # fmt: skip


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
        n_samples=3000, n_features=20, n_informative=10, n_redundant=4,
        n_classes=10, n_clusters_per_class=1, class_sep=1.0, random_state=0,
    )  # fmt: skip
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
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 5))  # fmt: skip


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
