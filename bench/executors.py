"""Executors run work units: ``executor.run(fn, payloads)`` yields ``(payload, result or exception)`` as each
finishes. Units write their own results into the run store (atomically), so an executor only schedules: any
``concurrent.futures``-style backend fits (a process pool here, submitit job arrays for Slurm).

- ``local`` (default): ``workers: 1`` runs units in this process, one after the other (models stay loaded
  between units); ``workers: N`` runs a pool of N spawned processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from codecbench.bench.core.errors import ConfigError
from codecbench.bench.core.threads import limit_worker_threads, worker_threads

EXECUTORS: dict[str, str] = {
    "local": "codecbench.bench.executors:LocalExecutor",
    "slurm": "codecbench.bench.slurm:SlurmExecutor",  # submitit job arrays (docs/slurm.md)
}


class Executor(ABC):
    """Schedules unit functions; results come back in completion order."""

    name: str = ""

    @abstractmethod
    def run(self, fn: Callable[[Any], Any], payloads: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Run ``fn(payload)`` for each payload; yield ``(payload, result)`` or ``(payload, exception)``."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _init_worker(threads: int) -> None:
    import torch  # noqa: F401 - units use it; imported first so its pool is capped now, not at first use

    limit_worker_threads(threads)  # torch, numba (ViSQOL), BLAS: workers x threads = cores


class LocalExecutor(Executor):
    """In-process (``workers=1``) or a spawned process pool (``workers>1``)."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ConfigError(f"executor.workers: must be >= 1, got {workers}")
        self.workers = workers

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers}

    def run(self, fn: Callable[[Any], Any], payloads: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        if self.workers == 1:
            for payload in payloads:
                try:
                    yield payload, fn(payload)
                except Exception as error:  # recorded by the caller; the run goes on
                    yield payload, error
            return
        threads = worker_threads(self.workers)
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(fn, payload): payload for payload in payloads}
            for future in cf.as_completed(futures):
                error = future.exception()
                yield futures[future], (error if error is not None else future.result())


def create(name: str, **options: Any) -> Executor:
    """The executor registered under ``name`` built with ``options`` (config section ``executor``)."""
    import importlib

    if name not in EXECUTORS:
        raise ConfigError(f"executor.name: unknown executor '{name}'. Known: {', '.join(EXECUTORS)}")
    module_name, _, attr = EXECUTORS[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)(**options)
    except TypeError as error:
        raise ConfigError(f"executor '{name}': bad options {sorted(options)} ({error})") from None
