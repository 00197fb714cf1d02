"""The installed distribution's version (one home: `pyproject.toml`)."""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # running from a source tree, not installed
    __version__ = "0+unknown"
