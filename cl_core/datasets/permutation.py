"""A keyed pseudo-random permutation of ``range(n)`` computed per position, in O(1) memory.

An epoch's order over 10M files need not be materialised anywhere: a reading task asks for the
files at its positions ``[j * b, (j + 1) * b)`` and gets ``permute(positions, n, key)``. The map
is a balanced Feistel network over the smallest power-of-4 domain >= n (4 rounds of a 64-bit
mix), restricted to ``range(n)`` by cycle walking (Black & Rogaway, "Ciphers with Arbitrary
Finite Domains", 2002): a bijection of ``range(n)`` for every key, a different order per key.
"""

import numpy as np

ROUNDS = 4
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)  # splitmix64's finaliser


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _feistel(x: np.ndarray, half_bits: int, keys: np.ndarray) -> np.ndarray:
    mask = np.uint64((1 << half_bits) - 1)
    left, right = x >> np.uint64(half_bits), x & mask
    for key in keys:
        left, right = right, left ^ (_mix(right ^ key) & mask)
    return (left << np.uint64(half_bits)) | right


def round_keys(key: int) -> np.ndarray:
    """``ROUNDS`` 64-bit round keys from any integer key (NumPy's SeedSequence)."""
    return np.random.SeedSequence(abs(int(key))).generate_state(ROUNDS, np.uint64)


def permute(positions: np.ndarray, n: int, key: int) -> np.ndarray:
    """The items at ``positions`` of the permutation of ``range(n)`` keyed by ``key``.

    Args:
        positions: (m,) integers in ``[0, n)``.
        n: size of the permuted range (>= 1).
        key: any integer, e.g. a hash of (seed, epoch).

    Returns:
        (m,) int64 items, distinct for distinct positions.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    x = np.asarray(positions, dtype=np.uint64)
    if x.size and int(x.max()) >= n:
        raise ValueError(f"positions must be < n={n}")
    half_bits = max(1, (int(n - 1).bit_length() + 1) // 2)  # domain 4**half_bits >= n
    keys = round_keys(key)
    out = _feistel(x, half_bits, keys)
    outside = out >= np.uint64(n)
    while outside.any():  # cycle walking: at most a few steps (the domain is < 4n)
        out[outside] = _feistel(out[outside], half_bits, keys)
        outside = out >= np.uint64(n)
    return out.astype(np.int64)


def epoch_key(seed: int, epoch: int) -> int:
    """The permutation key of an epoch: both ints mixed (SeedSequence), never 0-collapsed."""
    return int(
        np.random.SeedSequence([abs(int(seed)), abs(int(epoch)), 0x5EED]).generate_state(1, np.uint64)[0]
    )
