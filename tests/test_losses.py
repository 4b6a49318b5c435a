"""Each loss against a slow, loop-based re-derivation from its paper's equation (float64, plain
Python maths), plus the properties the papers promise and "the loss falls under SGD"."""

import math

import pytest
import torch
from torch.nn import functional as F

from cl_core import build_backbone, build_method
from cl_core.losses import (
    DINOLoss,
    barlow_twins_loss,
    info_nce,
    mine_negatives,
    mined_triplet_loss,
    moco_loss,
    moco_v3_loss,
    negative_cosine,
    nnclr_loss,
    sinkhorn_knopp,
    swav_loss,
    triplet_loss,
    vicreg_loss,
)
from cl_core.modules import MemoryBank

RTOL = 1e-5


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rows(x: torch.Tensor) -> list[list[float]]:
    return x.detach().tolist()


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def unit(u: list[float]) -> list[float]:
    norm = math.sqrt(dot(u, u))
    return [a / norm for a in u]


def log_softmax(u: list[float]) -> list[float]:
    top = max(u)
    log_z = top + math.log(sum(math.exp(a - top) for a in u))
    return [a - log_z for a in u]


def column_stats(x: list[list[float]], unbiased: bool) -> tuple[list[float], list[float]]:
    n, d = len(x), len(x[0])
    mean = [sum(x[r][j] for r in range(n)) / n for j in range(d)]
    var = [sum((x[r][j] - mean[j]) ** 2 for r in range(n)) / (n - unbiased) for j in range(d)]
    return mean, var


def assert_close(actual: torch.Tensor | float, expected: float, rtol: float = RTOL) -> None:
    assert float(torch.as_tensor(actual).detach()) == pytest.approx(expected, rel=rtol, abs=1e-12)


# ----------------------------------------------------------------------------- references


def ref_info_nce(z: torch.Tensor, ids: list[int], temperature: float) -> float:
    """SupCon L_out, eq. 2 of arXiv 2004.11362, anchors without positives skipped."""
    zs = [unit(u) for u in rows(z)]
    losses = []
    for i in range(len(zs)):
        positives = [p for p in range(len(zs)) if p != i and ids[p] == ids[i]]
        if not positives:
            continue
        denominator = sum(math.exp(dot(zs[i], zs[a]) / temperature) for a in range(len(zs)) if a != i)
        terms = [-math.log(math.exp(dot(zs[i], zs[p]) / temperature) / denominator) for p in positives]
        losses.append(sum(terms) / len(terms))
    return sum(losses) / len(losses)


