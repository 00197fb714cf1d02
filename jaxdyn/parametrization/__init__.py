"""Width scalings of an MLP (`jd.parametrization`): SP, NTK, μP and spectral (Yang–Simon–
Bernstein Parametrization 1) on a common abstract base, each giving the initialisation, the
forward multipliers and the per-layer learning-rate pytree (SGD / gradient flow and Adam
rules) that `jd.gradient_flow` and `jd.gradient_descent` take as `lr=`.

```python
p = jd.parametrization.Spectral()            # or jd.parametrization.get("spectral")
model = jd.init.mlp(key, (64, 512, 512, 10), parametrization=p, activation="tanh")
traj = jd.gradient_descent(model, (X, Y), 10, lr=p.lr(model, 0.5))
```
"""

from ._base import (
    OPTIMIZERS as OPTIMIZERS,
    AbstractParametrization as AbstractParametrization,
    LayerScaling as LayerScaling,
    Rescaled as Rescaled,
)
from ._parametrizations import (
    NTK as NTK,
    SP as SP,
    MuP as MuP,
    Spectral as Spectral,
    get as get,
    names as names,
)
