"""The Random Hierarchy Model (Petrini et al. 2023): a synthetic hierarchical classification
task built from random production rules."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["RandomHierarchy", "random_hierarchy", "random_hierarchy_data"]

#: Most possible tuples v^s (a permutation of them is drawn per level) and most distinct
#: samples for which train/test indices are drawn exactly without replacement.
_MAX_TUPLES = 1 << 24
_MAX_EXACT = 1 << 26


def _positive_int(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"`{name}` must be a Python int >= {least}, got {value!r}.")
    return value


class RandomHierarchy(eqx.Module):
    r"""The production rules of one Random Hierarchy Model (RHM).

    A sample is generated top-down: its class $y \in \{0, …, n_c - 1\}$ is the root; every
    symbol at level $l$ (the class at level 0, a token of the vocabulary $\{0, …, v-1\}$
    below) is replaced by one of its $m$ *synonymic* rules, a tuple of $s$ tokens of the
    level below, chosen uniformly; after $L$ levels the sample is a string of $s^L$ tokens.
    The rules of different symbols of one level are disjoint (no tuple is produced by two
    symbols), so the class is a deterministic function of the string.

    **Fields:**

    - `rules`: one integer array per level, top first: `rules[0]` has shape `(n_c, m, s)`
      (class → its `m` tuples), `rules[l]` for `l ≥ 1` has shape `(v, m, s)` (token → its
      `m` tuples of tokens).
    - `levels`, `classes`, `synonyms`, `tuple_size`, `vocab`: $L$, $n_c$, $m$, $s$, $v$.

    ??? cite "Reference"

        Petrini, Cagnetta, Tomasini, Favero, Wyart 2023, *How deep neural networks learn
        compositional data: the Random Hierarchy Model*, arXiv:2307.02129, §2 (the model) and
        Eq. (1) (the number of distinct samples).
    """

    rules: tuple[Int[Array, "symbols m s"], ...]
    levels: int = eqx.field(static=True)
    classes: int = eqx.field(static=True)
    synonyms: int = eqx.field(static=True)
    tuple_size: int = eqx.field(static=True)
    vocab: int = eqx.field(static=True)

    @property
    def input_length(self) -> int:
        """Tokens per sample, $s^L$."""
        return self.tuple_size**self.levels

    @property
    def input_dim(self) -> int:
        """Length of a flattened one-hot sample, $s^L \\cdot v$."""
        return self.input_length * self.vocab

    @property
    def num_nodes(self) -> int:
        """Rule choices per sample: the internal nodes of the tree, $(s^L - 1)/(s - 1)$."""
        return (self.tuple_size**self.levels - 1) // (self.tuple_size - 1)

    @property
    def num_samples(self) -> int:
        """Number of distinct samples, $n_c \\, m^{(s^L - 1)/(s - 1)}$ (a Python int)."""
        return self.classes * self.synonyms**self.num_nodes

    def decode(
        self, label: Int[Array, ""], choices: Int[Array, " nodes"]
    ) -> Int[Array, " tokens"]:
        """The token string generated from class `label` with rule `choices`.

        **Arguments:**

        - `label`: the class, an integer in `[0, n_c)`.
        - `choices`: one rule index in `[0, m)` per internal node, level by level from the
          root (length `num_nodes`).

        **Returns:**

        The `s^L` tokens, integers in `[0, v)`.
        """
        symbols = jnp.reshape(jnp.asarray(label), (1,))
        start = 0
        for rules in self.rules:
            k = symbols.shape[0]
            c = choices[start : start + k]
            symbols = rules[symbols, c].reshape(-1)
            start += k
        return symbols

    def sample(self, index: Int[Array, ""]) -> tuple[Int[Array, " tokens"], Int[Array, ""]]:
        """The sample numbered `index` in `[0, num_samples)`: class `index // m^N` and rule
        choices the base-`m` digits of `index mod m^N` (N = `num_nodes`, root first).

        **Arguments:**

        - `index`: an integer in `[0, num_samples)`.

        **Returns:**

        `(tokens (s^L,), label ())`.
        """
        index = jnp.asarray(index)
        powers = self.synonyms ** jnp.arange(self.num_nodes - 1, -1, -1, dtype=index.dtype)
        label = index // (self.synonyms**self.num_nodes)
        choices = (index // powers) % self.synonyms
        return self.decode(label, choices), label


def random_hierarchy(
    key: PRNGKeyArray,
    *,
    levels: int = 3,
    classes: int = 8,
    synonyms: int = 4,
    tuple_size: int = 2,
    vocab: int = 8,
) -> RandomHierarchy:
    r"""Draw the production rules of a Random Hierarchy Model (Petrini et al. 2023).

    For each level, the rules are $k \cdot m$ distinct tuples drawn uniformly without
    replacement from the $v^s$ possible ones ($k = n_c$ symbols at the top, $k = v$ below),
    $m$ per symbol. Deterministic per `key`; traceable (`jax.vmap` over keys draws a batch of
    models of the same shape).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `levels`: $L \ge 1$.
    - `classes`: $n_c \ge 1$.
    - `synonyms`: $m \ge 1$, rules per symbol.
    - `tuple_size`: $s \ge 2$, tokens per rule.
    - `vocab`: $v \ge 2$, tokens per level.

    **Returns:**

    The `RandomHierarchy`.

    **Raises:**

    `ValueError` naming the setting when an argument is not a positive int, or when a level
    needs more distinct tuples than the $v^s$ that exist: $n_c m > v^s$ (top level) or
    $v m > v^s$, i.e. $m > v^{s-1}$ (lower levels).

    ??? cite "Reference"

        Petrini, Cagnetta, Tomasini, Favero, Wyart 2023, *How deep neural networks learn
        compositional data: the Random Hierarchy Model*, arXiv:2307.02129, §2.
    """
    L = _positive_int("levels", levels, 1)
    nc = _positive_int("classes", classes, 1)
    m = _positive_int("synonyms", synonyms, 1)
    s = _positive_int("tuple_size", tuple_size, 2)
    v = _positive_int("vocab", vocab, 2)
    tuples = v**s
    if tuples > _MAX_TUPLES:
        raise ValueError(
            f"vocab**tuple_size = {v}**{s} = {tuples} possible tuples is more than this "
            f"generator supports ({_MAX_TUPLES})."
        )
    if nc * m > tuples:
        raise ValueError(
            f"classes × synonyms = {nc} × {m} = {nc * m} distinct rules are needed at the top "
            f"level, but only vocab**tuple_size = {v}**{s} = {tuples} tuples exist: lower "
            "`synonyms` or `classes`, or raise `vocab` or `tuple_size`."
        )
    if L > 1 and v * m > tuples:
        raise ValueError(
            f"synonyms = {m} exceeds vocab**(tuple_size - 1) = {v}**{s - 1} = {tuples // v}: "
            f"the lower levels need vocab × synonyms = {v * m} distinct tuples of the "
            f"{tuples} that exist."
        )
    digits = v ** jnp.arange(s - 1, -1, -1)
    rules = []
    for level, k in enumerate(jax.random.split(key, L)):
        symbols = nc if level == 0 else v
        picked = jax.random.permutation(k, tuples)[: symbols * m].reshape(symbols, m)
        rules.append((picked[..., None] // digits) % v)
    return RandomHierarchy(
        rules=tuple(rules), levels=L, classes=nc, synonyms=m, tuple_size=s, vocab=v
    )


def random_hierarchy_data(
    key: PRNGKeyArray,
    rhm: RandomHierarchy,
    n_train: int,
    n_test: int,
    dtype: Any = None,
) -> tuple[
    Float[Array, "n_train dim"],
    Int[Array, " n_train"],
    Float[Array, "n_test dim"],
    Int[Array, " n_test"],
]:
    r"""Disjoint training and test sets of a Random Hierarchy Model, one-hot encoded.

    The `n_train + n_test` samples are distinct: their indices (see `RandomHierarchy.sample`)
    are drawn uniformly without replacement from the `num_samples` that exist (when there are
    more than $2^{26}$ of them, each sample's class and rule choices are drawn independently
    instead, so a repeat has probability at most $(n_{train}+n_{test})^2 / (2 \cdot$
    `num_samples`$)$). The first `P` training samples are themselves a uniform training set of
    size `P`, so a sweep over the training-set size can build the largest set once and use
    its prefixes (nested training sets).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `rhm`: the rules (`jd.data.random_hierarchy`).
    - `n_train`, `n_test`: numbers of samples (`n_train >= 1`, `n_test >= 0`,
      `n_train + n_test <= rhm.num_samples`).
    - `dtype`: float dtype of the inputs (default: JAX's default float).

    **Returns:**

    `(X (n_train, s^L·v), y (n_train,), X_test (n_test, s^L·v), y_test (n_test,))`: inputs
    are one-hot token strings flattened position-major (entry `i·v + t` is 1 when token `i`
    is `t`; reshape to `(s^L, v)` for the token layout), labels are the classes.

    **Raises:**

    `ValueError` naming `n_train`/`n_test` when they are not ints or ask for more distinct
    samples than exist.
    """
    n_train = _positive_int("n_train", n_train, 1)
    n_test = _positive_int("n_test", n_test, 0)
    total = rhm.num_samples
    if n_train + n_test > total:
        raise ValueError(
            f"n_train + n_test = {n_train} + {n_test} = {n_train + n_test} exceeds the "
            f"{total} distinct samples of this Random Hierarchy Model (classes × "
            f"synonyms**{rhm.num_nodes})."
        )
    dtype = jnp.result_type(float) if dtype is None else dtype
    n = n_train + n_test
    if total <= _MAX_EXACT:
        index = jax.random.choice(key, total, (n,), replace=False)
        tokens, labels = jax.vmap(rhm.sample)(index)
    else:
        kc, kr = jax.random.split(key)
        labels = jax.random.randint(kc, (n,), 0, rhm.classes)
        choices = jax.random.randint(kr, (n, rhm.num_nodes), 0, rhm.synonyms)
        tokens = jax.vmap(rhm.decode)(labels, choices)
    X = jax.nn.one_hot(tokens, rhm.vocab, dtype=dtype).reshape(n, rhm.input_dim)
    return X[:n_train], labels[:n_train], X[n_train:], labels[n_train:]