def ref_moco(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> float:
    qs, ks, negatives = [unit(u) for u in rows(q)], [unit(u) for u in rows(k)], rows(queue)
    losses = []
    for qi, ki in zip(qs, ks):
        pos = math.exp(dot(qi, ki) / temperature)
        neg = sum(math.exp(dot(qi, kj) / temperature) for kj in negatives)
        losses.append(-math.log(pos / (pos + neg)))
    return sum(losses) / len(losses)


def ref_barlow(z_a: torch.Tensor, z_b: torch.Tensor, lam: float) -> float:
    a, b = rows(z_a), rows(z_b)
    n, d = len(a), len(a[0])
    (mean_a, var_a), (mean_b, var_b) = column_stats(a, False), column_stats(b, False)
    sa = [[(a[r][j] - mean_a[j]) / math.sqrt(var_a[j] + 1e-5) for j in range(d)] for r in range(n)]
    sb = [[(b[r][j] - mean_b[j]) / math.sqrt(var_b[j] + 1e-5) for j in range(d)] for r in range(n)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(sa[r][i] * sb[r][j] for r in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lam * c_ij**2
    return loss


def ref_vicreg(z_a: torch.Tensor, z_b: torch.Tensor, lam: float, mu: float, nu: float, eps: float) -> float:
    a, b = rows(z_a), rows(z_b)
    n, d = len(a), len(a[0])
    invariance = sum((a[r][j] - b[r][j]) ** 2 for r in range(n) for j in range(d)) / (n * d)
    variance, covariance = 0.0, 0.0
    for x in (a, b):
        mean, var = column_stats(x, True)
        variance += sum(max(0.0, 1 - math.sqrt(v + eps)) for v in var) / d / 2
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((x[r][i] - mean[i]) * (x[r][j] - mean[j]) for r in range(n)) / (n - 1)
                    covariance += cov**2 / d
    return lam * invariance + mu * variance + nu * covariance


def ref_sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> list[list[float]]:
    """SwAV's distributed_sinkhorn, one element at a time; returns (b, K)."""
    s = rows(scores)
    b, k = len(s), len(s[0])
    q = [[math.exp(s[c][r] / epsilon) for c in range(b)] for r in range(k)]  # (K, b)
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        q = [[v / sum(row) / k for v in row] for row in q]
        col = [sum(q[r][c] for r in range(k)) for c in range(b)]
        q = [[q[r][c] / col[c] / b for c in range(b)] for r in range(k)]
    return [[q[r][c] * b for r in range(k)] for c in range(b)]


def ref_cross_entropy(targets: list[list[float]], logits: list[list[float]], temperature: float) -> float:
    """Mean over the batch of -sum_k target_k log softmax(logits / T)_k."""
    losses = []
    for t, x in zip(targets, logits):
        log_p = log_softmax([v / temperature for v in x])
        losses.append(-sum(tk * lk for tk, lk in zip(t, log_p)))
    return sum(losses) / len(losses)


def ref_swav(scores: list[torch.Tensor], num_assign: int, temp: float, eps: float, iters: int) -> float:
    total = 0.0
    for i in range(num_assign):
        q = ref_sinkhorn(scores[i], eps, iters)
        others = [v for v in range(len(scores)) if v != i]
        total += sum(ref_cross_entropy(q, rows(scores[v]), temp) for v in others) / len(others)
    return total / num_assign


def ref_dino(
    student: list[torch.Tensor], teacher: list[torch.Tensor], center: list[float], ts: float, tt: float
) -> float:
    losses = []
    for i, t in enumerate(teacher):
        centred = [[(v - c) / tt for v, c in zip(row, center)] for row in rows(t)]
        probs = [[math.exp(p) for p in log_softmax(row)] for row in centred]
        for v, s in enumerate(student):
            if v != i:
                losses.append(ref_cross_entropy(probs, rows(s), ts))
    return sum(losses) / len(losses)


def ref_triplet(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float) -> float:
    losses = []
    for ai, pi, ni in zip(rows(a), rows(p), rows(n)):
        d_pos = math.sqrt(sum((x - y) ** 2 for x, y in zip(ai, pi)))
        d_neg = math.sqrt(sum((x - y) ** 2 for x, y in zip(ai, ni)))
        losses.append(max(0.0, d_pos - d_neg + margin))
    return sum(losses) / len(losses)


def ref_supcon_in(z: torch.Tensor, ids: list[int], temperature: float) -> float:
    """SupCon L_in, eq. 3 of arXiv 2004.11362: the mean over positives inside the log."""
    zs = [unit(u) for u in rows(z)]
    losses = []
    for i in range(len(zs)):
        positives = [p for p in range(len(zs)) if p != i and ids[p] == ids[i]]
        if not positives:
            continue
        denominator = sum(math.exp(dot(zs[i], zs[a]) / temperature) for a in range(len(zs)) if a != i)
        mean_prob = sum(math.exp(dot(zs[i], zs[p]) / temperature) / denominator for p in positives)
        losses.append(-math.log(mean_prob / len(positives)))
    return sum(losses) / len(losses)


def ref_nnclr(z: torch.Tensor, p: torch.Tensor, support: torch.Tensor, temperature: float) -> float:
    """NNCLR eq. 2 of arXiv 2104.14548: NN(z_i) by cosine in the support set, p of the other view."""
    qs, ps = [unit(u) for u in rows(support)], [unit(u) for u in rows(p)]
    losses = []
    for i, zi in enumerate(rows(z)):
        zi = unit(zi)
        nn = max(qs, key=lambda q: dot(zi, q))
        logits = [dot(nn, pk) / temperature for pk in ps]
        losses.append(-log_softmax(logits)[i])
    return sum(losses) / len(losses)


def ref_moco_v3(q: torch.Tensor, k: torch.Tensor, temperature: float) -> float:
    """MoCo v3 Algorithm 1 (arXiv 2104.02057): CrossEntropy(q k^T / tau, diagonal) * 2 tau."""
    qs, ks = [unit(u) for u in rows(q)], [unit(u) for u in rows(k)]
    losses = [-log_softmax([dot(qi, kj) / temperature for kj in ks])[i] for i, qi in enumerate(qs)]
    return sum(losses) / len(losses) * 2 * temperature


def ref_mined_triplet(
    z: torch.Tensor, ids: list[int], positive: list[int], margin: float, mining: str
) -> float:
    """FaceNet eq. 1-2 (arXiv 1503.03832) with the negative mined per anchor: the nearest ("hard"),
    or the nearest beyond the positive, else the farthest ("semihard", TF Addons' fallback)."""
    x = rows(z)

    def dist(a: int, b: int) -> float:
        return math.sqrt(sum((u - v) ** 2 for u, v in zip(x[a], x[b])))

    losses = []
    for a in range(len(x)):
        d_pos = dist(a, positive[a])
        negatives = [n for n in range(len(x)) if ids[n] != ids[a]]
        beyond = [n for n in negatives if dist(a, n) > d_pos]
        if mining == "hard":
            neg = min(negatives, key=lambda n: dist(a, n))
        elif beyond:
            neg = min(beyond, key=lambda n: dist(a, n))
        else:
            neg = max(negatives, key=lambda n: dist(a, n))
        losses.append(max(0.0, d_pos - dist(a, neg) + margin))
    return sum(losses) / len(losses)


def simclr_ids(b: int) -> torch.Tensor:
    return torch.cat([torch.arange(b), torch.arange(b)])


# ----------------------------------------------------------------------------- info_nce


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5, 1.0])
def test_info_nce__matches_loop_reference_at_each_temperature(temperature: float) -> None:
    z, ids = randn(10, 6), simclr_ids(5)
    assert_close(info_nce(z, ids, temperature), ref_info_nce(z, ids.tolist(), temperature))


def test_info_nce__supcon_with_labels_matches_loop_reference() -> None:
    z, labels = randn(12, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 3, 3, 2])
    assert_close(info_nce(z, labels, 0.1), ref_info_nce(z, labels.tolist(), 0.1))


