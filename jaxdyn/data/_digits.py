"""The 8×8 handwritten digits that ship with scikit-learn, as a small image-classification
task (no download)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = ["digits"]


def digits(
    n_test: int = 297,
    *,
    seed: int = 0,
    flatten: bool = False,
    dtype: Any = None,
) -> tuple[Float[Array, "n ..."], Int[Array, " n"], Float[Array, "m ..."], Int[Array, " m"]]:
    r"""The 1797 8×8 grey-scale handwritten digits of scikit-learn
    (`sklearn.datasets.load_digits`, the UCI optical-recognition test set), split into a
    training and a test set by a seeded permutation; pixel values divided by 16 (into
    `[0, 1]`) and centred by the training set's mean pixel.

    **Arguments:**

    - `n_test`: number of test images, in `[1, 1796]`; the rest are training images.
    - `seed`: seed of the NumPy permutation that splits the images (deterministic).
    - `flatten`: return inputs `(n, 64)` instead of images `(n, 1, 8, 8)` (channel first, as
      `equinox.nn.Conv2d` takes one sample).
    - `dtype`: float dtype (default: JAX's default float).

    **Returns:**

    `(X, y, X_test, y_test)`: inputs `(n, 1, 8, 8)` (or `(n, 64)`) and integer labels in
    `[0, 10)`.

    **Raises:**

    `ImportError` saying how to install scikit-learn when it is missing; `ValueError` for an
    `n_test` out of range.
    """
    try:
        from sklearn.datasets import load_digits  # pyright: ignore[reportMissingImports]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jd.data.digits needs scikit-learn (`pip install scikit-learn`), which ships the "
            "8×8 digits data set."
        ) from e
    if isinstance(n_test, bool) or not isinstance(n_test, int | np.integer):
        raise ValueError(f"`n_test` must be an int in [1, 1796], got {n_test!r}.")
    images, labels = load_digits(return_X_y=True)
    n = images.shape[0]
    if not 1 <= n_test < n:
        raise ValueError(f"`n_test` must be an int in [1, {n - 1}], got {n_test!r}.")
    order = np.random.default_rng(seed).permutation(n)
    images = images[order] / 16.0
    labels = labels[order]
    train, test = images[n_test:], images[:n_test]
    mean = train.mean()
    shape = (-1, 64) if flatten else (-1, 1, 8, 8)
    dtype = jnp.result_type(float) if dtype is None else dtype
    X = jnp.asarray((train - mean).reshape(shape), dtype)
    Xt = jnp.asarray((test - mean).reshape(shape), dtype)
    return X, jnp.asarray(labels[n_test:]), Xt, jnp.asarray(labels[:n_test])
