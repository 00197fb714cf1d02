"""Synthetic tasks (`jd.data`): whitened regression, Haar matrices, teacher–student data,
hierarchical tasks, task sequences, and the one whitening check every closed form uses.

The NumPy makers (`whitened_*`, `task_sequence`, `hierarchical_task`, `haar_orthogonal` with a
NumPy `Generator`) are deterministic per seed; the JAX makers (`sphere`, `teacher_student`,
`haar_orthogonal` with a PRNG key) are traceable.
"""

from ._digits import digits as digits
from ._latent import (
    latent_statistics as latent_statistics,
    latent_variable as latent_variable,
    latent_variable_sample as latent_variable_sample,
)
from ._modular import (
    MODULAR_OPS as MODULAR_OPS,
    modular_arithmetic as modular_arithmetic,
    one_hot_pairs as one_hot_pairs,
)
from ._orthogonal import (
    haar_orthogonal as haar_orthogonal,
    orthonormal_columns as orthonormal_columns,
)
from ._regression import (
    task_sequence as task_sequence,
    whitened_inputs as whitened_inputs,
    whitened_regression as whitened_regression,
    whitened_task as whitened_task,
)
from ._rhm import (
    RandomHierarchy as RandomHierarchy,
    random_hierarchy as random_hierarchy,
    random_hierarchy_data as random_hierarchy_data,
)
from ._teacher import (
    hierarchical_task as hierarchical_task,
    sphere as sphere,
    teacher_student as teacher_student,
)
from ._whitening import (
    check_whitened as check_whitened,
    whitening_error as whitening_error,
    whitening_tol as whitening_tol,
)