def test_info_nce__excludes_anchors_without_positives_from_the_mean() -> None:
    z, labels = randn(7, 5), torch.tensor([0, 0, 1, 1, 2, 3, 4])
    expected = ref_info_nce(z[:4], labels[:4].tolist(), 0.1)  # singletons only enlarge denominators
    assert float(info_nce(z, labels, 0.1)) != pytest.approx(expected)
    assert_close(info_nce(z, labels, 0.1), ref_info_nce(z, labels.tolist(), 0.1))


def test_info_nce__raises_when_no_anchor_has_a_positive() -> None:
    with pytest.raises(ValueError, match="no anchor has a positive"):
        info_nce(randn(4, 3), torch.arange(4))


def test_info_nce__simclr_ids_equal_a_direct_nt_xent() -> None:
    b, temperature = 6, 0.2
    z = F.normalize(randn(2 * b, 8), dim=1)
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))  # (2b, 2b)
    targets = (torch.arange(2 * b) + b) % (2 * b)  # view 0 <-> view 1 of the same sample
    nt_xent = F.cross_entropy(sim, targets)
    torch.testing.assert_close(info_nce(z, simclr_ids(b), temperature), nt_xent)


def test_info_nce__is_invariant_to_a_consistent_permutation_of_rows() -> None:
    z, ids, perm = randn(10, 4), simclr_ids(5), torch.randperm(10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(info_nce(z[perm], ids[perm]), info_nce(z, ids))


def test_info_nce__is_invariant_to_scaling_the_embeddings() -> None:
    z, ids = randn(8, 4), simclr_ids(4)
    torch.testing.assert_close(info_nce(3.7 * z, ids), info_nce(z, ids))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_info_nce__supcon_in_matches_loop_reference(temperature: float) -> None:
    z, labels = randn(12, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 3, 4, 2])
    actual = info_nce(z, labels, temperature, variant="in")
    assert_close(actual, ref_supcon_in(z, labels.tolist(), temperature))


