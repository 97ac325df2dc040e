"""Worker thread limits (core.threads): applied in a fresh process before and after the libraries are imported."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from codecbench.bench.core.threads import worker_threads

needs_numba = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None or importlib.util.find_spec("threadpoolctl") is None,
    reason="numba or threadpoolctl not installed (the metrics extra brings both)")


def test_worker_threads_split_the_cores():
    assert worker_threads(1, cores=2) == 2
    assert worker_threads(2, cores=2) == 1
    assert worker_threads(3, cores=8) == 2
    assert worker_threads(4, cores=2) == 1  # never 0


def _in_fresh_process(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_numba
def test_limit_before_import_reaches_numba_and_torch():
    """Set before the libraries load (the worker-initializer case): numba and torch start with one thread."""
    out = _in_fresh_process(
        "import json; from codecbench.bench.core.threads import limit_worker_threads\n"
        "applied = limit_worker_threads(1)\n"
        "import numba, torch\n"
        "print(json.dumps({'applied': applied, 'numba': numba.get_num_threads(), 'torch': torch.get_num_threads()}))")
    assert out["applied"] == {}  # nothing imported yet: environment variables only
    assert out["numba"] == 1 and out["torch"] == 1


@needs_numba
def test_limit_after_import_uses_the_runtime_setters():
    out = _in_fresh_process(
        "import json, numba, numpy, torch\n"
        "numba.set_num_threads(numba.config.NUMBA_NUM_THREADS); before = numba.get_num_threads()\n"
        "from codecbench.bench.core.threads import limit_worker_threads\n"
        "applied = limit_worker_threads(1)\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = max((p['num_threads'] for p in threadpool_info()), default=1)\n"
        "print(json.dumps({'applied': applied, 'numba': numba.get_num_threads(), 'torch': torch.get_num_threads(),"
        " 'blas': blas}))")
    assert out["applied"] == {"numba": 1, "torch": 1, "blas": 1}
    assert out["numba"] == 1 and out["torch"] == 1 and out["blas"] == 1


@needs_numba
def test_local_executor_workers_keep_to_their_share_of_the_cores():
    """``executor: {workers: 2}``: each unit process runs numba, torch and BLAS on cores // 2 threads."""
    import os

    from codecbench.bench.executors import LocalExecutor
    from codecbench.bench.metrics.visqol import _thread_counts

    with LocalExecutor(workers=2) as executor:
        probes = [result for _, result in executor.run(_thread_counts, [0, 1])]
    assert all(isinstance(p, dict) for p in probes), probes
    expected = worker_threads(2)
    assert all(p["pid"] != os.getpid() for p in probes)
    assert all(p["numba"] == expected and p["torch"] == expected and p["blas"] == expected for p in probes), probes
