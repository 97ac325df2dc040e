"""Thread-pool limits for worker processes.

A pool of N worker processes on C cores runs fastest when each worker keeps to C // N threads: numba's parallel
kernels (ViSQOL), torch's intra-op pool and BLAS/OpenMP would otherwise each start one thread per core in every
worker and the workers would fight over the cores. :func:`limit_worker_threads` is meant for the first thing a
worker process does (a pool ``initializer``), never for the user's own process: it sets the libraries'
environment variables for those not imported yet and calls the runtime setters of those already imported
(``numba.set_num_threads``, ``torch.set_num_threads``, ``threadpoolctl.threadpool_limits`` for BLAS/OpenMP;
threadpoolctl comes with the ``metrics`` extra through librosa's scikit-learn; without it BLAS keeps its own thread
count, which changes speed only).
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Threads per worker when ``workers`` processes share ``cores`` (default: this machine's), at least 1."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def limit_worker_threads(threads: int) -> dict[str, int]:
    """Cap this process's numba, torch and BLAS/OpenMP thread pools to ``threads``; returns what was applied
    (``{"numba": 1, "torch": 1, "blas": 1}``; a library absent from the process is set through its environment
    variable only, for when it is imported later)."""
    threads = max(1, int(threads))
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)  # read by each library when it is first imported in this process
    applied: dict[str, int] = {}
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        applied["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        applied["torch"] = torch.get_num_threads()
    if "numpy" in sys.modules:  # numpy loads its BLAS at import: the variables above came too late for it
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # speed only: BLAS then keeps its own thread count
            pass
        else:
            threadpool_limits(limits=threads)
            applied["blas"] = threads
    return applied
