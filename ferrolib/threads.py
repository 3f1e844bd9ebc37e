"""One thread setting for torch (OpenMP) and numba, and thread pools that sleep instead of spinning.

Two halves, because OpenMP and numba read their settings when they load:

* ``prepare_environment()`` runs when ``ferrolib`` is imported (``ferrolib/__init__.py``), before this package
  imports torch or numba. It sets, only where the user has not: ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP
  workers of torch and of numba's ``omp`` layer block instead of spin-waiting, so a neighbour that takes a
  core does not make every parallel region wait for a spinning thread), numba's layer priority ``omp`` first
  (it honours the same policy; ``workqueue`` is the fallback everywhere), and with ``FERROLIB_THREADS`` set,
  the pool sizes ``OMP_NUM_THREADS`` / ``NUMBA_NUM_THREADS``. Importing torch before ferrolib keeps torch's
  own (spinning) defaults.
* ``set_threads(n)`` sets the number of threads of both libraries at run time (``--threads`` of
  ``ferrolib train``, ``ferrolib sweep`` and the benchmark; ``training.train`` applies the default through
  ``ensure_threads`` when nothing was set). ``None`` means ``FERROLIB_THREADS`` if set, else
  **one thread per run**; the cores go to runs in parallel instead (``ferrolib sweep`` starts one worker per
  available core, ``os.sched_getaffinity``).

Why one thread per run (``benchmarks/thread_policies.py``, 2-core machine, paper network, batch 64): a mini-batch
costs about 1.1 ms in more than ten parallel regions (every matrix product and kernel), too small to share. Two
threads trained at 0.5x the speed of one with sleeping pools on an idle machine (every region waits for a woken
thread), and 1.3-1.6x with spinning pools (``OMP_WAIT_POLICY=ACTIVE`` or ``GOMP_SPINCOUNT``) on an idle machine
but 0.1-0.2x beside one busy process; two one-thread runs at once trained 1.8-2.1x the samples of one.

Thread count never changes a result: every numba kernel gives each row to one thread in a fixed order, the
counter-based random keys do not depend on the schedule, and the one matrix product whose MKL result depended on
its thread count (``d^T x`` of fp and mixed precision, in the output layer) is always computed by one thread
(``training.algorithms.batch_outer``); tested with 1 and 2 threads.
"""
from __future__ import annotations

import os
import sys
import warnings

THREADS_ENV = "FERROLIB_THREADS"
"""Environment variable with the default number of threads (a positive integer)."""

_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER_PRIORITY": "omp tbb workqueue"}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _parse(value: int | str, source: str) -> int:
    try:
        threads = int(value)
    except (TypeError, ValueError):
        threads = 0
    if threads < 1:
        raise ValueError(f"{source}: number of threads must be a positive integer, got {value!r}")
    return threads


def default_threads() -> int:
    """``FERROLIB_THREADS`` if set, else 1 (one thread per run; see the module docstring)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return _parse(value, THREADS_ENV) if value else 1


def prepare_environment() -> None:
    """Set the load-time defaults above (never overriding a variable the user set); warns when torch is
    already loaded without a wait policy (its OpenMP threads then spin, see the module docstring)."""
    if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        warnings.warn("torch was imported before ferrolib, so its OpenMP threads spin-wait (they collapse on a "
                      "busy machine); import ferrolib first or set OMP_WAIT_POLICY=PASSIVE", stacklevel=2)
    for name, value in _DEFAULTS.items():
        os.environ.setdefault(name, value)
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            threads = str(_parse(value, THREADS_ENV))
        except ValueError:
            return  # not at import: ``default_threads`` reports it as one line where a command uses it
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        os.environ.setdefault("NUMBA_NUM_THREADS", threads)


_chosen: int | None = None
"""The thread count last set with ``set_threads`` in this process (None: none yet)."""


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` (None: ``default_threads()``) in torch and numba; returns the number set.

    numba's pool cannot grow past the size it was created with (``NUMBA_NUM_THREADS``), so it gets at most that.
    numba is set first: the first call starts its OpenMP pool, which resets OpenMP's thread count (torch's) to
    the pool size.
    """
    import numba
    import torch

    global _chosen
    count = default_threads() if threads is None else _parse(threads, "--threads")
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _chosen = count
    return count


def ensure_threads() -> int:
    """The count chosen with ``set_threads``; if none was chosen in this process, ``set_threads()`` (the default),
    so that training in a notebook or script gets the same one thread per run as ``ferrolib train``."""
    return _chosen if _chosen is not None else set_threads()


__all__ = ["THREADS_ENV", "available_cores", "default_threads", "ensure_threads", "prepare_environment",
           "set_threads"]
