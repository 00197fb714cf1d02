"""The sweep engine (private): experiment description (`_experiment`), planning (`_plan`:
grid, shard, chunk sizes), output sinks (`_sinks`: memory, NetCDF, Zarr), Dataset assembly,
`load` and `merge` (`_dataset`), the compile cache (`_cache`) and the chunk loop (`_engine`).

Public names are re-exported by `jaxdyn/__init__.py`; this package never imports the package
face or the experiment registry (the registry installs itself with `set_name_resolver`).
"""

from ._cache import clear as clear, freeze as freeze, memo as memo
from ._dataset import load as load, merge as merge
from ._engine import (
    set_name_resolver as set_name_resolver,
    sweep as sweep,
    sweep_function as sweep_function,
)
from ._errors import SweepError as SweepError
from ._experiment import Experiment as Experiment
from ._plan import make_grid as make_grid
