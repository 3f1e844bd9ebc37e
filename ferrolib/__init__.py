"""ferrolib: from measured ferroelectric-synapse pulse responses to training energy and convergence.

Data flow, one module per step::

    measurements -> devices (+ fitting, physics) -> training -> energy -> sweep -> figures

See README.md and the notebooks in ``notebooks/``.
"""
from __future__ import annotations

__version__ = "0.1.0"

from ferrolib import threads as _threads

_threads.prepare_environment()  # before any submodule loads torch or numba (see ferrolib/threads.py)
