"""Modular arithmetic a ∘ b mod p (Power et al. 2022), the grokking task."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["MODULAR_OPS", "modular_arithmetic", "one_hot_pairs"]


def _inverse_table(p: int) -> np.ndarray:
    return np.array([pow(int(b), -1, p) if b else 0 for b in range(p)], dtype=np.int64)


#: The operations `modular_arithmetic` knows: name -> `f(a, b, p)` on integer arrays
#: (all taken mod p). `"div"` is a · b⁻¹ and needs a prime p (its pairs exclude b = 0).
MODULAR_OPS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "add": lambda a, b, p: a + b,
    "sub": lambda a, b, p: a - b,
    "mul": lambda a, b, p: a * b,
    "div": lambda a, b, p: a * _inverse_table(p)[b],
    "x2+y2": lambda a, b, p: a * a + b * b,
    "x2+xy+y2": lambda a, b, p: a * a + a * b + b * b,
}


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % q for q in range(2, int(p**0.5) + 1))


def modular_arithmetic(
    key: PRNGKeyArray,
    p: int,
    *,
    op: str = "add",
    train_fraction: float | int = 0.5,
) -> tuple[
    Int[Array, "n_train 2"], Int[Array, " n_train"], Int[Array, "n_test 2"], Int[Array, " n_test"]
]:
    r"""The modular-arithmetic task of Power et al. 2022: all pairs (a, b) ∈ ℤ_p², labelled
    c = a ∘ b mod p, split at random into a training and a test set.

    The split is a random permutation of the pairs drawn from `key`; the number of training
    pairs, `round(train_fraction · N)` of the N pairs, depends only on `p`, `op` and
    `train_fraction`, so the function is traceable in `key` (`jax.vmap` over seeds gives one
    split per seed, all of the same shape).

    **Arguments:**

    - `key`: a JAX PRNG key (the split).
    - `p`: the modulus, an int ≥ 2 (a prime for `op="div"`).
    - `op`: one of `MODULAR_OPS`: `"add"` (a + b), `"sub"` (a − b), `"mul"` (a·b), `"div"`
      (a·b⁻¹, pairs with b ≠ 0), `"x2+y2"`, `"x2+xy+y2"`.
    - `train_fraction`: the fraction of pairs used for training, in (0, 1).

    **Returns:**

    `(pairs_train, labels_train, pairs_test, labels_test)`: integer pairs `(n, 2)` with
    entries in [0, p) and labels `(n,)` in [0, p). `one_hot_pairs(pairs, p)` gives the
    `(n, 2p)` inputs of the two-layer MLP; the pairs are the token sequences of a transformer.

    **Raises:**

    `ValueError` naming `p` (< 2, not an int, or not prime for `"div"`), `train_fraction`
    (outside (0, 1), or leaving an empty training or test set) or `op` (unknown).

    ??? cite "Reference"

        Power et al. 2022, *Grokking: generalization beyond overfitting on small algorithmic
        datasets*, arXiv:2201.02177, §2; Gromov 2023, *Grokking modular arithmetic*,
        arXiv:2301.02679, §2 (one-hot pairs).
    """
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 2:
        raise ValueError(f"`p` (the modulus) must be an int >= 2, got {p!r}.")
    p = int(p)
    if op not in MODULAR_OPS:
        raise ValueError(f"`op` must be one of {sorted(MODULAR_OPS)}, got {op!r}.")
    if op == "div" and not _is_prime(p):
        raise ValueError(f"`p` must be prime for op='div' (b must be invertible), got {p}.")
    frac = float(train_fraction)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"`train_fraction` must be in (0, 1), got {train_fraction!r}.")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    labels = np.mod(MODULAR_OPS[op](a, b, p), p)
    N = a.size
    n_train = int(round(frac * N))
    if not 1 <= n_train <= N - 1:
        raise ValueError(
            f"`train_fraction`={train_fraction!r} gives {n_train} of the {N} pairs for "
            "training: both the training and the test set must be non-empty."
        )
    pairs = jnp.asarray(np.stack([a, b], axis=1), dtype=jnp.int32)
    labels = jnp.asarray(labels, dtype=jnp.int32)
    perm = jax.random.permutation(key, N)
    tr, te = perm[:n_train], perm[n_train:]
    return pairs[tr], labels[tr], pairs[te], labels[te]


def one_hot_pairs(pairs: Int[Array, "*n 2"], p: int, dtype=None) -> Float[Array, "*n two_p"]:
    r"""One-hot encode pairs (a, b) as the concatenation $[e_a, e_b] \in \{0, 1\}^{2p}$ (the
    input of Gromov's two-layer MLP).

    **Arguments:**

    - `pairs`: integer pairs `(..., 2)` in [0, p).
    - `p`: the modulus.
    - `dtype`: floating dtype of the result (default: JAX's default float).

    **Returns:**

    The encodings, `(..., 2p)`.

    ??? cite "Reference"

        Gromov 2023, *Grokking modular arithmetic*, arXiv:2301.02679, Eq. (2).
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    oh = jax.nn.one_hot(pairs, p, dtype=dtype)  # (..., 2, p)
    return oh.reshape(*oh.shape[:-2], 2 * p)