def test_info_nce__supcon_in_is_at_most_out_and_equal_with_one_positive_each() -> None:
    z, labels = randn(12, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 3, 3, 2])
    assert float(info_nce(z, labels, 0.1, variant="in")) < float(info_nce(z, labels, 0.1, variant="out"))
    ids = simclr_ids(6)
    torch.testing.assert_close(info_nce(z, ids, 0.1, variant="in"), info_nce(z, ids, 0.1, variant="out"))


def test_info_nce__rejects_an_unknown_variant() -> None:
    with pytest.raises(ValueError, match="variant"):
        info_nce(randn(4, 3), simclr_ids(2), variant="mid")


# ----------------------------------------------------------------------------- moco


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_moco_loss__matches_loop_reference(temperature: float) -> None:
    q, k, queue = randn(5, 6, seed=0), randn(5, 6, seed=1), F.normalize(randn(11, 6, seed=2), dim=1)
    assert_close(moco_loss(q, k, queue, temperature), ref_moco(q, k, queue, temperature))


def test_moco_loss__sends_no_gradient_into_keys_or_queue() -> None:
    q, k = randn(4, 6, seed=0).requires_grad_(), randn(4, 6, seed=1).requires_grad_()
    queue = F.normalize(randn(9, 6, seed=2), dim=1).requires_grad_()
    moco_loss(q, k, queue).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_moco_loss__falls_towards_zero_as_temperature_drops_when_the_key_is_nearest() -> None:
    k = F.normalize(randn(4, 6, seed=1), dim=1)
    q, queue = k + 0.01 * randn(4, 6, seed=3), -k.repeat(3, 1)  # negatives are far from every query
    losses = [float(moco_loss(q, k, queue, t)) for t in (1.0, 0.5, 0.2, 0.05)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_moco_v3_loss__matches_loop_reference(temperature: float) -> None:
    q, k = randn(6, 5, seed=0), randn(6, 5, seed=1)
    assert_close(moco_v3_loss(q, k, temperature), ref_moco_v3(q, k, temperature))


def test_moco_v3_loss__sends_no_gradient_into_the_keys() -> None:
    q, k = randn(4, 6, seed=0).requires_grad_(), randn(4, 6, seed=1).requires_grad_()
    moco_v3_loss(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0 and k.grad is None


def test_moco_v3_loss__is_2_tau_times_the_plain_cross_entropy() -> None:
    q, k, t = randn(5, 4, seed=0), randn(5, 4, seed=1), 0.3
    plain = F.cross_entropy(F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / t, torch.arange(5))
    torch.testing.assert_close(moco_v3_loss(q, k, t), 2 * t * plain)


# ----------------------------------------------------------------------------- nnclr


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nnclr_loss__matches_loop_reference(temperature: float) -> None:
    z, p, support = randn(5, 6, seed=0), randn(5, 6, seed=1), randn(13, 6, seed=2)
    assert_close(nnclr_loss(z, p, support, temperature), ref_nnclr(z, p, support, temperature))


def test_nnclr_loss__gradient_reaches_the_predictions_only() -> None:
    z, p = randn(4, 6, seed=0).requires_grad_(), randn(4, 6, seed=1).requires_grad_()
    support = randn(9, 6, seed=2).requires_grad_()
    nnclr_loss(z, p, support).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None and support.grad is None


def test_nnclr_loss__with_the_queries_as_support_is_an_nt_xent_against_the_predictions() -> None:
    z, p = randn(5, 6, seed=0), randn(5, 6, seed=1)  # each z is its own nearest neighbour
    logits = F.normalize(z, dim=1) @ F.normalize(p, dim=1).T / 0.1
    torch.testing.assert_close(nnclr_loss(z, p, z, 0.1), F.cross_entropy(logits, torch.arange(5)))


# ----------------------------------------------------------------------------- instdisc


def test_instdisc__loss_matches_a_loop_infonce_over_its_bank_entries() -> None:
    torch.manual_seed(0)
    method = build_method(
        "instdisc", build_backbone("tiny_cnn", in_channels=1), bank_size=20, num_negatives=7, temperature=0.1
    ).double()
    method.bank.seen[:10] = True  # entries 0-9 written earlier, 10-19 never
    views, index = [randn(6, 1, 16, 16, seed=3)], torch.tensor([0, 3, 12, 9, 15, 4])
    method.eval()
    negatives = method.bank.negative_indices(7, advance=False).tolist()
    with torch.no_grad():
        v = F.normalize(method.projector(method.backbone(views[0])), dim=1)
        loss = method(views, index).loss
    bank, expected = rows(method.bank.values), []
    for vi, i in zip(rows(v), index.tolist()):
        positive = bank[i] if i < 10 else vi  # not yet written: the embedding itself
        logits = [dot(vi, positive) / 0.1] + [dot(vi, bank[j]) / 0.1 for j in negatives]
        expected.append(-log_softmax(logits)[0])
    assert_close(loss, sum(expected) / len(expected))


def test_memory_bank__update_is_the_normalised_proximal_mix_and_a_first_visit_writes() -> None:
    bank = MemoryBank(5, 3, momentum=0.5).double()
    bank.seen[1] = True
    before, x = rows(bank.values), randn(2, 3, seed=4)
    bank.update(torch.tensor([1, 3]), x)
    mixed = [0.5 * a + 0.5 * b for a, b in zip(before[1], rows(x)[0])]
    torch.testing.assert_close(bank.values[1], torch.tensor(unit(mixed), dtype=torch.float64))
    torch.testing.assert_close(bank.values[3], torch.tensor(unit(rows(x)[1]), dtype=torch.float64))
    assert bank.seen.tolist() == [False, True, False, True, False]


def test_memory_bank__negative_draws_repeat_for_the_same_counter() -> None:
    bank = MemoryBank(50, 3)
    first = bank.negative_indices(10)
    second = bank.negative_indices(10)
    bank.draws.zero_()
    assert torch.equal(bank.negative_indices(10), first) and not torch.equal(first, second)


# ----------------------------------------------------------------------------- negative cosine


def test_negative_cosine__matches_loop_reference() -> None:
    p, z = randn(6, 5, seed=0), randn(6, 5, seed=1)
    expected = sum(-dot(unit(a), unit(b)) for a, b in zip(rows(p), rows(z))) / 6
    assert_close(negative_cosine(p, z), expected)


def test_negative_cosine__detaches_the_target() -> None:
    p, z = randn(4, 5, seed=0).requires_grad_(), randn(4, 5, seed=1).requires_grad_()
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_negative_cosine__is_minus_one_for_parallel_vectors() -> None:
    p = randn(4, 5)
    assert_close(negative_cosine(p, 2.5 * p), -1.0)


# ----------------------------------------------------------------------------- barlow twins


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_twins_loss__matches_loop_reference(lam: float) -> None:
    z_a, z_b = randn(8, 5, seed=0), randn(8, 5, seed=1)
    assert_close(barlow_twins_loss(z_a, z_b, lam), ref_barlow(z_a, z_b, lam))


def test_barlow_twins_loss__is_symmetric_in_the_two_branches() -> None:
    z_a, z_b = randn(8, 5, seed=0), randn(8, 5, seed=1)
    torch.testing.assert_close(barlow_twins_loss(z_a, z_b), barlow_twins_loss(z_b, z_a))


# ----------------------------------------------------------------------------- vicreg


@pytest.mark.parametrize("scale", [0.1, 3.0])  # small scale: the variance hinge is active
def test_vicreg_loss__matches_loop_reference(scale: float) -> None:
    z_a, z_b = scale * randn(8, 5, seed=0), scale * randn(8, 5, seed=1)
    assert_close(vicreg_loss(z_a, z_b, 25.0, 25.0, 1.0, 1e-4), ref_vicreg(z_a, z_b, 25.0, 25.0, 1.0, 1e-4))
    assert_close(vicreg_loss(z_a, z_b, 2.0, 3.0, 0.5, 1e-3), ref_vicreg(z_a, z_b, 2.0, 3.0, 0.5, 1e-3))


def test_vicreg_loss__is_symmetric_in_the_two_branches() -> None:
    z_a, z_b = 0.5 * randn(8, 5, seed=0), randn(8, 5, seed=1)
    torch.testing.assert_close(vicreg_loss(z_a, z_b), vicreg_loss(z_b, z_a))


# ----------------------------------------------------------------------------- sinkhorn / swav


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_sinkhorn_knopp__matches_loop_reference(iterations: int) -> None:
    scores = F.normalize(randn(6, 4), dim=1)
    expected = torch.tensor(ref_sinkhorn(scores, 0.05, iterations), dtype=torch.float64)
    torch.testing.assert_close(sinkhorn_knopp(scores, 0.05, iterations), expected, rtol=RTOL, atol=1e-12)


def test_sinkhorn_knopp__rows_sum_to_one_and_prototype_totals_approach_b_over_k() -> None:
    b, k = 12, 4
    scores = 0.2 * randn(b, k)
    q = sinkhorn_knopp(scores, 0.05, 3)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(b, dtype=torch.float64))  # exact: last step
    assert torch.allclose(q.sum(dim=0), torch.full((k,), b / k, dtype=torch.float64), rtol=0.2)
    q_converged = sinkhorn_knopp(scores, 0.05, 200)
    torch.testing.assert_close(q_converged.sum(dim=0), torch.full((k,), b / k, dtype=torch.float64))


def test_sinkhorn_knopp__is_detached_stable_and_shift_invariant() -> None:
    scores = randn(6, 4).requires_grad_()
    q = sinkhorn_knopp(scores)
    assert not q.requires_grad
    torch.testing.assert_close(sinkhorn_knopp(scores + 1000.0), q)  # max subtracted before exp
    large = 5.0 + 0.3 * randn(6, 4)  # exp(large / 0.05) overflows float32 without the max shift
    assert torch.isinf(torch.exp(large.float() / 0.05)).any()
    torch.testing.assert_close(sinkhorn_knopp(large.float()), sinkhorn_knopp(large).float())


def test_swav_loss__matches_loop_reference_with_multi_crop() -> None:
    scores = [F.normalize(randn(5, 4, seed=s), dim=1) for s in range(4)]  # 2 global + 2 local crops
    assert_close(swav_loss(scores, 2, 0.1, 0.05, 3), ref_swav(scores, 2, 0.1, 0.05, 3))


def test_swav_loss__uses_queue_scores_for_assignments_only() -> None:
    scores = [F.normalize(randn(5, 4, seed=s), dim=1) for s in range(3)]
    scores = [s.requires_grad_() for s in scores]
    queue = [F.normalize(randn(7, 4, seed=10 + i), dim=1).requires_grad_() for i in range(2)]
    loss = swav_loss(scores, 2, 0.1, 0.05, 3, queue_scores=queue)
    expected = 0.0
    for i in range(2):
        q = ref_sinkhorn(torch.cat([queue[i], scores[i]]), 0.05, 3)[-5:]
        expected += sum(ref_cross_entropy(q, rows(scores[v]), 0.1) for v in range(3) if v != i) / 2 / 2
    assert_close(loss, expected)
    loss.backward()
    assert all(q.grad is None for q in queue)  # codes are targets: no gradient into them


def test_losses__stay_finite_in_bfloat16() -> None:
    z = randn(16, 8).bfloat16()
    scores = [F.normalize(randn(8, 6, seed=s), dim=1).bfloat16() for s in range(3)]
    values = [
        info_nce(z, simclr_ids(8), 0.05),
        moco_loss(z[:8], z[8:], F.normalize(z, dim=1), 0.05),
        swav_loss(scores, 2, 0.1),
        DINOLoss(6)(scores, scores[:2], 0.04),
    ]
    assert all(torch.isfinite(v.float()) for v in values)


# ----------------------------------------------------------------------------- dino


def dino_inputs(b: int = 4, k: int = 6, crops: int = 4) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [randn(b, k, seed=s) for s in range(crops)], [randn(b, k, seed=10 + i) for i in range(2)]


def test_dino_loss__matches_loop_reference_with_a_nonzero_center() -> None:
    student, teacher = dino_inputs()
    criterion = DINOLoss(6, student_temperature=0.1).double().eval()
    criterion.center.copy_(randn(1, 6, seed=99))
    expected = ref_dino(student, teacher, criterion.center[0].tolist(), 0.1, 0.04)
    assert_close(criterion(student, teacher, 0.04), expected)


def test_dino_loss__updates_the_center_as_an_ema_of_the_teacher_batch_mean() -> None:
    student, teacher = dino_inputs()
    criterion = DINOLoss(6, center_momentum=0.9).double().train()
    start = randn(1, 6, seed=5)
    criterion.center.copy_(start)
    criterion(student, teacher, 0.04)
    mean = [sum(r[j] for t in teacher for r in rows(t)) / 8 for j in range(6)]
    expected = [0.9 * c + 0.1 * m for c, m in zip(start[0].tolist(), mean)]
    torch.testing.assert_close(criterion.center[0], torch.tensor(expected, dtype=torch.float64))


def test_dino_loss__leaves_the_center_alone_in_eval_mode() -> None:
    student, teacher = dino_inputs()
    criterion = DINOLoss(6).double().eval()
    criterion(student, teacher, 0.04)
    assert criterion.center.abs().sum() == 0


def test_dino_loss__excludes_same_crop_pairs() -> None:
    student, teacher = dino_inputs(crops=3)
    student = [s.requires_grad_() for s in student]
    DINOLoss(6).double()(student[:3], teacher[:1], 0.04).backward()  # one teacher crop: crop 0
    assert student[0].grad is None or student[0].grad.abs().sum() == 0
    assert student[1].grad.abs().sum() > 0 and student[2].grad.abs().sum() > 0


def test_dino_loss__sends_no_gradient_into_the_teacher() -> None:
    student, teacher = dino_inputs()
    student, teacher = [s.requires_grad_() for s in student], [t.requires_grad_() for t in teacher]
    DINOLoss(6).double()(student, teacher, 0.04).backward()
    assert all(t.grad is None for t in teacher)


# ----------------------------------------------------------------------------- triplet


def test_triplet_loss__matches_loop_reference() -> None:
    a, p, n = randn(7, 4, seed=0), randn(7, 4, seed=1), randn(7, 4, seed=2)
    for margin in (0.0, 1.0, 3.0):
        assert_close(triplet_loss(a, p, n, margin), ref_triplet(a, p, n, margin))


def test_triplet_loss__is_zero_when_negatives_are_beyond_the_margin_and_margin_when_all_coincide() -> None:
    a = randn(5, 3)
    assert float(triplet_loss(a, a, a + 10.0, margin=1.0)) == 0.0
    assert_close(triplet_loss(a, a, a, margin=0.7), 0.7)


@pytest.mark.parametrize("mining", ["hard", "semihard"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_mined_triplet_loss__matches_loop_reference(mining: str, margin: float) -> None:
    z, b = randn(10, 4, seed=5), 5
    ids, positive = torch.arange(10) % b, (torch.arange(10) + b) % 10
    expected = ref_mined_triplet(z, ids.tolist(), positive.tolist(), margin, mining)
    assert_close(mined_triplet_loss(z, ids, positive, margin, mining), expected)


def test_mine_negatives__hard_is_the_nearest_other_id_and_semihard_lies_beyond_the_positive() -> None:
    z = torch.tensor([[0.0], [0.1], [0.3], [1.0], [2.0]], dtype=torch.float64)
    ids, positive = torch.tensor([0, 1, 2, 0, 3]), torch.tensor([3, 1, 2, 0, 4])
    hard = mine_negatives(z, ids, positive, "hard")
    semi = mine_negatives(z, ids, positive, "semihard")
    assert hard[0] == 1 and semi[0] == 4  # d_pos(0) = 1.0: 1 and 2 are closer, 4 lies beyond
    assert hard[3] == 2 and semi[3] == 4  # d_pos(3) = 1.0: none lies beyond, so the farthest, 4


# ----------------------------------------------------------------------------- SGD


def _dino(student: torch.Tensor) -> torch.Tensor:
    return DINOLoss(6).double()(list(student.chunk(3)), [randn(4, 6, seed=1), randn(4, 6, seed=2)], 0.04)


LOSSES_OF_A_LEAF = {
    "info_nce": (lambda z: info_nce(z, simclr_ids(4), 0.5), (8, 6)),
    "moco": (lambda q: moco_loss(q, randn(4, 6, seed=1), F.normalize(randn(16, 6, seed=2), dim=1)), (4, 6)),
    "negative_cosine": (lambda p: negative_cosine(p, randn(4, 6, seed=1)), (4, 6)),
    "barlow_twins": (lambda z: barlow_twins_loss(z[:8], z[8:], 5e-3), (16, 6)),
    "vicreg": (lambda z: vicreg_loss(z[:8], z[8:]), (16, 6)),
    "swav": (lambda s: swav_loss(list(s.chunk(3)), 2, 0.1), (12, 5)),
    "dino": (_dino, (12, 6)),
    "triplet": (lambda a: triplet_loss(a, randn(4, 6, seed=1), randn(4, 6, seed=2), 1.0), (4, 6)),
    "moco_v3": (lambda q: moco_v3_loss(q, randn(4, 6, seed=1), 0.5), (4, 6)),
    "nnclr": (lambda p: nnclr_loss(randn(4, 6, seed=1), p, randn(16, 6, seed=2), 0.5), (4, 6)),
    "mined_triplet": (
        lambda z: mined_triplet_loss(z, torch.arange(8) % 4, (torch.arange(8) + 4) % 8),
        (8, 6),
    ),
}


@pytest.mark.parametrize("name", sorted(LOSSES_OF_A_LEAF))
def test_loss__falls_after_a_few_sgd_steps_on_its_inputs(name: str) -> None:
    loss_fn, shape = LOSSES_OF_A_LEAF[name]
    x = randn(*shape, seed=7).requires_grad_()
    optimiser = torch.optim.SGD([x], lr=0.05)
    losses = []
    for _ in range(20):
        optimiser.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
